"""The score stage's ordering rules with micro-batches overlapped, on scripted input.

The stage's Kafka calls (poll, publish, commit) are replaced by a script here so that a publish can
be made to fail at a chosen batch; the broker side of the same loop runs for real in
test_daemon_streams.py (with and without overlap) and test_daemon_restarts.py. The model is real
(the tiny artifact through ONNX Runtime).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.stages import ScoreStage

FEED = Path(__file__).resolve().parents[1] / "feeds" / "calm_day.jsonl"
Rec = namedtuple("Rec", "topic partition offset timestamp value")


class ScriptedStage(ScoreStage):
    def __init__(
        self, scorer: Any, batches: list[list[Rec]], fail_publish: int | None, overlap: bool
    ) -> None:
        settings = Settings(batch_max_wait_ms=0, overlap_batches=overlap)
        super().__init__(settings, Metrics(CollectorRegistry()), threading.Event(), scorer)
        self.script = list(batches)
        self.fail_publish = fail_publish  # the publish call (1-based) that is not acknowledged
        self.calls = 0
        self.log: list[tuple[str, Any]] = []

    def poll(self, timeout_s: float, max_records: int) -> list[Rec]:
        return self.script.pop(0) if self.script else []

    def publish(self, out: list[Any]) -> bool:
        self.calls += 1
        if self.calls == self.fail_publish:
            return False
        ids = {o.value for o in out if o.topic == self.settings.scored_topic}
        self.log.append(("publish", len(ids)))
        return True

    def commit(self, offsets: dict[Any, int], metadata: str = "") -> None:
        self.log.append(("commit", max(offsets.values())))

    def update_lag(self) -> None:
        pass


def batches(n: int, size: int) -> list[list[Rec]]:
    lines = FEED.read_bytes().splitlines()[: n * size]
    recs = [Rec("news.raw", 0, i, 1_772_435_000_000, line) for i, line in enumerate(lines)]
    return [recs[i : i + size] for i in range(0, len(recs), size)]


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Any:
    from models.artifact import verify_artifact
    from models.runtime import Scorer

    return Scorer(verify_artifact(tiny_artifact), provider="cpu", sub_batch=8)


def run(stage: ScriptedStage, steps: int) -> int:
    done = sum(stage.step() for _ in range(steps))
    return done + stage.drain()


@pytest.mark.parametrize("overlap", [True, False])
def test_each_batch_is_published_then_committed_in_input_order(scorer: Any, overlap: bool) -> None:
    stage = ScriptedStage(scorer, batches(3, 10), fail_publish=None, overlap=overlap)
    try:
        assert run(stage, 4) == 30
    finally:
        stage.close()
    assert stage.log == [
        ("publish", 10), ("commit", 10), ("publish", 10), ("commit", 20), ("publish", 10), ("commit", 30),
    ]  # fmt: skip


@pytest.mark.parametrize("overlap", [True, False])
def test_after_an_unacknowledged_batch_nothing_later_is_published_or_committed(
    scorer: Any, overlap: bool
) -> None:
    # The second batch's publish fails (a stop while the broker is away). With overlap the third
    # batch has already been scored by then; committing it would move the offset past the second.
    stage = ScriptedStage(scorer, batches(3, 10), fail_publish=2, overlap=overlap)
    try:
        assert run(stage, 4) == 10
    finally:
        stage.close()
    assert stage.log == [("publish", 10), ("commit", 10)]
