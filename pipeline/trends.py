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

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from models.errors import ConfigError, FinsentError
from pipeline.records import iso_utc as records_iso_utc
from pipeline.spikes import SpikeParams, SpikeState, step
from pipeline.windows import (
    SENTIMENTS,
    DedupIndex,
    WindowAgg,
    agg_add,
    agg_initialize,
    agg_result,
    last_closed_start,
    window_start,
)

Outcome = Literal["counted", "late", "duplicate", "replayed"]


class EventError(FinsentError):
    """A scored event is malformed (the message names its id and the field at fault)."""


@dataclass(frozen=True)
class ScoredEvent:
    """One scored message, as read back from news.scored."""

    id: str
    topic: str
    sentiment: str  # "negative" | "neutral" | "positive"
    score: float  # p_positive - p_negative, in [-1, 1]
    event_time_ms: int  # published_at (or the Kafka timestamp) in epoch milliseconds

    def __post_init__(self) -> None:
        where = f"scored event id={self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise EventError(f"{where}: field 'id' must be a non-empty string")
        if not isinstance(self.topic, str) or not self.topic:
            raise EventError(f"{where}: field 'topic' must be a non-empty string, got {self.topic!r}")
        if self.sentiment not in SENTIMENTS:
            raise EventError(
                f"{where}: field 'sentiment' must be one of {SENTIMENTS}, got {self.sentiment!r}"
            )
        if (
            isinstance(self.score, bool)
            or not isinstance(self.score, (int, float))
            or not math.isfinite(self.score)
            or abs(self.score) > 1.0 + 1e-6
        ):
            raise EventError(f"{where}: field 'score' must be a finite number in [-1, 1], got {self.score!r}")
        if isinstance(self.event_time_ms, bool) or not isinstance(self.event_time_ms, int):
            raise EventError(
                f"{where}: field 'event_time_ms' must be an integer (epoch ms), got {self.event_time_ms!r}"
            )


_SPIKE_DEFAULTS = SpikeParams()


@dataclass(frozen=True)
class TrendSettings:
    """Window, lateness, dedup and spike-detector settings; README "Trends and spike detection" says why."""

    window_ms: int = 60_000
    allowed_lateness_ms: int = 30_000
    dedup_horizon_ms: int = 600_000
    emit_empty_windows: bool = True
    max_quiet_windows: int = 1_440
    # The daemon's watermark: how long (wall time) an input stream with no backlog left may stay
    # silent before it stops holding the watermark back (see pipeline.aggregator.Aggregator).
    source_idle_ms: int = 10_000
    # Spike detector (see pipeline.spikes); flat here so one env var or flag sets each, defaults
    # taken from SpikeParams so the two can never disagree.
    half_life_windows: float = _SPIKE_DEFAULTS.half_life_windows
    active_slowdown: float = _SPIKE_DEFAULTS.active_slowdown
    z_enter: float = _SPIKE_DEFAULTS.z_enter
    z_leave: float = _SPIKE_DEFAULTS.z_leave
    enter_windows: int = _SPIKE_DEFAULTS.enter_windows
    leave_windows: int = _SPIKE_DEFAULTS.leave_windows
    min_negatives: int = _SPIKE_DEFAULTS.min_negatives
    min_total: int = _SPIKE_DEFAULTS.min_total
    warmup_windows: int = _SPIKE_DEFAULTS.warmup_windows
    min_volume_std: float = _SPIKE_DEFAULTS.min_volume_std
    share_std_floor: float = _SPIKE_DEFAULTS.share_std_floor
    share_clamp: float = _SPIKE_DEFAULTS.share_clamp
    update_clip_z: float = _SPIKE_DEFAULTS.update_clip_z

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "window_ms",
            "allowed_lateness_ms",
            "dedup_horizon_ms",
            "max_quiet_windows",
            "source_idle_ms",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
        if problems:
            raise ConfigError("invalid trend settings: " + "; ".join(problems))
        if self.window_ms <= 0:
            problems.append(f"window_ms must be > 0, got {self.window_ms}")
        if self.allowed_lateness_ms < 0:
            problems.append(f"allowed_lateness_ms must be >= 0, got {self.allowed_lateness_ms}")
        if self.dedup_horizon_ms < self.window_ms + self.allowed_lateness_ms:
            problems.append(
                f"dedup_horizon_ms ({self.dedup_horizon_ms}) must be >= window_ms + allowed_lateness_ms "
                f"({self.window_ms + self.allowed_lateness_ms}), or a redelivery could be counted twice"
            )
        if self.source_idle_ms < 0:
            problems.append(f"source_idle_ms must be >= 0, got {self.source_idle_ms}")
        if self.max_quiet_windows < 1:
            problems.append(f"max_quiet_windows must be >= 1, got {self.max_quiet_windows}")
        if problems:
            raise ConfigError("invalid trend settings: " + "; ".join(problems))
        self.spike_params()  # validates the detector's fields (ConfigError)

    def spike_params(self) -> SpikeParams:
        names = {f.name for f in fields(SpikeParams)}
        return SpikeParams(**{n: getattr(self, n) for n in names})

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "settings") -> TrendSettings:
        """Build from a plain mapping (config file section); unknown keys are a ConfigError naming `source`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown trend setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def iso_utc(ms: int) -> str:
    # Via records.iso_utc, which never raises: a window ending past 9999-12-31 must not stop the stage.
    text = records_iso_utc(ms)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass(frozen=True)
class TrendRecord:
    """One (topic, window), emitted when the window closes; its JSON goes to news.trends."""

    topic: str
    window_start_ms: int
    window_end_ms: int
    counts: dict[str, int]
    total: int
    mean_score: float  # 0.0 when total == 0
    negative_share: float  # 0.0 when total == 0
    late: int  # late events for this topic since its previous emitted record
    spike_score: float  # pipeline.spikes.combine(z_volume, z_share); 0.0 during warm-up
    spike_active: bool  # after guard, warm-up and hysteresis
    baseline_negative_share: float  # the baseline this window was judged against
    baseline_negatives: float  # EWMA negatives per window before this one
    z_volume: float
    z_share: float
    spike_transition: str | None  # "enter" | "leave" | None
    warmed_up: bool

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "window_start": iso_utc(self.window_start_ms),
            "window_end": iso_utc(self.window_end_ms),
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "counts": dict(self.counts),
            "total": self.total,
            "mean_score": round(self.mean_score, 6),
            "negative_share": round(self.negative_share, 6),
            "late": self.late,
            "spike_score": round(self.spike_score, 4),
            "spike_active": self.spike_active,
            "spike_transition": self.spike_transition,
            "baseline_negative_share": round(self.baseline_negative_share, 6),
            "baseline_negatives": round(self.baseline_negatives, 4),
            "z_volume": round(self.z_volume, 4),
            "z_share": round(self.z_share, 4),
            "warmed_up": self.warmed_up,
        }


@dataclass(frozen=True)
class TopicGauges:
    """What the daemon exports per topic, from the topic's last closed window."""

    negative_share: float
    volume: int
    baseline_negative_share: float
    spike_score: float
    spike_active: bool
    window_end_ms: int
    late_total: int


@dataclass(frozen=True)
class TopicSnapshot:
    """What one topic needs to resume exactly after a restart: how far its windows were emitted, its
    late counters and its spike detector. Open windows are not in it: they are re-read from the input."""

    closed_before: int  # windows of the topic starting before this were emitted (or closed before it began)
    next_start: int  # its first window not yet emitted (beyond closed_before when it began after it)
    pending_late: int = 0
    late_total: int = 0
    spike: SpikeState = field(default_factory=SpikeState)


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
