"""The two-headed model, its masked loss, and train -> export -> validate -> score on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifact import load_artifact
from models.runtime import Scorer
from pipeline.cli import main
from tests.support.tiny_models import TinyVocabulary, build_base_model, write_csv
from training.data import DEFAULT_TOPICS, MISSING
from training.model import class_weights, masked_cross_entropy


def test_rows_without_a_label_contribute_nothing_to_that_heads_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 3, requires_grad=True)
    targets = torch.tensor([0, 2, MISSING, 1, MISSING])
    masked_cross_entropy(logits, targets).backward()
    grad = logits.grad
    assert grad is not None
    assert torch.all(grad[2] == 0) and torch.all(grad[4] == 0)
    assert torch.all(grad[[0, 1, 3]].abs().sum(dim=1) > 0)
    # same value as the loss over the labelled rows alone, whatever the unlabelled logits are
    other = logits.detach().clone()
    other[[2, 4]] = 100.0
    expected = torch.nn.functional.cross_entropy(logits.detach()[[0, 1, 3]], targets[[0, 1, 3]])
    assert torch.allclose(masked_cross_entropy(other, targets), expected)


def test_batch_without_any_label_gives_zero_loss_and_no_nan() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((4,), MISSING))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_masked_loss_through_the_model_leaves_encoder_untouched_by_unlabelled_rows() -> None:
    """Gradient of the sentiment loss w.r.t. an unlabelled row's input embeddings is exactly zero."""
    from transformers import BertConfig, BertModel

    from training.model import TwoHeadClassifier

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    model = TwoHeadClassifier(encoder, n_topics=4, n_sentiments=3).eval()
    ids = torch.randint(5, 50, (3, 6))
    mask = torch.ones_like(ids)
    embeds = encoder.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    out = encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    from training.model import mean_pool

    sentiment = model.sentiment_head(mean_pool(out, mask))
    masked_cross_entropy(sentiment, torch.tensor([2, MISSING, 0])).backward()
    assert embeds.grad is not None
    assert torch.all(embeds.grad[1] == 0)
    assert embeds.grad[0].abs().sum() > 0 and embeds.grad[2].abs().sum() > 0


def test_class_weights_favour_rare_classes_and_ignore_missing() -> None:
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, MISSING, MISSING])
    w = class_weights(labels, 3)
    assert w[1] > w[0]
    assert w[2] == 1.0  # absent class
    assert torch.isclose(w[0], torch.tensor(8 / (3 * 6)))


def test_tiny_artifact_scores_through_every_variant(tiny_artifact: Path) -> None:
    art = load_artifact(tiny_artifact)
    assert art.variants == ("fp32", "fp16", "int8")
    assert art.topic_labels == DEFAULT_TOPICS
    manifest = art.manifest
    assert manifest["data_fingerprint"].startswith("sha256:")
    checks = manifest["export_validation"]
    assert max(checks["fp32_vs_torch_max_abs_diff"].values()) <= 1e-4
    for rates in checks["agreement_with_fp32"].values():
        assert min(rates.values()) >= 0.99
    assert json.loads((tiny_artifact / "metrics.json").read_text())["heads"]["topic"]["n"] > 0
    assert (tiny_artifact / "confusion_topic.png").stat().st_size > 1000
    card = (tiny_artifact / "MODEL_CARD.md").read_text()
    assert "- regularisers: R-Drop 0.0, FGM 0.0; heads as trained (no feed prior)" in card

    vocab = TinyVocabulary(DEFAULT_TOPICS, seed=0)
    rng = np.random.default_rng(123)
    cases = [(t, s) for t in DEFAULT_TOPICS for s in ("negative", "positive")]
    texts = [vocab.headline(t, s, rng) for t, s in cases]
    for variant in art.variants:
        preds = Scorer(art, provider="cpu", variant=variant).score(texts)
        topic_acc = np.mean([p.topic == t for p, (t, _) in zip(preds, cases, strict=True)])
        sent_acc = np.mean([p.sentiment == s for p, (_, s) in zip(preds, cases, strict=True)])
        assert topic_acc >= 0.7, variant
        assert sent_acc >= 0.9, variant
        assert all(-1.0 <= p.score <= 1.0 for p in preds)


def test_cli_train_then_export_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = ("Earnings", "Dividend", "IPO", "Macro")
    vocab = TinyVocabulary(topics, seed=1)
    rows = vocab.rows(per_topic=80, seed=1)
    data = write_csv(tmp_path / "train.csv", rows)
    base = build_base_model(
        tmp_path / "base", (r["text"] for r in rows), vocab_size=300, hidden=64, layers=2, heads=2, seed=1
    )
    args = ["train", "--data", str(data), "--base-model", str(base), "--out", str(tmp_path / "art")]
    args += [
        "--topics",
        "data",
        "--epochs",
        "8",
        "--patience",
        "8",
        "--valid-fraction",
        "0.35",
        "--lr",
        "3e-3",
        "--head-lr",
        "3e-3",
        "--max-length",
        "32",
    ]
    args += ["--checkpoint-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 1/8  train loss topic" in out
    assert "export validated: fp32 vs PyTorch" in out
    first = load_artifact(tmp_path / "art" / "latest")
    assert first.topic_labels == tuple(sorted(topics))
    assert first.manifest["training_config"]["epochs"] == 8

    (ckpt,) = (tmp_path / "runs").iterdir()
    assert main(["export", str(ckpt), "--out", str(tmp_path / "art")]) == 0
    second = load_artifact(tmp_path / "art" / "latest")
    assert second.version != first.version
    assert second.manifest["data_fingerprint"] == first.manifest["data_fingerprint"]
    texts = [vocab.headline(t, "positive", np.random.default_rng(7)) for t in topics]
    p1, _ = Scorer(first, provider="cpu", variant="fp32").probabilities(texts)
    p2, _ = Scorer(second, provider="cpu", variant="fp32").probabilities(texts)
    np.testing.assert_allclose(p1, p2, atol=1e-5)


def test_cli_train_rejects_bad_base_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--base-model",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "a"),
            "--topics",
            "data",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err


def test_lora_trains_adapters_only_and_merges_before_export(tmp_path: Path) -> None:
    import dataclasses

    from tests.support.tiny_models import tiny_config
    from training.train import build_two_head_model, merge_lora

    config = dataclasses.replace(tiny_config(tmp_path, ("IPO", "Macro"), per_topic=5), lora=True)
    model = build_two_head_model(config, n_topics=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        "lora_" in n or n.startswith(("topic_head", "sentiment_head")) for n in trainable
    )
    assert any("lora_" in n for n in trainable)
    # make the adapters non-trivial (B starts at zero), then check merging preserves the function
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.eval()
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    before = [t.detach() for t in model(ids, mask)]
    merged = merge_lora(model)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    after = merged(ids, mask)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
