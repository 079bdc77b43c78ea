"""What is still to come, for the aggregate stage: `news.raw` lag in the score stage's group, and
where each `news.scored` partition ends.

lag = end of the raw partition - the score group's committed offset. Ends come from the high watermark
of fetch responses, not from ListOffsets: Tansu answers ListOffsets with the base offset of the last
record batch + 1, a lower bound that would hide most of a backlog. The committed offsets are read first
(an OffsetFetch in the score group, which does not join it), then every partition is fetched again from
its last record, so the ends are newer than the commits: a raw partition reported drained really had
every record scored and published, all of them below the scored ends reported with it. A group-less
probe consumer does the fetching. Any failure answers None ("unknown"), and the aggregator then falls
back to its wall-clock rule.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline import kafka_io
from pipeline.settings import Settings

log = logging.getLogger(__name__)

FRESH_WAIT_S = 2.0  # how long one observation waits for its fetches


class UpstreamBacklog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: Any = None
        self.committed_reader: Any = None
        self.tps: list[Any] = []

    def _open(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        s = self.settings
        base = kafka_io.client_config(s, "finsent-backlog")
        self.consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            **kafka_io.frame_limits(), **base,
        )  # fmt: skip
        # Never subscribes, so it reads the score group's commits without joining that group.
        self.committed_reader = KafkaConsumer(group_id=s.group_id, enable_auto_commit=False, **base)
        self.tps = []
        for topic in (s.input_topic, s.scored_topic):
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"no partition metadata for {topic}")
            self.tps += [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)

    def _fresh_ends(self) -> dict[Any, int] | None:
        """Each partition's end, from fetches sent after this call began (so newer than anything read
        before it). A fetch at end - 1 returns that one record and the high watermark; re-positioning
        makes the consumer drop answers to fetches sent earlier. None when they do not all come in time."""
        start: dict[Any, int] = {}
        for tp in self.tps:
            hw = self.consumer.highwater(tp)
            start[tp] = max(0, hw - 1) if hw else 0
            self.consumer.seek(tp, start[tp])
        deadline = time.monotonic() + FRESH_WAIT_S
        ends: dict[Any, int] = {}
        while time.monotonic() < deadline:
            self.consumer.poll(timeout_ms=50, max_records=10_000)
            for tp in self.tps:
                hw = self.consumer.highwater(tp)
                if tp not in ends and hw is not None and (self.consumer.position(tp) > start[tp] or hw == 0):
                    ends[tp] = hw
            if len(ends) == len(self.tps):
                return ends
        return None

    def observe(self) -> tuple[dict[tuple[str, int], int], dict[int, int]] | None:
        """(raw lag per (raw topic, partition), end per scored partition), both newer than the score
        group's committed offsets they are compared with; None if unknown."""
        try:
            if self.consumer is None:
                self._open()
            s = self.settings
            # Committed offsets first: the ends fetched after them are at least as new.
            raw = [tp for tp in self.tps if tp.topic == s.input_topic]
            committed = {tp: self.committed_reader.committed(tp) or 0 for tp in raw}
            ends = self._fresh_ends()
            if ends is None:
                return None
            lag = {(tp.topic, tp.partition): max(0, ends[tp] - committed[tp]) for tp in raw}
            scored = {tp.partition: end for tp, end in ends.items() if tp.topic == s.scored_topic}
            return lag, scored
        except Exception as exc:  # the backlog is an input to the watermark, never a reason to stop
            log.warning("aggregate stage: %s backlog unknown (%s); watermark falls back to the idle rule",
                        self.settings.input_topic, exc)  # fmt: skip
            self.close()
            return None

    def close(self) -> None:
        for c in (self.consumer, self.committed_reader):
            if c is not None:
                try:
                    c.close()
                except Exception as exc:  # closing must not hide the real problem
                    log.debug("backlog probe: close: %s", exc)
        self.consumer = self.committed_reader = None
