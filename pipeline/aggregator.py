"""Aggregation with commit bookkeeping: a TrendFolder plus the watermark, safe commits and restart state.

Pure (time comes in as `now_s`, partitions, offsets and lag as plain values), so the aggregate stage and
`finsent replay --direct` share it and tests drive it without a broker.

The aggregate stage commits a `news.scored` offset only once every event before it has been folded
into a window that is closed and published, so a restart re-reads exactly the events of the windows
still open (see `Aggregator.safe_offsets`). What a restart cannot re-read — how far each topic's windows
were emitted, its late counters and its spike detector — is the per-partition `PartitionState`
(`snapshot`), which the stage stores in a changelog topic before it commits (`pipeline.changelog`) and
hands back to `restore` on assignment. Events re-read below the snapshot's `read_to` whose window was
already emitted are "replayed" (skipped), so a restart or a new owner never emits a window twice.

Two folders: topics (from `news.scored`, keyed by topic) and tickers (from `news.scored.tickers`, one
record per ticker of a message, keyed by ticker, so each ticker is folded by exactly one member). An
input partition belongs to one of them (`kind`), and so does its restart state. The topic taxonomy
(the model's topic labels) is opened per input partition (`open_topics`), each topic in the partition
its records are published to, so every member opens exactly the topics it will fold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.scoring import scored_event
from pipeline.trends import ScoredEvent, TopicSnapshot, TrendFolder, TrendRecord, TrendSettings
from pipeline.windows import window_start

SOURCE_IDLE_S = 10.0  # an input partition silent this long, with no backlog, stops holding the watermark


@dataclass
class _Pending:
    """Per input partition: (offset, window start) of events in windows not yet closed."""

    events: list[tuple[int, int]] = field(default_factory=list)
    next_offset: int | None = None  # last offset seen + 1
    read_to: int | None = None  # restored: offsets below this were read before the restart


@dataclass(frozen=True)
class PartitionState:
    """Restart state of one input partition: read up to `read_to`, and its topics' snapshots."""

    read_to: int | None
    topics: dict[str, TopicSnapshot] = field(default_factory=dict)  # by key (topic or ticker)
    kind: str = "topic"  # which folder the partition feeds: "topic" | "ticker"


class Aggregator:
    """A TrendFolder plus what the Kafka loop needs: a watermark, safe commits, restart state.

    Watermark: the minimum, over the ordered streams that may still deliver, of the max event time
    seen from each. A stream (`source`) is one `news.raw` partition (carried by every scored record) as
    seen through one `news.scored` partition: each is in event-time order when its producer is (a
    replay, a live feed) and the score stage keeps that order, but consumers read partitions in chunks,
    so the max over everything would run ahead and turn the slower streams' events "late".

    Which streams may still deliver is decided by the data when the stage can say (`observe_backlog`):
    a stream whose raw partition has lag in the score stage's group, or whose scored partition this
    member has not yet read up to where that raw partition's events can reach, holds the watermark
    however long it is silent — during a catch-up the score stage may read one raw partition for
    minutes while the others wait. A stream with no backlog holds it `source_idle_s` (wall time) after
    its last event, the grace for a live feed whose next event is on its way. Where the backlog is
    unknown (no answer from the broker), the wall-clock rule alone applies, as before. When input
    resumes after a pause, every stream gets a fresh grace period.
    """

    def __init__(self, settings: TrendSettings, source_idle_s: float = SOURCE_IDLE_S) -> None:
        self.settings = settings
        self.source_idle_s = source_idle_s
        self.folder = TrendFolder(settings)
        self.tickers = _ticker_folder(settings)
        self.pending: dict[Any, _Pending] = {}
        self.sources: dict[Any, tuple[int | None, float]] = {}  # source -> (max event time, last seen)
        # key -> the input partition it is read from, per folder ("topic", "ticker")
        self.key_partition: dict[str, dict[str, Any]] = {"topic": {}, "ticker": {}}
        self.partition_kind: dict[Any, str] = {}
        self.last_event_s: float | None = None
        self.skipped = 0
        self.raw_lag: Mapping[Any, int] | None = None
        self._drained: dict[Any, dict[Any, int] | None] = {}  # raw partition -> scored high watermarks
        self._positions: Mapping[Any, tuple[int, int | None]] | None = None

    def add(
        self,
        ev: ScoredEvent,
        partition: Any = None,
        offset: int | None = None,
        source: Any = None,
        now_s: float = 0.0,
        kind: str = "topic",
    ) -> str:
        """Fold one event into the folder of `kind` ("topic": ev.topic is a topic; "ticker": a ticker)."""
        start = window_start(ev.event_time_ms, self.settings.window_ms)
        p = self.pending.setdefault(partition, _Pending()) if partition is not None else None
        reread = p is not None and p.read_to is not None and offset is not None and offset < p.read_to
        outcome = self.folder_of(kind).add(ev, reread=reread)
        if outcome == "replayed":
            self.skipped += 1
        if partition is not None:
            self.key_partition[kind].setdefault(ev.topic, partition)
            self.partition_kind.setdefault(partition, kind)
        if self.last_event_s is None or now_s - self.last_event_s > self.source_idle_s:
            # Input resumes after a pause (or starts): every partition gets a fresh grace period,
            # so the first one to speak cannot run the watermark past the others.
            self.sources = {src: (t, now_s) for src, (t, _) in self.sources.items()}
        self.last_event_s = now_s
        seen = self.sources.get(source)
        latest = ev.event_time_ms if seen is None or seen[0] is None else max(ev.event_time_ms, seen[0])
        self.sources[source] = (latest, now_s)
        if p is not None and offset is not None:
            if outcome == "counted":
                p.events.append((offset, start))
            p.next_offset = offset + 1
        return outcome

    def folder_of(self, kind: str) -> TrendFolder:
        return self.tickers if kind == "ticker" else self.folder

    @property
    def topic_partition(self) -> dict[str, Any]:
        return self.key_partition["topic"]

    def open_topics(self, topics: Mapping[str, Any]) -> None:
        """The taxonomy this member folds: topic -> the input partition its records arrive on (None
        without partitions, e.g. `replay --direct`). Each exists from the stream's first window."""
        for name, partition in topics.items():
            if partition is not None:
                self.key_partition["topic"].setdefault(name, partition)
                self.partition_kind.setdefault(partition, "topic")
        self.folder.open(topics)

    def expect_sources(self, sources: Any, now_s: float) -> None:
        """Input partitions known from metadata: one that has not delivered yet holds the watermark
        back (while it has backlog, else up to `source_idle_s`), so a slow partition's first events
        are not late."""
        for src in sources:
            self.sources.setdefault(src, (None, now_s))

    # -- backlog ------------------------------------------------------------------------------------
    def observe_backlog(
        self,
        raw_lag: Mapping[Any, int] | None,
        positions: Mapping[Any, tuple[int, int | None]] | None,
    ) -> None:
        """What is still to come, as data: `raw_lag` per raw partition (its end minus the score
        group's committed offset), `positions` per scored partition (this member's position, its high
        watermark). None where unknown: the streams concerned fall back to the wall-clock rule.

        A raw partition whose lag is 0 has published everything to the scored topic, all of it below
        the scored partitions' ends (the caller fetches those after the lag): its streams are drained
        once this member has read that far. The ends are taken at the second observation in a row that
        finds the lag at 0, a margin against one stale answer.
        """
        self._positions = positions
        if raw_lag is None:
            self.raw_lag, self._drained = None, {}
            return
        prev = self.raw_lag or {}
        for rp, lag in raw_lag.items():
            if lag > 0:
                self._drained[rp] = None
            elif prev.get(rp) == 0 and self._drained.get(rp) is None and positions is not None:
                self._drained[rp] = {sp: hw for sp, (_, hw) in positions.items() if hw is not None}
        self.raw_lag = raw_lag

    def _busy(self, source: Any) -> bool | None:
        """True: the stream has events still to come; False: it has none; None: not known."""
        if self.raw_lag is None or not (isinstance(source, tuple) and len(source) == 2):
            return None
        sp, rp = source
        lag = self.raw_lag.get(rp)
        if lag is None:
            return None
        if lag > 0:
            return True
        marks = self._drained.get(rp)
        if marks is None:
            return True  # drained only since the last observation: wait for the next one
        if self._positions is None or sp not in self._positions or sp not in marks:
            return None  # this member's position, or the partition's end then, is not known
        return self._positions[sp][0] < marks[sp]

    def watermark(self, now_s: float = 0.0) -> int | None:
        held = [
            t
            for src, (t, seen) in self.sources.items()
            if now_s - seen <= self.source_idle_s or self._busy(src)
        ]
        if None in held:
            return None
        if held:
            return min(t for t in held if t is not None)
        return max((t for t, _ in self.sources.values() if t is not None), default=None)

    # -- closing ------------------------------------------------------------------------------------
    def advance(self, now_s: float = 0.0) -> list[TrendRecord]:
        """Close the windows the watermark has passed (plus the allowed lateness)."""
        watermark = self.watermark(now_s)
        if watermark is None:
            return []
        records = self.folder.advance(watermark) + self.tickers.advance(watermark)
        self._prune()
        return records

    def flush(self) -> list[TrendRecord]:
        records = self.folder.flush() + self.tickers.flush()
        self._prune()
        return records

    @property
    def closed_before(self) -> int | None:
        """The topic folder's frontier (the one owner of it): every window starting before it is closed."""
        return self.folder.closed_before

    def _prune(self) -> None:
        for partition, p in self.pending.items():
            frontier = self.folder_of(self.partition_kind.get(partition, "topic")).closed_before
            if frontier is not None:
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

    # -- restart state ------------------------------------------------------------------------------
    def snapshot(self, partition: Any) -> PartitionState:
        """The partition's restart state: how far it was read and its topics' snapshots. Stored
        before the offsets from `safe_offsets` are committed, so it always covers them."""
        p = self.pending.get(partition)
        read_to = None if p is None else max(p.next_offset or 0, p.read_to or 0) or None
        kind = self.partition_kind.get(partition, "topic")
        folder = self.folder_of(kind)
        topics = {}
        for name, part in sorted(self.key_partition[kind].items()):
            snap = folder.snapshot_topic(name) if part == partition else None
            if snap is not None:
                topics[name] = snap
        return PartitionState(read_to, topics, kind)

    def restore(self, partition: Any, state: PartitionState) -> None:
        """Resume a partition from its stored state (after `reset`, before its events are re-read)."""
        self.pending.setdefault(partition, _Pending()).read_to = state.read_to
        self.partition_kind[partition] = state.kind
        folder = self.folder_of(state.kind)
        for name, snap in state.topics.items():
            folder.restore_topic(name, snap)
            self.key_partition[state.kind][name] = partition

    def reset(self) -> None:
        """Forget everything (a rebalance: uncommitted events will be re-read from committed offsets,
        and the restart state of each assigned partition comes back through `restore`)."""
        self.folder = TrendFolder(self.settings)
        self.tickers = _ticker_folder(self.settings)
        self.pending = {}
        self.sources = {}
        self.key_partition = {"topic": {}, "ticker": {}}
        self.partition_kind = {}
        self.last_event_s = None
        self.raw_lag, self._positions, self._drained = None, None, {}


def _ticker_folder(settings: TrendSettings) -> TrendFolder:
    # Tickers are many and mostly silent: only windows with messages become records (the detector
    # still steps over the quiet ones), and state is kept for a bounded number of them.
    return TrendFolder(
        replace(settings, emit_empty_windows=False), key_type="ticker", max_keys=settings.ticker_max_keys
    )


def to_event(value: bytes) -> tuple[ScoredEvent, Any, str]:
    """A news.scored (or news.scored.tickers) value -> (the event, its input partition as the
    watermark source, the folder it feeds: "topic", or "ticker" with the ticker as the event's key)."""
    f = scored_event(value)
    key, kind = (f.topic, "topic") if f.ticker is None else (f.ticker, "ticker")
    ev = ScoredEvent(f.id, key, f.sentiment, f.score, f.event_time_ms, f.story, f.text, f.news_source)
    return ev, f.source, kind
