"""The promotion gate (pure parts) and `finsent promote` over real artifacts and ONNX Runtime."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from models.errors import DataError
from models.gate import judge, macro_f1, read_eval_set
from models.runtime import load_scorer
from tests.support.daemon_procs import finsent
from tests.support.toy_artifact import OTHER_TOPICS, WORDS, point_latest, toy_version


def test_macro_f1_by_hand_and_unlabelled_rows_left_out() -> None:
    truth = ["a", "a", "b", "", "b"]
    pred = ["a", "b", "b", "a", "b"]
    # a: tp 1, fn 1, fp 0 -> 2/3; b: tp 2, fp 1 -> 4/5
    assert macro_f1(truth, pred) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert macro_f1(["", ""], ["a", "b"]) is None


def test_judge_allows_the_margin_and_no_more() -> None:
    cur = {"topic": 0.80, "sentiment": 0.70}
    ok, lines = judge(cur, {"topic": 0.795, "sentiment": 0.90}, margin=0.01)
    assert ok and all(line.endswith("ok") for line in lines)
    bad, lines = judge(cur, {"topic": 0.95, "sentiment": 0.68}, margin=0.01)
    assert not bad and lines[1].startswith("sentiment:") and lines[1].endswith("REGRESSION")
    assert judge(None, {"topic": 0.1, "sentiment": 0.1}, margin=0.0)[0]  # first model
    ok, lines = judge(cur, {"topic": 0.9, "sentiment": None}, margin=0.0)
    assert ok and "not measured" in lines[1]


def test_eval_set_errors_name_the_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,topic\nfine,Macro\n ,Macro\n")
    with pytest.raises(DataError, match=r"bad.csv: row 3: empty text"):
        read_eval_set(bad)
    bad.write_text("headline,topic\nx,Macro\n")
    with pytest.raises(DataError, match="needs a 'text' column"):
        read_eval_set(bad)


def _eval_csv(path: Path, scorer_dir: Path) -> Path:
    """Texts labelled with what the `scorer_dir` model answers: that model scores perfectly on it."""
    texts = [" ".join(c) for c in itertools.combinations(WORDS, 3)][:120]
    preds = load_scorer(scorer_dir, provider="cpu").score(texts)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "topic", "sentiment"])
        w.writerows((t, p.topic, p.sentiment) for t, p in zip(texts, preds, strict=True))
    return path


def test_promote_repoints_latest_on_a_pass_and_leaves_it_on_a_regression(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    v1, v2 = toy_version(root, "v1"), toy_version(root, "v2", seed=7)
    toy_version(root, "v4", topics=OTHER_TOPICS)
    latest = point_latest(root, "v1")
    frozen = _eval_csv(tmp_path / "frozen.csv", v2)

    out = finsent("promote", str(v2), "--root", str(root), "--eval", str(frozen))
    assert out.returncode == 0, out.stderr
    assert latest.resolve() == v2.resolve()
    report = json.loads((v2 / "gate.json").read_text())
    assert report["passed"] and report["candidate"]["macro_f1"] == {"topic": 1.0, "sentiment": 1.0}
    assert report["current"]["version"] == "v1" and report["current"]["macro_f1"]["topic"] < 0.99
    assert "promoted:" in out.stderr

    back = finsent("promote", str(v1), "--root", str(root), "--eval", str(frozen))
    assert back.returncode == 1 and "REGRESSION" in back.stderr and "not promoted" in back.stderr
    assert latest.resolve() == v2.resolve()  # unchanged
    assert json.loads((v1 / "gate.json").read_text())["passed"] is False
    # a margin as wide as the gap lets it through
    gap = 1.0 - min(json.loads((v1 / "gate.json").read_text())["candidate"]["macro_f1"].values())
    wide = finsent(
        "promote", str(v1), "--root", str(root), "--eval", str(frozen), "--margin", str(gap + 0.01)
    )
    assert wide.returncode == 0 and latest.resolve() == v1.resolve()

    other = finsent("promote", str(root / "v4"), "--root", str(root), "--eval", str(frozen))
    assert other.returncode == 2 and "topic labels differ" in other.stderr and "Traceback" not in other.stderr
    assert latest.resolve() == v1.resolve()
