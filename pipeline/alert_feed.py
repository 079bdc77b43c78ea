"""The active spikes and the headlines behind them, as the HTTP endpoint serves them (`/spikes`).

    state = fold(state, trend_records, now_ms)      # pure: the trend records' JSON, as on news.trends
    feed = AlertFeed(); feed.update(records, now_ms); feed.snapshot()   # the same, behind a lock

A record with `spike_active` true adds or refreshes its (key_type, key) entry; one with `spike_active`
false removes it. An entry keeps when its spike began (`since`: the window that entered it, or the first
active window this process saw), the newest window's numbers, and the most negative headlines of all its
windows, one per story: those the records carry for the whole spike (`spike_headlines`: the folder keeps
them from the build-up on, and across restarts) and for their own window (`headlines`). Records without
`key_type`/`key`/headlines (written before tickers and headlines existed) count as topic records with
no headlines.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from pipeline.records import iso_utc

MAX_HEADLINES = 5  # per spike: what a person reads under an alert, not an archive
# A daemon holds state for a bounded number of keys (topics, and tickers up to the trend folder's own
# cap); this bounds the feed on its own too, keeping the highest-scoring spikes.
MAX_ENTRIES = 1_000
# Event-time windows a spike may go without a record before it is dropped. Every owned key gets a record
# per closed window (empty ones included), so only a key this process no longer owns (the partition
# moved to another member in a rebalance) falls this far behind the others, and its last state is stale.
STALE_WINDOWS = 10
HEADLINE_FIELDS = ("id", "text", "source", "score", "story", "published_at")


@dataclass(frozen=True)
class ActiveSpike:
    key_type: str
    key: str
    since: str  # ISO 8601 end of the window that entered the spike (or the first active one seen)
    since_ms: int
    window_start: str
    window_end: str
    window_end_ms: int
    window_ms: int
    windows: int  # active windows folded into this entry
    spike_score: float
    z_volume: float
    z_share: float
    negative_share: float
    baseline_negative_share: float
    total: int
    stories: int | None
    headlines: tuple[dict[str, Any], ...]
    updated_at_ms: int

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key_type": self.key_type,
            "key": self.key,
            "since": self.since,
            "since_ms": self.since_ms,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "window_end_ms": self.window_end_ms,
            "windows": self.windows,
            "spike_score": self.spike_score,
            "z_volume": self.z_volume,
            "z_share": self.z_share,
            "negative_share": self.negative_share,
            "baseline_negative_share": self.baseline_negative_share,
            "total": self.total,
            "stories": self.stories,
            "headlines": [dict(h) for h in self.headlines],
            "updated_at": _iso(self.updated_at_ms),
        }


State = dict[tuple[str, str], ActiveSpike]


def _iso(ms: int) -> str:
    text = iso_utc(ms)  # total: never raises, whatever the number
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def record_key(record: dict[str, Any]) -> tuple[str, str] | None:
    """(key_type, key) of a trend record; None when it names neither a key nor a topic."""
    key_type = record.get("key_type", "topic")
    key = record.get("key", record.get("topic"))
    if not isinstance(key_type, str) or not key_type or not isinstance(key, str) or not key:
        return None
    return key_type, key


def clean_headline(item: Any) -> dict[str, Any] | None:
    """A headline with the agreed fields only, or None when it has no id or no numeric score."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    score = item.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None
    out = {name: item.get(name) for name in HEADLINE_FIELDS}
    out["score"] = float(score)
    return out


def merge_headlines(kept: tuple[dict[str, Any], ...], new: list[Any]) -> tuple[dict[str, Any], ...]:
    """The `MAX_HEADLINES` most negative stories, each by its most negative headline (the first seen on a
    tie; a headline without a story is a story of its own). Keeping only the top few between windows
    loses nothing: a story that fell out can only come back with a more negative headline, the one kept."""
    by_story: dict[str, dict[str, Any]] = {}
    for item in [*kept, *(clean_headline(h) for h in new)]:
        if item is None:
            continue
        story = item["story"] if isinstance(item.get("story"), str) and item["story"] else "id:" + item["id"]
        if story not in by_story or item["score"] < by_story[story]["score"]:
            by_story[story] = item
    ranked = sorted(by_story.values(), key=lambda h: (h["score"], str(h.get("published_at")), h["id"]))
    return tuple(ranked[:MAX_HEADLINES])


def _entry(record: dict[str, Any], key: tuple[str, str], old: ActiveSpike | None, now_ms: int) -> ActiveSpike:
    end_ms = record["window_end_ms"]
    start_ms = _int(record.get("window_start_ms"))
    window_ms = end_ms - start_ms if start_ms is not None and start_ms < end_ms else 0
    end_iso = record["window_end"] if isinstance(record.get("window_end"), str) else _iso(end_ms)
    start_iso = record["window_start"] if isinstance(record.get("window_start"), str) else ""
    kept: tuple[dict[str, Any], ...] = ()
    if old is None or record.get("spike_transition") == "enter":
        since, since_ms, windows = end_iso, end_ms, 1
    else:
        since, since_ms, windows, kept = old.since, old.since_ms, old.windows + 1, old.headlines
    new = [
        h
        for name in ("spike_headlines", "headlines")
        if isinstance(record.get(name), list)
        for h in record[name]
    ]
    return ActiveSpike(
        key_type=key[0],
        key=key[1],
        since=since,
        since_ms=since_ms,
        window_start=start_iso,
        window_end=end_iso,
        window_end_ms=end_ms,
        window_ms=window_ms or (old.window_ms if old else 0),
        windows=windows,
        spike_score=_number(record.get("spike_score")),
        z_volume=_number(record.get("z_volume")),
        z_share=_number(record.get("z_share")),
        negative_share=_number(record.get("negative_share")),
        baseline_negative_share=_number(record.get("baseline_negative_share")),
        total=_int(record.get("total")) or 0,
        stories=_int(record.get("stories")),
        headlines=merge_headlines(kept, new),
        updated_at_ms=now_ms,
    )


def fold(
    state: State, records: list[Any], now_ms: int, *, max_entries: int = MAX_ENTRIES
) -> tuple[State, int]:
    """The active spikes after `records` (trend records' JSON, in emission order); also the number of
    records ignored as unreadable (no key, no integer `window_end_ms`). Never raises on bad input."""
    out = dict(state)
    ignored = 0
    newest = max((e.window_end_ms for e in out.values()), default=None)
    for record in records:
        key = record_key(record) if isinstance(record, dict) else None
        end_ms = _int(record.get("window_end_ms")) if key is not None else None
        if key is None or end_ms is None:
            ignored += 1
            continue
        newest = end_ms if newest is None else max(newest, end_ms)
        old = out.get(key)
        if old is not None and end_ms < old.window_end_ms:
            continue  # a re-emitted older window: the entry already holds newer news
        if record.get("spike_active") is True:
            out[key] = _entry(record, key, old, now_ms)
        else:
            out.pop(key, None)
    if newest is not None:
        for key, e in list(out.items()):
            if e.window_ms and newest - e.window_end_ms > STALE_WINDOWS * e.window_ms:
                del out[key]
    if len(out) > max_entries:
        keep = sorted(out.values(), key=_rank)[:max_entries]
        out = {(e.key_type, e.key): e for e in keep}
    return out, ignored


def _rank(e: ActiveSpike) -> tuple[Any, ...]:
    return (-e.spike_score, e.key_type, e.key)


class AlertFeed:
    """`fold` behind a lock: the aggregate stage updates it, HTTP handler threads read it."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._state: State = {}
        self._updated_at_ms: int | None = None
        self.ignored = 0  # unreadable records seen (a bug upstream; the feed goes on)

    def update(self, records: list[Any], now_ms: int) -> None:
        with self._lock:
            self._state, ignored = fold(self._state, records, now_ms, max_entries=self.max_entries)
            self._updated_at_ms = now_ms
            self.ignored += ignored

    def snapshot(self) -> dict[str, Any]:
        """Every active spike, highest score first, JSON-ready."""
        with self._lock:
            entries = sorted(self._state.values(), key=_rank)
            updated = self._updated_at_ms
        return {
            "updated_at": None if updated is None else _iso(updated),
            "count": len(entries),
            "spikes": [e.to_json_dict() for e in entries],
        }

    def get(self, key_type: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._state.get((key_type, key))
        return None if entry is None else entry.to_json_dict()

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._state)
