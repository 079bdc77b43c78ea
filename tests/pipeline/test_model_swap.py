"""Swapping the model of a running daemon, without a broker: the verdicts (pure) and the reloader
over real artifacts, real ONNX Runtime sessions and an injected clock.

The real-broker test (a feed replayed, swaps mid-stream) is tests/pipeline/test_daemon_swap.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.runtime import load_scorer
from pipeline.model_reload import ModelReloader
from pipeline.model_swap import (
    REFUSED_INVALID,
    REFUSED_LABELS,
    SWAPPED,
    label_verdict,
    probe_verdict,
)
from tests.support.toy_artifact import OTHER_TOPICS, TOPICS, corrupt, point_latest, toy_version

# -- verdicts (pure) ---------------------------------------------------------------------------------


def test_same_topics_in_another_order_may_swap_other_topics_may_not() -> None:
    assert label_verdict(TOPICS, list(reversed(TOPICS)), allow_change=False).outcome == SWAPPED
    v = label_verdict(TOPICS, OTHER_TOPICS, allow_change=False)
    assert v.outcome == REFUSED_LABELS and not v.accepted
    assert "new topics Crypto" in v.reason and "missing topics Macro" in v.reason
    assert "--allow-label-change" in v.reason
    allowed = label_verdict(TOPICS, OTHER_TOPICS, allow_change=True)
    assert allowed.accepted and "allowed" in allowed.reason


def test_probe_refuses_wrong_shapes_nan_and_non_probabilities() -> None:
    good_t = np.full((2, 3), 1 / 3, dtype=np.float32)
    good_s = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert probe_verdict(good_t, good_s, 2, 3).accepted
    assert "shape" in probe_verdict(good_t, good_s, 2, 4).reason
    nan = good_s.copy()
    nan[1, 1] = np.nan
    assert "NaN" in probe_verdict(good_t, nan, 2, 3).reason
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], dtype=np.float32)
    bad = probe_verdict(good_t, logits, 2, 3)
    assert bad.outcome == REFUSED_INVALID and "not probabilities" in bad.reason


# -- the reloader over real artifacts ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def reloader_for(root: Path, **kw: Any) -> tuple[ModelReloader, Any, list[tuple[str, str | None]], Clock]:
    latest = root / "latest"
    scorer = load_scorer(latest, provider="cpu")
    outcomes: list[tuple[str, str | None]] = []
    clock = Clock()
    r = ModelReloader(
        str(latest),
        scorer,
        make_scorer=lambda p: load_scorer(p, provider="cpu"),
        interval_s=kw.pop("interval_s", 10.0),
        allow_label_change=kw.pop("allow_label_change", False),
        on_outcome=lambda o, new: outcomes.append((o, None if new is None else new.version)),
        clock=clock,
    )
    return r, scorer, outcomes, clock


def step(r: ModelReloader, scorer: Any) -> Any:
    """One batch boundary, then wait for a load it started (the daemon would score meanwhile)."""
    out = r.between_batches(scorer)
    r.wait_idle(30)
    return out


def test_a_repointed_latest_is_picked_up_at_the_next_check_and_swapped_between_batches(
    tmp_path: Path,
) -> None:
    toy_version(tmp_path, "v1")
    point_latest(tmp_path, "v1")
    toy_version(tmp_path, "v2", seed=1)
    r, v1, outcomes, clock = reloader_for(tmp_path)
    point_latest(tmp_path, "v2")
    clock.t += 9.9  # not due yet: nothing is even looked at
    assert step(r, v1) is v1 and outcomes == []
    clock.t += 0.1  # due: the load runs in the background; this batch still gets v1
    assert step(r, v1) is v1 and outcomes == []
    new = r.between_batches(v1)  # the next boundary takes the verified candidate
    assert new.version == "v2" and outcomes == [(SWAPPED, "v2")]
    assert new.probabilities(["oil falls"])[0].shape == (1, 3)
    clock.t += 10
    assert step(r, new) is new and outcomes == [(SWAPPED, "v2")]  # unchanged target: no reload


def test_a_corrupt_artifact_is_refused_naming_the_file_and_not_retried_until_sighup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    toy_version(tmp_path, "v1")
    point_latest(tmp_path, "v1")
    bad_file = corrupt(toy_version(tmp_path, "v3", seed=3))
    r, v1, outcomes, clock = reloader_for(tmp_path, interval_s=1.0)
    point_latest(tmp_path, "v3")
    clock.t += 1
    with caplog.at_level(logging.ERROR, logger="pipeline.model_reload"):
        assert step(r, v1) is v1
        assert r.between_batches(v1) is v1
    assert outcomes == [(REFUSED_INVALID, None)]
    (line,) = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    assert (
        str(bad_file.resolve()) in line and "checksum mismatch" in line and "still serving version v1" in line
    )
    for _ in range(3):  # the same refused target is not reloaded on every check
        clock.t += 1
        assert step(r, v1) is v1
    assert outcomes == [(REFUSED_INVALID, None)]
    r.request()  # SIGHUP: try again even so
    assert step(r, v1) is v1 and outcomes == [(REFUSED_INVALID, None)] * 2


def test_other_topic_labels_are_refused_unless_allowed(tmp_path: Path) -> None:
    toy_version(tmp_path, "v1")
    point_latest(tmp_path, "v1")
    toy_version(tmp_path, "v4", seed=4, topics=OTHER_TOPICS)
    r, v1, outcomes, _clock = reloader_for(tmp_path, interval_s=0)  # SIGHUP only
    point_latest(tmp_path, "v4")
    assert step(r, v1) is v1 and outcomes == []  # interval 0: no periodic check
    r.request()
    assert step(r, v1) is v1 and r.between_batches(v1) is v1
    assert outcomes == [(REFUSED_LABELS, None)]

    point_latest(tmp_path, "v1")
    allowing, v1b, allowed, _ = reloader_for(tmp_path, interval_s=0, allow_label_change=True)
    point_latest(tmp_path, "v4")
    allowing.request()
    assert step(allowing, v1b) is v1b
    new = allowing.between_batches(v1b)
    assert new.version == "v4" and allowed == [(SWAPPED, "v4")]
    assert new.artifact.topic_labels == tuple(OTHER_TOPICS)


def test_labels_that_do_not_match_the_graph_fail_the_probe(tmp_path: Path) -> None:
    toy_version(tmp_path, "v1")
    point_latest(tmp_path, "v1")
    # four label lines, a graph with three topic columns: every check on files passes
    toy_version(tmp_path, "v5", topics=[*TOPICS, "Crypto"])
    r, v1, outcomes, _ = reloader_for(tmp_path, interval_s=0, allow_label_change=True)
    point_latest(tmp_path, "v5")
    r.request()
    assert step(r, v1) is v1 and r.between_batches(v1) is v1
    assert outcomes == [(REFUSED_INVALID, None)]
