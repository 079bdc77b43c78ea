"""Event-time window arithmetic, the per-window aggregation and the dedup index — pure logic, no I/O.

Everything here takes time as data (epoch milliseconds carried by the events); nothing reads a clock,
so tests replay any history with explicit timestamps.

- `window_start(ts, size)` / `window_end(...)`: tumbling windows aligned to the epoch, a function of the
  timestamp alone (so two processes, or a replay and the live daemon, assign an event to the same window).
- `agg_initialize` / `agg_add` / `agg_result`: the window aggregation as three functions over an explicit,
  immutable state (`WindowAgg`), so it can be unit-tested and serialised. A window counts messages and
  new stories (a reprint adds a message, not a story) and keeps its most negative new stories' headlines.
- `DedupIndex`: ids seen recently, evicted by *event* time so its memory is bounded by the horizon.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from pipeline.records import iso_utc

SENTIMENTS = ("negative", "neutral", "positive")
HEADLINES_KEPT = 5  # most negative headlines a window (and a spike record) carries


@dataclass(frozen=True)
class Headline:
    """A negative message behind a window: the first of its story, kept to show why a spike fired."""

    id: str
    text: str
    source: str | None
    score: float
    story: str
    event_time_ms: int

    def to_json_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "score": round(self.score, 6),
            "story": self.story,
            "published_at": iso_utc(self.event_time_ms),  # the event time (published_at or its fallback)
        }


def keep_most_negative(
    kept: tuple[Headline, ...], new: tuple[Headline, ...], limit: int = HEADLINES_KEPT
) -> tuple[Headline, ...]:
    """The `limit` most negative of both, one per story (ties: earlier, then id, so the result is stable)."""
    by_story: dict[str, Headline] = {}
    for h in sorted(kept + new, key=lambda h: (h.score, h.event_time_ms, h.id)):
        by_story.setdefault(h.story, h)
    return tuple(list(by_story.values())[:limit])


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start (inclusive) of the tumbling window holding `ts_ms`; windows are aligned to the Unix epoch.

    Floor division keeps pre-1970 (negative) timestamps in the window that contains them.
    """
    return ts_ms - (ts_ms % size_ms)


def window_end(ts_ms: int, size_ms: int) -> int:
    """End (exclusive) of the tumbling window holding `ts_ms`."""
    return window_start(ts_ms, size_ms) + size_ms


def last_closed_start(watermark_ms: int, size_ms: int, lateness_ms: int) -> int:
    """Start of the newest window that is closed at `watermark_ms`.

    A window [s, s+size) closes once watermark >= s + size + lateness, so the newest closed start is the
    largest grid point s <= watermark - lateness - size.
    """
    return window_start(watermark_ms - lateness_ms - size_ms, size_ms)


@dataclass(frozen=True)
class WindowAgg:
    """Running aggregate of one (key, window): counts per sentiment, the sum of scores, new stories (all
    and negative) and the most negative new stories' headlines."""

    negative: int = 0
    neutral: int = 0
    positive: int = 0
    score_sum: float = 0.0
    stories: int = 0
    negative_stories: int = 0
    headlines: tuple[Headline, ...] = ()

    @property
    def total(self) -> int:
        return self.negative + self.neutral + self.positive


@dataclass(frozen=True)
class WindowStats:
    """The finished aggregate of a window, what the spike detector and the record are built from."""

    counts: dict[str, int]
    total: int
    negatives: int
    mean_score: float  # 0.0 for an empty window (total says it is empty)
    negative_share: float  # 0.0 for an empty window
    stories: int = 0  # stories first seen in this window (reprints of earlier ones not counted)
    negative_stories: int = 0
    headlines: tuple[Headline, ...] = ()

    def by_story(self) -> WindowStats:
        """The same window counted in stories: what the spike detector judges by default."""
        return WindowStats(
            counts=self.counts,
            total=self.stories,
            negatives=self.negative_stories,
            mean_score=self.mean_score,
            negative_share=self.negative_stories / self.stories if self.stories else 0.0,
            stories=self.stories,
            negative_stories=self.negative_stories,
            headlines=self.headlines,
        )


def agg_initialize() -> WindowAgg:
    return WindowAgg()


def agg_add(
    state: WindowAgg,
    sentiment: str,
    score: float,
    new_story: bool = True,
    headline: Headline | None = None,
) -> WindowAgg:
    """Fold one scored event into the aggregate; `sentiment` must be one of SENTIMENTS.

    `new_story`: the event is the first of its story the folder has seen (a reprint counts as a
    message only); `headline`: offered for the window's most negative headlines (new negative stories).
    """
    if sentiment not in SENTIMENTS:
        raise ValueError(f"unknown sentiment {sentiment!r}; expected one of {SENTIMENTS}")
    negative = sentiment == "negative"
    headlines = state.headlines
    if headline is not None and negative and new_story:
        headlines = keep_most_negative(headlines, (headline,))
    return WindowAgg(
        negative=state.negative + negative,
        neutral=state.neutral + (sentiment == "neutral"),
        positive=state.positive + (sentiment == "positive"),
        score_sum=state.score_sum + score,
        stories=state.stories + new_story,
        negative_stories=state.negative_stories + (negative and new_story),
        headlines=headlines,
    )


def agg_result(state: WindowAgg) -> WindowStats:
    total = state.total
    return WindowStats(
        counts={"negative": state.negative, "neutral": state.neutral, "positive": state.positive},
        total=total,
        negatives=state.negative,
        mean_score=state.score_sum / total if total else 0.0,
        negative_share=state.negative / total if total else 0.0,
        stories=state.stories,
        negative_stories=state.negative_stories,
        headlines=state.headlines,
    )


class DedupIndex:
    """Ids seen within a horizon of event time; memory is bounded by what the horizon holds.

    Each id is remembered with the event time it was first seen at; `evict_before(t)` forgets ids whose
    event time is older than `t`. A min-heap orders the ids by event time so eviction never scans.
    State is two plain containers, so it could be serialised for a restart later.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._by_time: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def remember(self, event_id: str, event_time_ms: int) -> None:
        if event_id in self._seen:
            return
        self._seen[event_id] = event_time_ms
        heapq.heappush(self._by_time, (event_time_ms, event_id))

    def evict_before(self, cutoff_ms: int) -> int:
        """Forget ids whose event time is < `cutoff_ms`; returns how many were forgotten."""
        evicted = 0
        while self._by_time and self._by_time[0][0] < cutoff_ms:
            _, event_id = heapq.heappop(self._by_time)
            del self._seen[event_id]
            evicted += 1
        return evicted
