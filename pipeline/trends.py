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

Keys: the folder is keyed by topic, or by ticker (`key_type="ticker"`); the code says "topic" for either.
- Taxonomy: keys named by `open(keys)` (the model's topic labels) exist from the stream's first window,
  whether or not they have events, so a topic's silence is its baseline and a burst in a quiet topic is
  judged against that silence.
- Any other key appearing once the folder knows a taxonomy (and every ticker) starts from a prior
  (`TrendSettings.prior`), not from a warm-up: the surge that makes a new key appear must not become
  its own baseline. Without a taxonomy a topic warms up from its first window, as before.
- At most `max_keys` keys are kept (tickers): past that, the least recently active keys without an
  active spike or open windows are forgotten.

Stories: an event whose story (`ScoredEvent.story`) this key has already seen within
`story_horizon_ms` is a reprint: counted as a message, not as a story. The spike detector judges
stories by default (`count_by`), so fifty copies of one headline cannot fire a spike while fifty
different negative headlines do. Each window keeps its most negative new stories' headlines, and a
spike's record carries those of all its windows (`spike_headlines`).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    Headline,
    WindowAgg,
    agg_add,
    agg_initialize,
    agg_result,
    keep_most_negative,
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
    spike_headlines: tuple[Headline, ...] = ()  # of the spike's windows, while it builds up or is active
    last_event_start: int | None = None  # window of its newest counted event (eviction order)
    recent_volume: float = 0.0


class TrendFolder:
    """Explicit per-key window/dedup/spike state; see the module docstring for the semantics."""

    def __init__(
        self,
        settings: TrendSettings | None = None,
        key_type: str = "topic",
        max_keys: int | None = None,
    ) -> None:
        self.settings = settings or TrendSettings()
        self.key_type = key_type
        self.max_keys = max_keys
        self._params = self.settings.spike_params()
        self._topics: dict[str, _TopicState] = {}
        self._known: set[str] = set()
        self._prior_for_new = key_type == "ticker"
        self._first_start: int | None = None  # the stream's first window (where known keys begin)
        self._dedup = DedupIndex()
        self._stories = DedupIndex()  # (key, story) pairs seen within story_horizon_ms
        self._closed_before: int | None = None  # every topic's windows before this are closed
        self._watermark: int | None = None
        self._max_event_ms: int | None = None
        self.counted = 0
        self.late = 0
        self.duplicates = 0
        self.reprints = 0
        self.evicted = 0

    def open(self, keys: Iterable[str]) -> None:
        """The taxonomy: these keys exist from the stream's first window (before `advance` closes it,
        or from the current frontier when added later), events or not; other keys start from the prior."""
        keys = [k for k in keys if k]
        self._known.update(keys)
        if keys:
            self._prior_for_new = True
        if self._closed_before is not None:
            for k in keys:
                self._topics.setdefault(k, _TopicState(next_start=self._closed_before))

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
        # One message feeds several tickers: a ticker folder dedups (ticker, id) pairs.
        dedup_id = ev.id if self.key_type == "topic" else f"{ev.topic}\x1f{ev.id}"
        if dedup_id in self._dedup:
            self.duplicates += 1
            return "duplicate"
        self._dedup.remember(dedup_id, ev.event_time_ms)
        if self._max_event_ms is None or ev.event_time_ms > self._max_event_ms:
            self._max_event_ms = ev.event_time_ms
        if closed is not None and start < closed:
            if topic is None:
                topic = self._new_key(ev.topic, next_start=closed, closed_before=closed)
            topic.pending_late += 1
            topic.late_total += 1
            self.late += 1
            return "late"
        if self._first_start is None or start < self._first_start:
            self._first_start = start
        if topic is None:
            # A taxonomy key's first event before any window closed: it still begins at the stream's start.
            known_start = self._first_start if ev.topic in self._known else start
            topic = self._new_key(ev.topic, next_start=min(start, known_start))
        elif start < topic.next_start:
            topic.next_start = start
        story = f"{ev.topic}\x1f{ev.story_key}"
        new_story = story not in self._stories
        if new_story:
            self._stories.remember(story, ev.event_time_ms)
        else:
            self.reprints += 1
        agg = topic.open.get(start, agg_initialize())
        headline = ev.headline() if ev.sentiment == "negative" and new_story else None
        topic.open[start] = agg_add(agg, ev.sentiment, ev.score, new_story, headline)
        if topic.last_event_start is None or start > topic.last_event_start:
            topic.last_event_start = start
        self.counted += 1
        return "counted"

    def _new_key(self, name: str, next_start: int, closed_before: int | None = None) -> _TopicState:
        state = _TopicState(next_start=next_start, closed_before=closed_before)
        if self._prior_for_new and name not in self._known:
            state.spike = self.settings.prior()
        self._topics[name] = state
        return state

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
        self._stories.evict_before(watermark_ms - s.story_horizon_ms)
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
            closed,
            max(closed, topic.next_start),
            topic.pending_late,
            topic.late_total,
            topic.spike,
            topic.spike_headlines,
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
            spike_headlines=snap.spike_headlines,
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
        # Known keys without state begin at the stream's first window (or where closing stands now).
        begin = self._closed_before if self._closed_before is not None else self._first_start
        if begin is not None:
            for k in self._known:
                self._topics.setdefault(k, _TopicState(next_start=min(begin, frontier)))
        self._closed_before = frontier
        records: list[TrendRecord] = []
        for name, topic in self._topics.items():
            records.extend(self._close_topic(name, topic, frontier))
        records.sort(key=lambda r: (r.window_start_ms, r.topic))
        self._evict()
        return records

    def _evict(self) -> None:
        """Keep at most `max_keys` keys: forget the least recently active ones that have no active
        (or building) spike and no open window; a forgotten key that comes back starts from the prior."""
        if self.max_keys is None or len(self._topics) <= self.max_keys:
            return
        idle = sorted(
            (t.last_event_start or t.next_start, name)
            for name, t in self._topics.items()
            if not t.open and not t.spike.active and not t.spike.enter_streak and name not in self._known
        )
        for _, name in idle[: len(self._topics) - self.max_keys]:
            del self._topics[name]
            self.evicted += 1

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
            # A quiet window is still emitted when it changes or continues a spike (a spike that ends
            # in silence must say so), whatever emit_empty_windows says.
            if (
                record.total
                or self.settings.emit_empty_windows
                or record.spike_active
                or record.spike_transition
            ):
                topic.pending_late = 0
                out.append(record)
            start += size
        topic.next_start = start  # == frontier, unless this topic starts after it
        topic.closed_before = max(frontier, topic.closed_before or frontier)
        return out

    def _close_window(self, name: str, topic: _TopicState, start: int, agg: WindowAgg) -> TrendRecord:
        stats = agg_result(agg)
        judged = stats.by_story() if self.settings.count_by == "stories" else stats
        topic.spike, decision = step(topic.spike, judged, self._params)
        if topic.spike.active or topic.spike.enter_streak:
            topic.spike_headlines = keep_most_negative(topic.spike_headlines, stats.headlines)
        else:
            topic.spike_headlines = ()
        topic.recent_volume += self._params.alpha * (stats.total - topic.recent_volume)
        end = start + self.settings.window_ms
        topic.gauges = TopicGauges(
            negative_share=stats.negative_share,
            volume=stats.total,
            baseline_negative_share=decision.baseline_negative_share,
            spike_score=decision.score,
            spike_active=decision.active,
            window_end_ms=end,
            late_total=topic.late_total,
            recent_volume=topic.recent_volume,
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
            key_type=self.key_type,
            stories=stats.stories,
            negative_stories=stats.negative_stories,
            headlines=stats.headlines,
            spike_headlines=topic.spike_headlines,
        )
