"""`python -m bench.frontier`: its picture and its arguments (the measurements need the real sets,
which tests never read; `docs/BENCHMARKS.md` has the recorded run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import frontier


def _row(label: str, rounds: list[float], topic: float, sentiment: float) -> dict:
    return {
        "label": label,
        "msgs_per_s": rounds,
        "real_int8": {"topic": {"accuracy": topic}, "sentiment": {"accuracy": sentiment}},
        "in_corpus_pytorch": {"topic_accuracy": topic + 0.3, "sentiment_accuracy": sentiment + 0.3},
    }


def test_picture_is_drawn_from_a_recorded_run(tmp_path: Path) -> None:
    recorded = {
        "machine": "test CPU, 2 cores visible, avx2",
        "repeats": 2,
        "models": [_row("teacher", [100.0, 104.0], 0.59, 0.61), _row("student", [190.0, 201.0], 0.55, 0.6)],
    }
    run = tmp_path / "frontier.json"
    run.write_text(json.dumps(recorded))
    png = tmp_path / "out" / "frontier.png"
    assert frontier.main(["--from-json", str(run), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert frontier.speed(recorded["models"][0]) == 102.0  # the mean of its rounds places a model


def test_models_are_named_label_equals_artifact(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected LABEL=ARTIFACT"):
        frontier.parse_models(["artifacts/latest"])
    with pytest.raises(SystemExit, match="is not a model artifact"):
        frontier.parse_models([f"teacher={tmp_path}"])
    with pytest.raises(SystemExit, match="at least one --model"):
        frontier.parse_models([])


def test_the_frontier_keeps_only_points_nothing_beats_on_both_axes() -> None:
    points = [(120.0, 0.59), (205.0, 0.575), (240.0, 0.56), (238.0, 0.555), (330.0, 0.54), (200.0, 0.57)]
    assert frontier.pareto(points) == [(120.0, 0.59), (205.0, 0.575), (240.0, 0.56), (330.0, 0.54)]


def test_speed_only_reruns_take_accuracy_from_the_same_artifacts(tmp_path: Path) -> None:
    recorded = tmp_path / "run.json"
    old = {**_row("student", [1.0], 0.55, 0.6), "version": "v2"}
    recorded.write_text(json.dumps({"models": [old]}))
    rows = [{"label": "student", "version": "v2"}]
    frontier.reuse_real(rows, recorded)
    assert rows[0]["real_int8"] == old["real_int8"]
    with pytest.raises(SystemExit, match=r"has no run of student \(v3\)"):
        frontier.reuse_real([{"label": "student", "version": "v3"}], recorded)
