"""What the score stage still has to do: `news.raw` lag in the score stage's group, for the aggregate stage.

lag = end of the raw partition - the score group's committed offset. The end comes from the high
watermark of fetch responses, not from ListOffsets: Tansu answers ListOffsets with the base offset of
the last record batch + 1, a lower bound that would hide most of a backlog. So a group-less probe
consumer keeps itself positioned at the last end it saw and fetches from there (it skips the data; a
fetch at the end returns nothing but the new high watermark). The committed offsets come from an
OffsetFetch in the score group (reading them does not join the group). Any failure answers None
("unknown"), and the aggregator then falls back to its wall-clock rule.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import kafka_io
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class UpstreamBacklog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: Any = None
        self.committed_reader: Any = None
        self.tps: list[Any] = []

    def _open(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        s = self.settings
        base = kafka_io._base(s, "finsent-backlog")
        self.consumer = KafkaConsumer(
            group_id=None, enable_auto_commit=False, auto_offset_reset="latest",
            **kafka_io.frame_limits(), **base,
        )  # fmt: skip
        # Never subscribes, so it reads the score group's commits without joining that group.
        self.committed_reader = KafkaConsumer(group_id=s.group_id, enable_auto_commit=False, **base)
        parts = self.consumer.partitions_for_topic(s.input_topic)
        if not parts:
            raise RuntimeError(f"no partition metadata for {s.input_topic}")
        self.tps = [TopicPartition(s.input_topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)

    def lag(self) -> dict[tuple[str, int], int] | None:
        """(raw topic, partition) -> messages not yet committed by the score stage; None if unknown."""
        try:
            if self.consumer is None:
                self._open()
            # Committed offsets first: the high watermarks read after them are at least as new.
            committed = {tp: self.committed_reader.committed(tp) or 0 for tp in self.tps}
            for tp in self.tps:
                hw = self.consumer.highwater(tp)
                if hw is not None and self.consumer.position(tp) != hw:
                    self.consumer.seek(tp, hw)  # skip the data; only the high watermark matters
            self.consumer.poll(timeout_ms=50)
            out = {}
            for tp in self.tps:
                hw = self.consumer.highwater(tp)
                if hw is None:
                    return None  # no fetch answered yet
                out[(tp.topic, tp.partition)] = max(0, hw - committed[tp])
            return out
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
