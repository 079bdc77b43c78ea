"""Aggregation with commit bookkeeping: a TrendFolder plus the watermark, safe commits and rebalance recovery.

Pure (time comes in as `now_s`, partitions and offsets as plain values), so the aggregate stage and
`finsent replay --direct` share it and tests drive it without a broker.

The aggregate stage commits a `news.scored` offset only once every event before it has been folded
into a window that is closed and published, so a restart re-reads exactly the events of the windows
still open (see `Aggregator.safe_offsets`). Events re-read after a restart or rebalance are counted
once: the folder dedups ids, and events of windows this member already published are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.scoring import scored_event
from pipeline.trends import ScoredEvent, TrendFolder, TrendRecord, TrendSettings
from pipeline.windows import last_closed_start, window_start

SOURCE_IDLE_S = 10.0  # an input partition silent this long stops holding the watermark back


@dataclass
class _Pending:
    """Per input partition: (offset, window start) of events in windows not yet closed."""

    events: list[tuple[int, int]] = field(default_factory=list)
    next_offset: int | None = None  # last offset seen + 1


class Aggregator:
    """A TrendFolder plus what the Kafka loop needs: a watermark, safe commits, rebalance recovery.

    Watermark: the minimum, over the ordered streams that delivered recently, of the max event time
    seen from each. A stream is one `news.raw` partition (carried by every scored record) as seen
    through one `news.scored` partition: each input partition is in event-time order when its
    producer is (a replay, a live feed) and the score stage keeps that order, but consumers read
    partitions in chunks, so the max over everything would run ahead and turn the slower streams'
    events "late". A partition silent for `source_idle_s` (wall time) while others
    deliver stops holding the watermark back, so one quiet partition cannot stall every topic's
    windows; when input resumes after a pause, every partition gets a fresh grace period.
    """

    def __init__(self, settings: TrendSettings, source_idle_s: float = SOURCE_IDLE_S) -> None:
        self.settings = settings
        self.source_idle_s = source_idle_s
        self.folder = TrendFolder(settings)
        self.pending: dict[Any, _Pending] = {}
        self.sources: dict[Any, tuple[int | None, float]] = {}  # source -> (max event time, last seen)
        self.last_event_s: float | None = None
        self.closed_before: int | None = None  # every window starting before this was emitted
        self.skip_before: int | None = None  # after a reset: windows before this were already emitted
        self.skipped = 0

    def add(
        self,
        ev: ScoredEvent,
        partition: Any = None,
        offset: int | None = None,
        source: Any = None,
        now_s: float = 0.0,
    ) -> str:
        start = window_start(ev.event_time_ms, self.settings.window_ms)
        if self.skip_before is not None and start < self.skip_before:
            # Re-read after a reset; its window was published before the reset.
            self.skipped += 1
            outcome = "replayed"
        else:
            outcome = self.folder.add(ev)
        if self.last_event_s is None or now_s - self.last_event_s > self.source_idle_s:
            # Input resumes after a pause (or starts): every partition gets a fresh grace period,
            # so the first one to speak cannot run the watermark past the others.
            self.sources = {src: (t, now_s) for src, (t, _) in self.sources.items()}
        self.last_event_s = now_s
        seen = self.sources.get(source)
        latest = ev.event_time_ms if seen is None or seen[0] is None else max(ev.event_time_ms, seen[0])
        self.sources[source] = (latest, now_s)
        if partition is not None and offset is not None:
            p = self.pending.setdefault(partition, _Pending())
            if outcome == "counted":
                p.events.append((offset, start))
            p.next_offset = offset + 1
        return outcome

    def expect_sources(self, sources: Any, now_s: float) -> None:
        """Input partitions known from metadata: one that has not delivered yet holds the watermark
        back (up to `source_idle_s`), so a slow partition's first events are not late."""
        for src in sources:
            self.sources.setdefault(src, (None, now_s))

    def watermark(self, now_s: float = 0.0) -> int | None:
        active = [t for t, seen in self.sources.values() if now_s - seen <= self.source_idle_s]
        if None in active:
            return None
        if active:
            return min(t for t in active if t is not None)
        return max((t for t, _ in self.sources.values() if t is not None), default=None)

    def advance(self, now_s: float = 0.0) -> list[TrendRecord]:
        """Close the windows the watermark has passed (plus the allowed lateness)."""
        watermark = self.watermark(now_s)
        if watermark is None:
            return []
        records = self.folder.advance(watermark)
        s = self.settings
        self._closed(last_closed_start(watermark, s.window_ms, s.allowed_lateness_ms) + s.window_ms)
        return records

    def flush(self) -> list[TrendRecord]:
        watermark = self.folder.max_event_time_ms
        records = self.folder.flush()
        if watermark is not None:
            self._closed(window_start(watermark, self.settings.window_ms) + self.settings.window_ms)
        return records

    def _closed(self, frontier: int) -> None:
        if self.closed_before is not None and frontier <= self.closed_before:
            return
        self.closed_before = frontier
        for p in self.pending.values():
            p.events = [(off, start) for off, start in p.events if start >= frontier]

    def safe_offsets(self) -> dict[Any, int]:
        """Per partition, the offset to commit: the first event still in an open window, else the end."""
        out = {}
        for tp, p in self.pending.items():
            if p.events:
                out[tp] = min(off for off, _ in p.events)
            elif p.next_offset is not None:
                out[tp] = p.next_offset
        return out

    def commit_metadata(self) -> str:
        """Stored with the committed offsets: windows before this are emitted (see `reset`)."""
        return "" if self.closed_before is None else json.dumps({"closed_before": self.closed_before})

    def skip_windows_before(self, frontier: int | None) -> None:
        if frontier is not None:
            self.skip_before = max(self.skip_before or frontier, frontier)

    def reset(self) -> None:
        """Forget open windows (a rebalance: uncommitted events will be re-read from committed offsets)."""
        self.folder = TrendFolder(self.settings)
        self.pending = {}
        self.sources = {}
        self.last_event_s = None
        if self.closed_before is not None:
            self.skip_before = max(self.skip_before or self.closed_before, self.closed_before)


def _closed_before_of(metadata: str) -> int | None:
    try:
        value = json.loads(metadata).get("closed_before")
    except (ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None


def to_event(value: bytes) -> tuple[ScoredEvent, Any]:
    """A news.scored value -> (the event, its input partition as the watermark source)."""
    f = scored_event(value)
    return ScoredEvent(f.id, f.topic, f.sentiment, f.score, f.event_time_ms), f.source
