"""Metrics (checked against scikit-learn) and `finsent evaluate` through ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.artifact import load_artifact
from models.runtime import Scorer
from pipeline.cli import main
from tests.support.tiny_models import TinyVocabulary, write_csv
from training.data import DEFAULT_TOPICS, MISSING, load_dataset
from training.metrics import classification_report, confusion_matrix, format_report, save_confusion_png


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 3), st.integers(0, 3)), min_size=1, max_size=80))
def test_report_matches_scikit_learn(pairs: list[tuple[int, int]]) -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    labels = ["a", "b", "c", "d"]
    rep = classification_report(y_true, y_pred, labels)
    keep = y_true != MISSING
    t, p = y_true[keep], y_pred[keep]
    assert rep["n"] == keep.sum()
    if not keep.any():
        assert rep["accuracy"] == 0.0
        return
    assert rep["accuracy"] == pytest.approx(accuracy_score(t, p))
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=range(4), zero_division=0)
    for i, label in enumerate(labels):
        assert rep["per_class"][label]["precision"] == pytest.approx(prec[i])
        assert rep["per_class"][label]["recall"] == pytest.approx(rec[i])
        assert rep["per_class"][label]["f1"] == pytest.approx(f1[i])
        assert rep["per_class"][label]["support"] == sup[i]
    present = sorted(set(t.tolist()))
    macro = f1_score(t, p, labels=present, average="macro", zero_division=0)
    assert rep["macro"]["f1"] == pytest.approx(macro)
    assert rep["weighted"]["f1"] == pytest.approx(
        f1_score(t, p, labels=range(4), average="weighted", zero_division=0)
    )
    assert np.array_equal(np.array(rep["confusion"]), confusion_matrix(y_true, y_pred, 4))


def test_table_and_png(tmp_path: Path) -> None:
    rep = classification_report(
        np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ["negative", "neutral", "positive"]
    )
    table = format_report(rep, "sentiment")
    assert "negative" in table and "macro avg" in table and "accuracy" in table
    save_confusion_png(rep, tmp_path / "c.png", "sentiment")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_artifact_on_a_labelled_file(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = TinyVocabulary(DEFAULT_TOPICS, seed=0).rows(per_topic=6, seed=77)
    data = write_csv(tmp_path / "eval.csv", rows)
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                str(tiny_artifact),
                str(data),
                "--out",
                str(out),
                "--variant",
                "fp32",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "topic head (fp32, cpu)" in printed and "macro avg" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "fp32"
    assert (out / "confusion_topic.png").is_file() and (out / "confusion_sentiment.png").is_file()

    # the same numbers as scoring the file directly through the runtime
    dataset = load_dataset(data, topics=DEFAULT_TOPICS)
    topic_p, sent_p = Scorer(load_artifact(tiny_artifact), provider="cpu", variant="fp32").probabilities(
        dataset.texts
    )
    labelled = dataset.topics != MISSING
    expected = float((topic_p.argmax(axis=1)[labelled] == dataset.topics[labelled]).mean())
    assert metrics["heads"]["topic"]["accuracy"] == pytest.approx(expected)
    assert metrics["heads"]["topic"]["n"] == int(labelled.sum())
    assert metrics["heads"]["topic"]["accuracy"] >= 0.7  # the tiny model did learn its keywords


def test_evaluate_rejects_labels_the_artifact_does_not_know(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "odd.csv"
    data.write_text("text,topic,sentiment\nsomething,Weather,positive\n", encoding="utf-8")
    assert main(["evaluate", str(tiny_artifact), str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}: row 1: unknown topic label 'Weather'" in err
    assert "Traceback" not in err


def test_evaluate_refuses_a_tampered_artifact(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    with open(copy / "model.int8.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    data = write_csv(tmp_path / "d.csv", TinyVocabulary(DEFAULT_TOPICS).rows(per_topic=1, seed=0))
    assert main(["evaluate", str(copy), str(data)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
