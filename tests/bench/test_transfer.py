"""bench.transfer on a tiny model and tiny stand-in 'real' sets written by the test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench import transfer
from tests.support.tiny_models import TinyVocabulary, build_base_model, write_csv


def test_without_real_data_it_says_so_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert transfer.main(["--data-dir", str(tmp_path)]) == 0
    assert "no real data" in capsys.readouterr().out


def test_scores_each_epoch_as_trained_and_with_the_prior(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = ("IPO", "Macro")
    vocab = TinyVocabulary(topics, seed=2)
    rows = vocab.rows(per_topic=30, seed=2)
    data = write_csv(tmp_path / "train.csv", rows)
    base = build_base_model(
        tmp_path / "base", (r["text"] for r in rows), vocab_size=200, hidden=32, layers=1, heads=2, seed=0
    )
    real = tmp_path / "real"
    real.mkdir()
    held = vocab.rows(per_topic=10, seed=9)
    for name, column in (("twitter_topic_train.csv", "topic"), ("twitter_sentiment_train.csv", "sentiment")):
        with (real / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", column])
            w.writerows([r["text"], r[column]] for r in held)
    prior = tmp_path / "prior.json"
    prior.write_text(
        json.dumps(
            {"topic": {"IPO": 0.5, "Macro": 0.5}, "sentiment": {"negative": 1, "neutral": 1, "positive": 1}}
        )
    )
    monkeypatch.setattr(transfer, "RESULTS", tmp_path / "results")
    flags = [
        "--data",
        str(data),
        "--base-model",
        str(base),
        "--topics",
        "data",
        "--epochs",
        "2",
        "--lr",
        "3e-3",
    ]
    flags += [
        "--head-lr",
        "3e-3",
        "--max-length",
        "32",
        "--train-embeddings",
        "--no-progress",
        "--rdrop",
        "0",
    ]
    assert transfer.main(["--data-dir", str(real), "--n", "15", "--prior", str(prior), "--", *flags]) == 0
    out = capsys.readouterr().out
    assert out.count("bench-transfer: epoch ") == 2 and "with the feed prior" in out
    (record,) = (tmp_path / "results").glob("transfer-*.json")
    saved = json.loads(record.read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert saved["sample"]["rows_per_set"] == 15 and saved["train_flags"] == flags
    assert all(0.0 <= e["topic"] <= 1.0 and 0.0 <= e["sentiment_shifted"] <= 1.0 for e in saved["epochs"])
