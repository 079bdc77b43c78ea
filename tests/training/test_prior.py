"""The feed prior (training/prior.py): reading it, the per-label shift, and what it does to a head."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.errors import ConfigError
from pipeline.cli import main
from tests.support.tiny_models import TinyVocabulary, write_csv
from training.prior import fit_bias_shift, prior_shift, read_feed_prior, shift_head_bias


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_reads_heads_and_skips_comment_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.json",
        {"_source": "a note", "sentiment": {"negative": 1, "neutral": 6, "positive": 3}},
    )
    assert read_feed_prior(path) == {"sentiment": {"negative": 1.0, "neutral": 6.0, "positive": 3.0}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"mood": {"a": 1}}, "unknown head 'mood'"),
        ({"topic": {"IPO": 0}}, "share of 'IPO' must be a positive number"),
        ({"topic": {"IPO": "lots"}}, "share of 'IPO' must be a positive number"),
        ({"topic": []}, "expected an object"),
        ([1, 2], "an object of head"),
    ],
)
def test_bad_prior_files_name_the_file_and_the_fault(tmp_path: Path, content: object, message: str) -> None:
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(ConfigError, match=message) as info:
        read_feed_prior(path)
    assert str(path) in str(info.value)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_feed_prior(tmp_path / "nowhere.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.json: unreadable"):
        read_feed_prior(tmp_path / "broken.json")


def test_shift_is_the_log_ratio_of_renormalised_shares() -> None:
    labels = ("negative", "neutral", "positive")
    train = {"negative": 25, "neutral": 50, "positive": 25}
    # extra labels in the file are ignored, and the shares are renormalised over the model's labels
    feed = {"negative": 1.0, "neutral": 6.0, "positive": 3.0, "other": 90.0}
    shift = prior_shift(labels, train, feed)
    expected = [math.log(0.1 / 0.25), math.log(0.6 / 0.5), math.log(0.3 / 0.25)]
    np.testing.assert_allclose(shift, expected)
    np.testing.assert_allclose(prior_shift(labels, train, feed, strength=0.5), np.array(expected) / 2)


def test_a_label_never_trained_is_left_alone_and_a_missing_share_is_an_error() -> None:
    shift = prior_shift(("a", "b"), {"a": 10, "b": 0}, {"a": 1.0, "b": 1.0})
    assert shift[1] == 0.0 and shift[0] == pytest.approx(math.log(0.5 / 1.0))
    with pytest.raises(ConfigError, match="p.json: topic: no share for 'b'"):
        prior_shift(("a", "b"), {"a": 1, "b": 1}, {"a": 1.0}, where="p.json: topic")


def test_shifted_head_gives_the_bayes_posterior_under_the_feed_mix() -> None:
    """softmax(logits + log(feed/train)) == p_train(y|x) * feed(y)/train(y), renormalised."""
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    x = torch.randn(5, 8)
    before = torch.softmax(head(x), -1).detach().numpy()
    train, feed = {"n": 40, "z": 40, "p": 20}, {"n": 0.15, "z": 0.65, "p": 0.20}
    shift = prior_shift(("n", "z", "p"), train, feed)
    shift_head_bias(head, shift)
    after = torch.softmax(head(x), -1).detach().numpy()
    ratio = np.array([0.15 / 0.4, 0.65 / 0.4, 0.20 / 0.2])
    bayes = before * ratio
    bayes /= bayes.sum(1, keepdims=True)
    np.testing.assert_allclose(after, bayes, rtol=1e-5, atol=1e-6)


def test_cli_reports_a_missing_prior_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    args = ["train", "--data", str(data), "--out", str(tmp_path / "art"), "--topics", "data"]
    assert main([*args, "--feed-prior", str(tmp_path / "nowhere.json")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.json: feed prior not found" in err and "Traceback" not in err
    assert not (tmp_path / "art").exists()


def test_the_default_feed_prior_covers_the_default_labels() -> None:
    from training.data import DEFAULT_TOPICS, SENTIMENT_LABELS

    prior = read_feed_prior(Path(__file__).resolve().parents[2] / "data" / "feed_prior.json")
    assert set(prior["topic"]) == set(DEFAULT_TOPICS)
    assert set(prior["sentiment"]) == set(SENTIMENT_LABELS)
    assert sum(prior["sentiment"].values()) == pytest.approx(1.0, abs=0.01)
    assert sum(prior["topic"].values()) == pytest.approx(1.0, abs=0.01)


def test_a_prior_missing_a_trained_label_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    prior = _write(tmp_path / "prior.json", {"topic": {"IPO": 0.5}})
    args = ["train", "--data", str(data), "--out", str(tmp_path / "art"), "--topics", "data"]
    assert main([*args, "--feed-prior", str(prior)]) == 2
    err = capsys.readouterr().err
    assert "prior.json: topic: no share for 'Macro'" in err and "epoch" not in err
    assert not (tmp_path / "art").exists()


def test_fit_shifts_the_trained_heads_by_the_prior(tmp_path: Path) -> None:
    import dataclasses

    from tests.support.tiny_models import tiny_config
    from training.train import fit

    prior = _write(
        tmp_path / "prior.json",
        {"topic": {"IPO": 0.2, "Macro": 0.8}, "sentiment": {"negative": 1, "neutral": 6, "positive": 3}},
    )
    config = dataclasses.replace(
        tiny_config(tmp_path, ("IPO", "Macro"), per_topic=20), epochs=2, patience=2, feed_prior=str(prior)
    )
    per_epoch: dict[int, dict[str, torch.Tensor]] = {}

    def keep(epoch: int, model: torch.nn.Module) -> None:  # the weights as trained, before any shift
        per_epoch[epoch] = {
            "topic": model.topic_head.bias.detach().clone(),
            "sentiment": model.sentiment_head.bias.detach().clone(),
        }

    result = fit(config, say=lambda _line: None, on_epoch=keep)
    trained = per_epoch[result.best_epoch]  # the epoch whose weights were kept
    counts = result.train.label_counts()
    for head, labels, linear in (
        ("topic", result.train.topic_labels, result.model.topic_head),
        ("sentiment", result.train.sentiment_labels, result.model.sentiment_head),
    ):
        expected = prior_shift(labels, counts[head], read_feed_prior(prior)[head])
        np.testing.assert_allclose(
            (linear.bias.detach() - trained[head]).numpy(), expected, rtol=1e-5, atol=1e-6
        )


# --- a shift fitted on labelled rows ---------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_fitted_shift_undoes_a_models_lean_towards_one_class() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(3, 3000, p=[0.2, 0.6, 0.2])
    # informative logits (the true class gets +1.5) plus a lean: class 0 +1, class 1 -1
    logits = rng.normal(0, 1, (3000, 3)) + 1.5 * np.eye(3)[truth] + np.array([1.0, -1.0, 0.0])
    before = np.mean(logits.argmax(1) == truth)
    shift = fit_bias_shift(logits, truth, l2=0.0)
    after = np.mean((logits + shift).argmax(1) == truth)
    assert after > before + 0.05, (before, after)
    # the lean is undone and then some, towards the mix the rows carry (neutral-heavy)
    assert shift[1] - shift[0] > 2.0
    assert abs(shift.sum()) < 1e-9  # centred
    # at the optimum, mean predicted probabilities match the label shares (the intercept condition)
    np.testing.assert_allclose(_softmax(logits + shift).mean(0), np.bincount(truth) / len(truth), atol=0.01)


def test_fitted_shift_ignores_unlabelled_rows_and_is_held_back_by_l2() -> None:
    rng = np.random.default_rng(1)
    truth = rng.choice(3, 500)
    logits = rng.normal(0, 1, (500, 3))
    with_blank = np.concatenate([truth, -np.ones(200, dtype=int)])
    more = np.concatenate([logits, rng.normal(0, 1, (200, 3)) + [9.0, 0, 0]])
    np.testing.assert_allclose(fit_bias_shift(more, with_blank), fit_bias_shift(logits, truth), atol=1e-9)
    loose, tight = (
        fit_bias_shift(logits + [2.0, 0, 0], truth),
        fit_bias_shift(logits + [2.0, 0, 0], truth, l2=1.0),
    )
    assert np.abs(tight).max() < np.abs(loose).max()
    assert not fit_bias_shift(logits, -np.ones(500, dtype=int)).any()  # no labels: no shift


def test_fit_fits_the_sentiment_bias_on_the_given_rows(tmp_path: Path) -> None:
    """--bias-fit: after training, the sentiment head's bias moves by the shift fitted on the file;
    the topic head (not in bias_fit_heads) is left as trained."""
    import dataclasses

    from tests.support.tiny_models import tiny_config
    from training.inference import predict_probs, tokenize
    from training.train import build_tokenizer, fit, load_bias_fit_rows

    # calibration rows with a mix unlike training's: mostly negative
    rows = TinyVocabulary(("IPO", "Macro")).rows(per_topic=12, seed=5)
    skewed = [r for r in rows if r["sentiment"] == "negative"] * 3 + rows
    cal = write_csv(tmp_path / "cal.csv", skewed)
    config = dataclasses.replace(
        tiny_config(tmp_path, ("IPO", "Macro"), per_topic=20), epochs=1, patience=1, bias_fit=str(cal)
    )
    trained: dict[str, torch.Tensor] = {}

    def keep(_epoch: int, model: torch.nn.Module) -> None:
        trained["topic"] = model.topic_head.bias.detach().clone()
        trained["sentiment"] = model.sentiment_head.bias.detach().clone()

    lines: list[str] = []
    result = fit(config, say=lines.append, on_epoch=keep)
    assert torch.equal(result.model.topic_head.bias.detach(), trained["topic"])
    moved = (result.model.sentiment_head.bias.detach() - trained["sentiment"]).numpy()
    # the fitted shift, recomputed from the as-trained model's probabilities on the same rows
    result.model.sentiment_head.bias.data.copy_(trained["sentiment"])
    calibration = load_bias_fit_rows(config, result.train)
    tokenizer = build_tokenizer(config.resolved_base_model())
    ids = tokenize(tokenizer, calibration.texts, config.max_length)
    _, probs = predict_probs(result.model, ids, int(tokenizer.pad_token_id), config.eval_batch_size)
    expected = fit_bias_shift(np.log(probs + 1e-12), calibration.sentiments)
    np.testing.assert_allclose(moved, expected, atol=1e-4)
    assert expected[result.train.sentiment_labels.index("negative")] > 0  # towards the file's mix
    assert any(line.startswith(f"bias fitted on {cal} (") for line in lines)


def test_a_bad_bias_fit_file_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    bad = tmp_path / "cal.csv"
    bad.write_text("text,topic,sentiment\nA listing on the exchange,IPO,sideways\n", encoding="utf-8")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "art"), "--topics", "data"]
    assert main([*args, "--bias-fit", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cal.csv" in err and "sideways" in err and "Traceback" not in err and "epoch" not in err
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--bias-fit", str(data), "--bias-fit-heads", "tone"])
    assert exit_.value.code == 2 and "--bias-fit-heads" in capsys.readouterr().err
