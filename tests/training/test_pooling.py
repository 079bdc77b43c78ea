"""`--pooling`: how the heads read the token vectors, kept through checkpoint, export and scoring."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifact import load_artifact
from models.runtime import Scorer
from pipeline.cli import main
from tests.support.tiny_models import TinyVocabulary, tiny_config, tiny_encoder, write_csv


def test_attention_pool_weights_real_tokens_only_and_sums_to_one() -> None:
    from training.model import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(8)
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    before = pool(hidden, mask)
    changed = hidden.clone()
    changed[0, 3:] = 1e3  # padding positions: whatever they hold must not reach the pooled vector
    after = pool(changed, mask)
    torch.testing.assert_close(after[0], before[0])
    same = torch.ones(1, 4, 8) * 3.0  # every real token the same vector: weights summing to 1 return it
    torch.testing.assert_close(pool(same, torch.tensor([[1, 1, 0, 0]])), torch.full((1, 8), 3.0))


def test_each_pooling_reads_the_encoder_as_named() -> None:
    from training.model import TwoHeadClassifier, mean_pool

    ids = torch.tensor([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]])
    mask = (ids != 0).long()
    hidden = tiny_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    by_name = {p: TwoHeadClassifier(tiny_encoder(), 3, 3, pooling=p).eval() for p in ("mean", "cls")}
    torch.testing.assert_close(by_name["mean"].pool(hidden, mask), mean_pool(hidden, mask))
    torch.testing.assert_close(by_name["cls"].pool(hidden, mask), hidden[:, 0])
    assert TwoHeadClassifier(tiny_encoder(), 3, 3, pooling="attention").attention_pool is not None
    with pytest.raises(ValueError, match="pooling must be one of mean, cls, attention"):
        TwoHeadClassifier(tiny_encoder(), 3, 3, pooling="max")


@pytest.mark.parametrize("pooling", ["cls", "attention"])
def test_training_with_another_pooling_learns_the_tiny_task(tmp_path: Path, pooling: str) -> None:
    from training.train import fit

    topics = ("IPO", "Macro", "Dividend")
    config = dataclasses.replace(
        tiny_config(tmp_path, topics, per_topic=40), epochs=6, patience=6, pooling=pooling
    )
    result = fit(config, say=lambda _line: None)
    assert result.reports["topic"]["accuracy"] >= 0.8
    assert result.model.pooling == pooling


def test_attention_pooling_survives_checkpoint_export_and_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pooling weights live outside the encoder: the checkpoint must carry them and re-build the
    same model, and the ONNX graph must score as PyTorch does (the export's own check)."""
    from training.checkpoint import load_checkpoint

    config = tiny_config(tmp_path, ("Earnings", "IPO", "Macro"), per_topic=30)
    args = ["train", "--data", config.data, "--base-model", config.base_model, "--out", str(tmp_path / "art")]
    args += ["--topics", "data", "--epochs", "3", "--max-length", "32", "--lr", "3e-3", "--head-lr", "3e-3"]
    args += ["--pooling", "attention", "--checkpoint-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main(args) == 0
    assert "export validated: fp32 vs PyTorch" in capsys.readouterr().out
    artifact = load_artifact(tmp_path / "art" / "latest")
    assert artifact.manifest["training_config"]["pooling"] == "attention"

    (ckpt,) = (tmp_path / "runs").iterdir()
    model, tokenizer, meta = load_checkpoint(ckpt)
    assert meta["pooling"] == "attention" and model.attention_pool is not None
    texts = ["Macro data beat forecasts", "IPO priced above range", "Earnings miss"]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        topic_logits, _ = model(enc["input_ids"], enc["attention_mask"])
    onnx_topic, _ = Scorer(artifact, provider="cpu", variant="fp32").probabilities(texts)
    np.testing.assert_allclose(onnx_topic, torch.softmax(topic_logits, -1).numpy(), atol=1e-4)


def test_cli_rejects_an_unknown_pooling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(("IPO", "Macro")).rows(per_topic=5, seed=0))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(data), "--out", str(tmp_path / "art"), "--pooling", "max"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'max'" in capsys.readouterr().err
