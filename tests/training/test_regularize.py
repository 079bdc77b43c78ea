"""R-Drop, FGM and weight averaging (training/regularize.py) and their use in the training loop, on tiny models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from tests.support.tiny_models import TinyVocabulary, tiny_config, tiny_encoder, write_csv
from training.regularize import EmbeddingAdversary, WeightAverage, mask_tokens, symmetric_kl


def test_symmetric_kl_is_zero_for_equal_logits_symmetric_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 3), torch.randn(6, 3)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert symmetric_kl(a, a + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # same softmax
    assert symmetric_kl(a, b).item() > 0
    assert symmetric_kl(a, b).item() == pytest.approx(symmetric_kl(b, a).item())
    p, q = torch.softmax(a, -1), torch.softmax(b, -1)
    by_hand = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean() / 2
    assert symmetric_kl(a, b).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_fgm_steps_each_row_epsilon_along_its_gradient_and_raises_the_loss() -> None:
    from training.model import TwoHeadClassifier

    model = TwoHeadClassifier(tiny_encoder(), n_topics=4, n_sentiments=3).eval()
    for p in model.encoder.embeddings.parameters():
        p.requires_grad_(False)  # as finsent trains MiniLM: the word table frozen
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    target = torch.tensor([0, 2, 1])
    adversary = EmbeddingAdversary(model.encoder.embeddings, epsilon=0.05)

    clean = torch.nn.functional.cross_entropy(model(ids, mask)[0], target)
    clean.backward()
    delta = adversary.delta()
    assert delta.shape == (3, 7, 16)
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), torch.full((3,), 0.05))
    with adversary.perturbed():
        attacked = torch.nn.functional.cross_entropy(model(ids, mask)[0], target)
    assert attacked.item() > clean.item()  # a step up the gradient raises the loss (first order)
    # outside the context the hook passes the embeddings through unchanged
    again = torch.nn.functional.cross_entropy(model(ids, mask)[0], target)
    assert again.item() == pytest.approx(clean.item(), rel=1e-6)
    adversary.close()
    with pytest.raises(RuntimeError, match="backward"):
        adversary.delta()


def test_fgm_rejects_a_non_positive_radius() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        EmbeddingAdversary(tiny_encoder().embeddings, epsilon=0.0)


def test_weight_average_follows_the_trained_weights_and_swaps_back() -> None:
    from training.model import TwoHeadClassifier

    model = TwoHeadClassifier(tiny_encoder(), n_topics=4, n_sentiments=3)
    frozen = model.encoder.embeddings.word_embeddings.weight
    frozen.requires_grad_(False)
    head = model.topic_head.weight
    start = head.detach().clone()
    average = WeightAverage(model, decay=0.9)
    assert "encoder.embeddings.word_embeddings.weight" not in average._average  # frozen: not tracked
    with torch.no_grad():
        head.add_(1.0)  # one "step" of +1 on every weight of the head
    average.update()  # first step: memory min(0.9, 2 / 11), so the average moves 9/11 of the way
    live = head.detach().clone()
    with average.swapped_in():
        torch.testing.assert_close(head.detach(), start + 9 / 11)
    torch.testing.assert_close(head.detach(), live)  # the live weights are back
    for _ in range(200):
        average.update()
    with average.swapped_in():  # a long run at the same weights: the average reaches them
        torch.testing.assert_close(head.detach(), live, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.parametrize(
    "extra",
    [
        {"rdrop": 1.0},
        {"fgm": 0.5},
        {"weight_average": 0.9},
        {"token_mask": 0.1},
        {"head_weights": (1.0, 2.0)},
    ],
)
def test_training_with_each_regulariser_still_learns_the_tiny_task(tmp_path: Path, extra: dict) -> None:
    from training.train import fit

    topics = ("IPO", "Macro", "Dividend")
    config = dataclasses.replace(tiny_config(tmp_path, topics, per_topic=40), epochs=6, patience=6, **extra)
    result = fit(config, say=lambda _line: None)
    assert result.reports["topic"]["accuracy"] >= 0.8
    assert result.history[-1].train_loss_topic < result.history[0].train_loss_topic


def test_cli_rejects_bad_head_weights_and_negative_regularisers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    base = ["train", "--data", str(data), "--out", str(tmp_path / "art"), "--topics", "data"]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--head-weights", "1"])
    assert exit_info.value.code == 2
    assert "TOPIC,SENTIMENT" in capsys.readouterr().err
    assert main([*base, "--rdrop", "-1"]) == 2
    err = capsys.readouterr().err
    assert "rdrop and fgm must be >= 0" in err and "Traceback" not in err
    assert main([*base, "--weight-average", "1"]) == 2
    err = capsys.readouterr().err
    assert "weight-average decay must be in [0, 1)" in err and "Traceback" not in err
    assert main([*base, "--token-mask", "1"]) == 2
    assert "token-mask rate must be in [0, 1)" in capsys.readouterr().err


def test_token_masking_spares_cls_sep_and_padding_and_hits_about_its_rate() -> None:
    import numpy as np

    rows, width = 400, 12
    lengths = np.random.default_rng(0).integers(3, width + 1, rows)
    attention = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(attention == 1, 7, 0)
    ids[:, 0] = 101
    ids[np.arange(rows), lengths - 1] = 102
    out = mask_tokens(ids, attention, 0.25, 103, np.random.default_rng(1))
    assert (out[:, 0] == 101).all() and (out[np.arange(rows), lengths - 1] == 102).all()
    assert (out[attention == 0] == 0).all()
    inner = (ids == 7).sum()
    share = (out == 103).sum() / inner
    assert 0.22 < share < 0.28
    assert ids.max() == 102  # the input is not changed in place
    assert mask_tokens(ids, attention, 0.0, 103, np.random.default_rng(1)) is ids
