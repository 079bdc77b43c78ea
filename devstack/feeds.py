"""Recorded feeds: where their planted surge is, and slices of them by event time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any


def feed_meta(feed: Path) -> dict[str, Any]:
    """The feed's `.meta.json` beside it, or {}."""
    meta = feed.with_suffix(".meta.json")
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}


def _parse_time(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _surge(meta: dict[str, Any]) -> Any:
    surge = meta.get("surge") or meta.get("spike") or meta
    if isinstance(surge, list) and surge:
        surge = surge[0]
    return surge


def surge_bounds(meta: dict[str, Any]) -> tuple[int, int] | None:
    """(start, end) ms of the planted surge from a feed's meta file, if it says (several spellings)."""
    surge = _surge(meta)
    if not isinstance(surge, dict):
        return None
    for a, b in (("start", "end"), ("surge_start", "surge_end"), ("start_time", "end_time"), ("from", "to")):
        if isinstance(surge.get(a), str) and isinstance(surge.get(b), str):
            return _parse_time(surge[a]), _parse_time(surge[b])
    return None


def surge_topic(meta: dict[str, Any]) -> str | None:
    surge = _surge(meta)
    return surge.get("topic") if isinstance(surge, dict) else None


def slice_feed(src: Path, dest: Path, start_ms: int | None, end_ms: int | None) -> int:
    """Copy the lines of `src` whose published_at is in [start_ms, end_ms) to `dest`; returns the count.

    Lines without a readable published_at are left out: the slice is paced by event time and they have
    none (the full feed still carries them; the tests inject their own bad messages)."""
    from pipeline.replay import peek, read_feed

    kept = 0
    with open(dest, "wb") as out:
        for _number, raw in read_feed(src):
            _, when = peek(raw)
            if when is None:
                continue
            if (start_ms is None or when >= start_ms) and (end_ms is None or when < end_ms):
                out.write(raw + b"\n")
                kept += 1
    return kept
