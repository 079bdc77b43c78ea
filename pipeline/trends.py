"""Per-topic event-time trends: fold scored events into tumbling windows, dedup, lateness, spike detection.

The API the daemon (and replay, and tests) use; no I/O, no clock — time is the events' own:

    folder = TrendFolder(TrendSettings())
    outcome = folder.add(ScoredEvent(id, topic, sentiment, score, event_time_ms))
        # "counted" | "late" | "duplicate" | "replayed" (only with reread=True)
    records = folder.advance(watermark_ms)   # TrendRecords of windows with end + lateness <= watermark
    records = folder.flush()                 # close everything (end of a replay/backfill)
    folder.gauges()                          # {topic: TopicGauges} of the last closed window per topic
    folder.snapshot_topic(name) / folder.restore_topic(name, snap)   # restart state (TopicSnapshot)

Semantics, in the order `add` applies them:

0. Replay: an event the caller marks as re-read (`reread=True`: read before, by this process or a
   previous owner of its input partition, before a restart or rebalance) whose window its topic already
   emitted is "replayed": skipped, neither counted nor late, so a restart never emits a window twice.
1. Dedup: an id already seen (first-seen event time within `dedup_horizon_ms` of the watermark) is a
   "duplicate" and changes nothing. The horizon must cover window + lateness, so an id is only forgotten
   after its window has closed: a redelivery after that is "late", never counted twice.
2. Lateness: windows are closed by `advance(watermark)` (the caller passes the max event time it has seen,
   bounded by whatever clock-skew guard it applies). An event whose window is already closed is "late": it
   is not folded in, it is counted per topic, and that count rides on the topic's next emitted record
   (`late`), so nothing is dropped silently.
3. Otherwise the event is "counted" into its (topic, window) aggregate.

Records: one per (topic, window) from the topic's first window on, quiet windows included (total 0,
shares 0.0 by convention) unless `emit_empty_windows` is off; the spike detector steps over quiet windows
either way, so a usually silent topic is judged against its silence. Records of one `advance` come out
sorted by (window_start_ms, topic), so each topic's records are in window order. A run of more than
`max_quiet_windows` quiet windows (a topic silent for a day) is cut short: by then the baseline has long
converged, and emitting/stepping the rest would only cost time.

Each topic owns its closed-window frontier (`closed_before`: its windows before this were emitted); it is
the only record of how far a topic was emitted, and `snapshot_topic`/`restore_topic` carry it, with the
late counters and the spike detector's state, across restarts (`pipeline.changelog` stores them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.spikes import SpikeState, step
from pipeline.trend_types import (  # re-exported: the trend API is imported from here
    EventError,
    Outcome,
    ScoredEvent,
    TopicGauges,
    TopicSnapshot,
    TrendRecord,
    TrendSettings,
    iso_utc,
)
from pipeline.windows import (
    DedupIndex,
    WindowAgg,
    agg_add,
    agg_initialize,
    agg_result,
    last_closed_start,
    window_start,
)

__all__ = [
    "EventError",
    "Outcome",
    "ScoredEvent",
    "TopicGauges",
    "TopicSnapshot",
    "TrendFolder",
    "TrendRecord",
    "TrendSettings",
    "iso_utc",
]


@dataclass
class _TopicState:
    next_start: int  # first window of this topic not yet closed
    closed_before: int | None = None  # windows before this were emitted (None: none yet)
    open: dict[int, WindowAgg] = field(default_factory=dict)
    spike: SpikeState = field(default_factory=SpikeState)
    pending_late: int = 0
    late_total: int = 0
    gauges: TopicGauges | None = None


class TrendFolder:
    """Explicit per-topic window/dedup/spike state; see the module docstring for the semantics."""

    def __init__(self, settings: TrendSettings | None = None) -> None:
        self.settings = settings or TrendSettings()
        self._params = self.settings.spike_params()
        self._topics: dict[str, _TopicState] = {}
        self._dedup = DedupIndex()
        self._closed_before: int | None = None  # every topic's windows before this are closed
        self._watermark: int | None = None
        self._max_event_ms: int | None = None
        self.counted = 0
        self.late = 0
        self.duplicates = 0

    # -- inputs ------------------------------------------------------------------------------------
    def add(self, ev: ScoredEvent, reread: bool = False) -> Outcome:
        """Fold one event in; the outcome says whether it was counted, late, a duplicate or replayed.

        `reread`: the caller read this event before (see "Replay" above); only then can it be "replayed".
        """
        start = window_start(ev.event_time_ms, self.settings.window_ms)
        topic = self._topics.get(ev.topic)
        closed = self._closed_for(topic)
        if reread and closed is not None and start < closed:
            return "replayed"
        if ev.id in self._dedup:
            self.duplicates += 1
            return "duplicate"
        self._dedup.remember(ev.id, ev.event_time_ms)
        if self._max_event_ms is None or ev.event_time_ms > self._max_event_ms:
            self._max_event_ms = ev.event_time_ms
        if closed is not None and start < closed:
            if topic is None:
                topic = self._topics[ev.topic] = _TopicState(next_start=closed, closed_before=closed)
            topic.pending_late += 1
            topic.late_total += 1
            self.late += 1
            return "late"
        if topic is None:
            topic = self._topics[ev.topic] = _TopicState(next_start=start)
        elif start < topic.next_start:
            topic.next_start = start
        topic.open[start] = agg_add(topic.open.get(start, agg_initialize()), ev.sentiment, ev.score)
        self.counted += 1
        return "counted"

    def advance(self, watermark_ms: int | None) -> list[TrendRecord]:
        """Close every window with end + allowed_lateness <= watermark; a watermark never moves back.

        None (no event seen yet) closes nothing, so `advance(folder.max_event_time_ms)` is always safe.
        """
        if watermark_ms is None or (self._watermark is not None and watermark_ms <= self._watermark):
            return []
        self._watermark = watermark_ms
        s = self.settings
        records = self._close_before(
            last_closed_start(watermark_ms, s.window_ms, s.allowed_lateness_ms) + s.window_ms
        )
        self._dedup.evict_before(watermark_ms - s.dedup_horizon_ms)
        return records

    def flush(self) -> list[TrendRecord]:
        """Close every window holding an event (end of a replay/backfill); later events for them are late."""
        if self._max_event_ms is None:
            return []
        s = self.settings
        records = self._close_before(window_start(self._max_event_ms, s.window_ms) + s.window_ms)
        self._dedup.evict_before(self._max_event_ms - s.dedup_horizon_ms)
        return records

    # -- restart state ------------------------------------------------------------------------------
    def snapshot_topic(self, name: str) -> TopicSnapshot | None:
        """The topic's restart state; None when it has emitted nothing yet (nothing to resume)."""
        topic = self._topics.get(name)
        closed = self._closed_for(topic)
        if topic is None or closed is None:
            return None
        return TopicSnapshot(
            closed, max(closed, topic.next_start), topic.pending_late, topic.late_total, topic.spike
        )

    def restore_topic(self, name: str, snap: TopicSnapshot) -> None:
        """Resume a topic from a snapshot (before any of its events are added): windows before
        `snap.closed_before` count as emitted, the detector continues from `snap.spike`."""
        self._topics[name] = _TopicState(
            next_start=max(snap.next_start, snap.closed_before),
            closed_before=snap.closed_before,
            spike=snap.spike,
            pending_late=snap.pending_late,
            late_total=snap.late_total,
        )

    def topics(self) -> list[str]:
        return sorted(self._topics)

    # -- outputs -----------------------------------------------------------------------------------
    def gauges(self) -> dict[str, TopicGauges]:
        return {name: t.gauges for name, t in sorted(self._topics.items()) if t.gauges is not None}

    @property
    def watermark_ms(self) -> int | None:
        return self._watermark

    @property
    def closed_before(self) -> int | None:
        """Every topic's windows starting before this are closed (a restored topic may be further)."""
        return self._closed_before

    @property
    def max_event_time_ms(self) -> int | None:
        """The max event time added so far: the natural watermark to pass to `advance`."""
        return self._max_event_ms

    @property
    def dedup_size(self) -> int:
        return len(self._dedup)

    def late_by_topic(self) -> dict[str, int]:
        return {name: t.late_total for name, t in sorted(self._topics.items()) if t.late_total}

    # -- closing -----------------------------------------------------------------------------------
    def _closed_for(self, topic: _TopicState | None) -> int | None:
        """The topic's emitted frontier: the folder's, or the topic's own when restored further."""
        own = None if topic is None else topic.closed_before
        if own is None or self._closed_before is None:
            return own if own is not None else self._closed_before
        return max(own, self._closed_before)

    def _close_before(self, frontier: int) -> list[TrendRecord]:
        if self._closed_before is not None and frontier <= self._closed_before:
            return []
        self._closed_before = frontier
        records: list[TrendRecord] = []
        for name, topic in self._topics.items():
            records.extend(self._close_topic(name, topic, frontier))
        records.sort(key=lambda r: (r.window_start_ms, r.topic))
        return records

    def _close_topic(self, name: str, topic: _TopicState, frontier: int) -> list[TrendRecord]:
        size, cap = self.settings.window_ms, self.settings.max_quiet_windows
        out: list[TrendRecord] = []
        start, quiet_run = topic.next_start, 0
        while start < frontier:
            agg = topic.open.pop(start, None)
            if agg is None:
                quiet_run += 1
                if quiet_run > cap:
                    # Skip the rest of a long silence: jump to the next window holding events (or the end).
                    start = min((s for s in topic.open if s < frontier), default=frontier)
                    continue
            else:
                quiet_run = 0
            record = self._close_window(name, topic, start, agg or agg_initialize())
            if record.total or self.settings.emit_empty_windows:
                topic.pending_late = 0
                out.append(record)
            start += size
        topic.next_start = start  # == frontier, unless this topic starts after it
        topic.closed_before = max(frontier, topic.closed_before or frontier)
        return out

    def _close_window(self, name: str, topic: _TopicState, start: int, agg: WindowAgg) -> TrendRecord:
        stats = agg_result(agg)
        topic.spike, decision = step(topic.spike, stats, self._params)
        end = start + self.settings.window_ms
        topic.gauges = TopicGauges(
            negative_share=stats.negative_share,
            volume=stats.total,
            baseline_negative_share=decision.baseline_negative_share,
            spike_score=decision.score,
            spike_active=decision.active,
            window_end_ms=end,
            late_total=topic.late_total,
        )
        return TrendRecord(
            topic=name,
            window_start_ms=start,
            window_end_ms=end,
            counts=stats.counts,
            total=stats.total,
            mean_score=stats.mean_score,
            negative_share=stats.negative_share,
            late=topic.pending_late,
            spike_score=decision.score,
            spike_active=decision.active,
            baseline_negative_share=decision.baseline_negative_share,
            baseline_negatives=decision.baseline_negatives,
            z_volume=decision.z_volume,
            z_share=decision.z_share,
            spike_transition=decision.transition,
            warmed_up=decision.warmed_up,
        )
