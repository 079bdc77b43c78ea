"""bench.int8_plans on the tiny artifact: agreement and interleaved timing lines for each model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import int8_plans


def test_compares_two_artifacts(tiny_artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--model",
        f"a={tiny_artifact}",
        "--model",
        f"b={tiny_artifact}",
        "--n",
        "40",
        "--agreement-n",
        "40",
    ]
    assert int8_plans.main([*args, "--batch", "16", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("int8 vs fp32 on 40 texts: topic") == 2
    assert out.count("best of 2 rounds:") == 2 and "ms CPU per message" in out


def test_rejects_a_model_without_a_label(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        int8_plans.main(["--model", "artifacts/latest"])
    assert info.value.code == 2 and "LABEL=ARTIFACT" in capsys.readouterr().err


def test_fused_scores_the_same_graph_as_the_plain_session(tiny_artifact: Path) -> None:
    from models.artifact import load_artifact
    from models.runtime import Scorer

    scorer = Scorer(load_artifact(tiny_artifact), provider="cpu", variant="int8", sub_batch=8)
    expected = scorer.probabilities(["Shares of Acme fall after profit warning"])
    fused = int8_plans.refused(scorer)
    # the fused kernels do the same arithmetic (tests/training/test_unfuse.py checks they are fused)
    got = fused.probabilities(["Shares of Acme fall after profit warning"])
    for a, b in zip(expected, got, strict=True):
        assert abs(a - b).max() < 1e-4
