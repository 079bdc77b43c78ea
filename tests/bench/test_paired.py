"""bench.paired: the exact McNemar test and the paired counts it rests on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.paired import main, mcnemar_p, paired_counts


def test_mcnemar_is_exact_two_sided_and_symmetric() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024)  # ten coin flips all one way, both tails
    assert mcnemar_p(3, 9) == mcnemar_p(9, 3)
    # 1 vs 4: P(X <= 1) for binomial(5, 1/2) = 6/32, doubled
    assert mcnemar_p(1, 4) == pytest.approx(12 / 32)


def test_paired_counts_only_count_labelled_rows_that_the_two_disagree_on() -> None:
    gold = np.array([0, 1, 2, 1, -1, 0])
    a = np.array([0, 1, 0, 2, 1, 0])  # right on rows 0, 1, 5
    b = np.array([0, 2, 2, 1, 1, 0])  # right on rows 0, 2, 3, 5
    counts = paired_counts(gold, a, b)
    assert counts["rows"] == 5
    assert (counts["only_a"], counts["only_b"]) == (1, 2)
    assert counts["accuracy_a"] == pytest.approx(3 / 5) and counts["accuracy_b"] == pytest.approx(4 / 5)
    assert counts["p_value"] == pytest.approx(mcnemar_p(1, 2))


def test_an_artifact_paired_with_itself_differs_on_no_row(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "topic", "sentiment"])
        w.writerow(["Central bank holds rates steady", "Fed | Central Banks", "neutral"])
        w.writerow(["Shares of TRQN slump after profit warning", "Stock Movement", "negative"])
        w.writerow(["Quarterly dividend raised by ten percent", "Dividend", "positive"])
    assert main([str(tiny_artifact), str(tiny_artifact), str(data)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for head in ("topic", "sentiment"):
        assert out[head]["rows"] == 3
        assert (out[head]["only_a"], out[head]["only_b"], out[head]["p_value"]) == (0, 0, 1.0)


def test_a_bad_source_is_a_clear_error(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tiny_artifact), str(tiny_artifact), str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "Traceback" not in err
