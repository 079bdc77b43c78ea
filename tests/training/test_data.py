"""Reading and validating training data: every user error names the file and the row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.errors import DataError
from pipeline.cli import main
from training.data import MISSING, Columns, load_dataset, resolve_topics, stratified_split

TOPICS = ("Earnings", "Dividend", "IPO")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_partial_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        "text,topic,sentiment\n"
        "Acme beats estimates,Earnings,Positive\n"
        "Acme lifts payout,Dividend,\n"
        "Shares of Acme drift,,neutral\n"
        "NA,IPO,negative\n",
    )
    data = load_dataset(path, topics=TOPICS)
    assert data.texts[3] == "NA"  # a headline that reads like a null marker stays text
    assert data.topics.tolist() == [0, 1, MISSING, 2]
    assert data.sentiments.tolist() == [2, MISSING, 1, 0]  # labels are case-insensitive
    assert data.rows.tolist() == [1, 2, 3, 4]


def test_jsonl_and_parquet_give_the_same_fingerprint(tmp_path: Path) -> None:
    rows = [
        {"headline": "Acme beats estimates", "label_t": "Earnings", "label_s": "positive"},
        {"headline": "Acme lifts payout", "label_t": "Dividend", "label_s": None},
    ]
    jsonl = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    import pandas as pd

    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    cols = Columns(text="headline", topic="label_t", sentiment="label_s")
    a = load_dataset(jsonl, columns=cols, topics=TOPICS)
    b = load_dataset(parquet, columns=cols, topics=TOPICS)
    assert a.fingerprint() == b.fingerprint()
    assert a.sentiments.tolist() == [2, MISSING]
    changed = load_dataset(
        write(tmp_path / "e.jsonl", json.dumps(rows[0]) + "\n"), columns=cols, topics=TOPICS
    )
    assert changed.fingerprint() != a.fingerprint()


def test_rows_without_any_label_are_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,topic,sentiment\nno labels here,,\nAcme beats,Earnings,positive\n")
    data = load_dataset(path, topics=TOPICS)
    assert data.texts == ("Acme beats",)
    assert data.rows.tolist() == [2]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("text,topic\nAcme,Earnings\n", "missing column(s) 'sentiment'"),
        (
            "text,topic,sentiment\nAcme,Earnings,positive\nBeta,Weather,neutral\n",
            "row 2: unknown topic label 'Weather'",
        ),
        ("text,topic,sentiment\nAcme,Earnings,bullish\n", "row 1: unknown sentiment label 'bullish'"),
        ("text,topic,sentiment\nAcme,Earnings,positive\n  ,IPO,neutral\n", "row 2: empty text"),
        ("text,topic,sentiment\n", "empty dataset"),
        ("", "empty dataset"),
        ("text,topic,sentiment\nAcme,,\n", "empty dataset"),
    ],
)
def test_bad_csv_names_file_and_row(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(DataError) as err:
        load_dataset(path, topics=TOPICS)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read as parquet"):
        load_dataset(write(tmp_path / "bad.parquet", "this is not parquet"))
    with pytest.raises(DataError, match=r"bad\.jsonl: cannot read as jsonl"):
        load_dataset(write(tmp_path / "bad.jsonl", '{"text": "a", "topic": \n'))


def test_topics_from_data_are_sorted(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,topic,sentiment\na,Zeta,positive\nb,Alpha,\nc,Zeta,neutral\n")
    data = load_dataset(path, topics=resolve_topics("data"))
    assert data.topic_labels == ("Alpha", "Zeta")
    assert resolve_topics("A, B") == ("A", "B")
    assert len(resolve_topics("default") or ()) == 20


def test_stratified_split_is_seeded_and_keeps_every_topic(tmp_path: Path) -> None:
    lines = ["text,topic,sentiment"]
    for i in range(60):
        topic = TOPICS[i % 3] if i < 57 else "IPO"
        lines.append(f"headline number {i},{topic},{['negative', 'neutral', 'positive'][i % 3]}")
    lines.append("sentiment only,,negative")
    data = load_dataset(write(tmp_path / "d.csv", "\n".join(lines) + "\n"), topics=TOPICS)
    train, valid = stratified_split(data, 0.2, seed=3)
    again, _ = stratified_split(data, 0.2, seed=3)
    other, _ = stratified_split(data, 0.2, seed=4)
    assert train.texts == again.texts
    assert train.texts != other.texts
    assert len(train) + len(valid) == len(data)
    assert not set(train.texts) & set(valid.texts)
    for topic in range(3):
        share = (valid.topics == topic).sum() / (data.topics == topic).sum()
        assert 0.15 <= share <= 0.25
    assert "sentiment only" in train.texts  # a one-row stratum stays in training


def test_cli_reports_data_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.csv", "text,topic,sentiment\nAcme beats,Earnings,positive\nBeta,Earnings,great\n"
    )
    code = main(["train", "--data", str(bad), "--out", str(tmp_path / "a"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}: row 2: unknown sentiment label 'great'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "a").exists()


def test_cli_process_exit_code(tmp_path: Path) -> None:
    import subprocess

    from devstack.finsent import finsent_argv

    missing = tmp_path / "nope.csv"
    proc = subprocess.run(
        finsent_argv("train", "--data", str(missing), "--out", str(tmp_path / "a")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{missing}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_label_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,topic,sentiment\na,IPO,positive\nb,IPO,\nc,Dividend,negative\n")
    counts = load_dataset(path, topics=TOPICS).label_counts()
    assert counts["topic"] == {"Earnings": 0, "Dividend": 1, "IPO": 2}
    assert counts["sentiment"] == {"negative": 1, "neutral": 0, "positive": 1}
    assert np.all(load_dataset(path, topics=TOPICS).topics >= 0)
