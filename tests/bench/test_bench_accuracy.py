"""`make bench-accuracy` (bench/accuracy.py) on made-up rows in the real files' layout; the real data
is never needed by a test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import accuracy
from training.data import DEFAULT_TOPICS, MISSING


def fake_real_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    topics = [
        {"text": f"made up post {i} on {t} https://t.co/x{i}", "topic": t}
        for t in DEFAULT_TOPICS
        for i in range(10)
    ]
    sents = [
        {"text": f"made up mood {i} {s}", "sentiment": s}
        for s in ("negative", "neutral", "positive")
        for i in range(10)
    ]
    pd.DataFrame(topics).to_csv(root / "twitter_topic_train.csv", index=False)
    pd.DataFrame(sents).to_csv(root / "twitter_sentiment_train.csv", index=False)
    return root


def test_absent_data_is_said_and_exits_0(tmp_path: Path, capsys) -> None:
    assert accuracy.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 0
    assert "no real data at" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_dev_split_is_stratified_disjoint_and_seeded(tmp_path: Path) -> None:
    data_dir = fake_real_data(tmp_path / "data")
    data, _, dev_csv, train, dev = accuracy.carve(data_dir, 0.1, 0, 1.0, tmp_path)
    assert len(train) + len(dev) == len(data) == 230
    assert not set(train.texts) & set(dev.texts)
    assert (dev.topics != MISSING).sum() == 20 and (dev.sentiments != MISSING).sum() == 3  # 1 per class
    again = accuracy.carve(data_dir, 0.1, 0, 1.0, tmp_path)[4]
    assert again.texts == dev.texts
    assert len(pd.read_csv(dev_csv)) == len(dev)


def test_scores_an_artifact_through_onnx_runtime_and_writes_the_table(
    tmp_path: Path, tiny_artifact: Path
) -> None:
    data_dir = fake_real_data(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--artifact", str(tiny_artifact)]
    assert accuracy.main(argv) == 0
    (md,) = out.glob("accuracy-*.md")
    text = md.read_text()
    assert "| topic |" in text and "| sentiment |" in text and "Machine:" in text
    result = json.loads(md.with_suffix(".json").read_text())
    assert result["info"]["dev_rows"] == 23
    assert sum(c["support"] for c in result["reports"]["topic"]["per_class"].values()) == 20
    assert not list(out.glob("*.csv"))  # the split files stay in a temporary folder
