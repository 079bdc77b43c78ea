"""The slow tier: a short real fine-tune of the default base model (all-MiniLM-L6-v2), exported
through the real path and scored. Run with `make test-slow` (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact
from models.runtime import Scorer
from training.data import MISSING, load_dataset

CORPUS = Path(__file__).resolve().parents[2] / "data" / "starter_corpus.csv"


@pytest.mark.slow
def test_short_fine_tune_of_the_default_base_model(tmp_path: Path) -> None:
    from training.config import TrainConfig, default_base_model
    from training.train import train_and_export

    if not CORPUS.is_file():
        pytest.skip(f"{CORPUS} not present")
    with open(CORPUS, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train_rows, held_out = rows[:1200], rows[-400:]
    for name, part in (("train.csv", train_rows), ("held_out.csv", held_out)):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "topic", "sentiment"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in ("text", "topic", "sentiment")} for r in part)

    config = TrainConfig(
        data=str(tmp_path / "train.csv"),
        out=str(tmp_path / "artifacts"),
        epochs=2,
        max_length=48,
        progress=False,
    )
    path = train_and_export(config)
    art = load_artifact(path)
    assert art.manifest["base_model"] == default_base_model()
    assert art.variants == ("fp32", "fp16", "int8")

    data = load_dataset(tmp_path / "held_out.csv", topics=art.topic_labels)
    for variant in ("int8", "fp32"):
        topic_p, sent_p = Scorer(art, provider="cpu", variant=variant).probabilities(data.texts)
        t_keep, s_keep = data.topics != MISSING, data.sentiments != MISSING
        topic_acc = float((topic_p.argmax(1)[t_keep] == data.topics[t_keep]).mean())
        sent_acc = float((sent_p.argmax(1)[s_keep] == data.sentiments[s_keep]).mean())
        # 20 topics (chance 5%) after 2 short epochs on 1,200 rows
        assert topic_acc >= 0.5, (variant, topic_acc)
        assert sent_acc >= 0.6, (variant, sent_acc)
        assert np.allclose(topic_p.sum(axis=1), 1.0, atol=1e-3)
