"""Raw Kafka bytes -> a `NewsItem` to score, or a `DeadLetter` saying exactly why not. Pure.

The daemon must never crash on input and never drop it silently, so `parse_message` has no failure
mode other than returning a `DeadLetter` with a stable reason code (what `finsent_dlq_total{reason}`
counts and alerts key on) and a human message naming the field at fault. The original bytes travel
with the dead letter so nothing is lost; the source topic/partition/offset say where to look.

Input schema (README "Input schema"): a JSON object with `id` (non-empty string), `text` or
`headline` (+ optional `body`), optional `published_at` (ISO 8601 with a UTC offset; the event time,
defaulting to the Kafka record timestamp), optional `source` (string) and `tickers` (list of
strings). Other fields (`truth` in the test feeds, say) are ignored.

Event time is bounded (`EventTimeBounds`): one headline dated 2100 would otherwise move the
aggregate stage's watermark past every open window, and a date that leaves datetime's range once
converted to UTC cannot even be written back out. The bounds are judged against the record
timestamp (the processing clock `now_ms` when there is none), so a consumer working through a
backlog does not reject old-but-honest news.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# Reason codes, in roughly the order the checks run. Stable: metrics and alerts use them.
REASONS = (
    "empty_message",
    "oversize",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_id",
    "bad_id",
    "missing_text",
    "bad_text_type",
    "empty_text",
    "invalid_unicode",
    "bad_published_at",
    "bad_field_type",
    "missing_time",
    "event_time_out_of_range",
    "scoring_failed",
    "serialization_failed",
)
MAX_ID_CHARS = 256
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Epoch milliseconds that `datetime` can represent (0001-01-01 .. 9999-12-31, UTC).
MIN_DATETIME_MS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
MAX_DATETIME_MS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """How far an event time may lie from its reference time before the message is dead-lettered.

    Reference: the Kafka record timestamp, else the processing clock. For "ahead" it is the earlier
    of the two, so a producer whose clock (or a replay's copied timestamp) is in the future cannot
    carry a future event time past the check.
    """

    max_ahead_ms: int = DAY_MS
    max_behind_ms: int = 30 * DAY_MS

    def violation(self, event_ms: int, record_ms: int | None, now_ms: int) -> str | None:
        """None when `event_ms` is acceptable, else why not (for the dead letter's message)."""
        behind_ref = record_ms if record_ms is not None and record_ms >= 0 else now_ms
        ahead_ref = min(behind_ref, now_ms)
        what = "the record timestamp" if behind_ref != now_ms else "the processing clock"
        if event_ms - ahead_ref > self.max_ahead_ms:
            ref = "the processing clock" if ahead_ref == now_ms else what
            return (
                f"event time {iso_utc(event_ms)} is {_span(event_ms - ahead_ref)} ahead of {ref} "
                f"{iso_utc(ahead_ref)} (limit {_span(self.max_ahead_ms)})"
            )
        if behind_ref - event_ms > self.max_behind_ms:
            return (
                f"event time {iso_utc(event_ms)} is {_span(behind_ref - event_ms)} behind {what} "
                f"{iso_utc(behind_ref)} (limit {_span(self.max_behind_ms)})"
            )
        return None


def _span(ms: int) -> str:
    if ms >= DAY_MS:
        return f"{ms / DAY_MS:.1f} days"
    return f"{ms / 3_600_000:.1f} h" if ms >= 3_600_000 else f"{ms / 1000:.0f} s"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: the Kafka coordinates, or a file line in `--direct` mode."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None  # Kafka record timestamp; None/negative when unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
        }

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class NewsItem:
    id: str
    text: str
    event_time_ms: int
    published_at: str | None
    source: str | None
    tickers: tuple[str, ...]
    origin: Origin
    raw: bytes = field(default=b"", repr=False)  # kept so a later scoring failure can dead-letter it


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    message: str
    raw: bytes
    origin: Origin
    id: str | None = None  # when the message got far enough to have one

    def to_dict(self, dead_lettered_at_ms: int, max_raw_bytes: int | None = None) -> dict[str, Any]:
        """The DLQ record. `max_raw_bytes` caps the bytes kept: an oversize input, base64-inflated by
        a third, could exceed what the broker accepts and block the batch forever; the full input
        stays at its source offset."""
        raw = self.raw if max_raw_bytes is None else self.raw[:max_raw_bytes]
        return {
            "id": self.id,
            "reason": self.reason,
            "message": self.message,
            "input": self.origin.to_dict(),
            "raw_b64": base64.b64encode(raw).decode("ascii"),
            "raw_bytes": len(self.raw),
            "raw_truncated": len(raw) < len(self.raw),
            "dead_lettered_at": iso_utc(dead_lettered_at_ms),
        }


class _Reject(Exception):
    def __init__(self, reason: str, message: str, item_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.item_id = item_id


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC. Total: a value outside datetime's range (which only a
    record from before the range checks existed can carry) is written as the number itself, because
    an output that cannot be formatted must not stop the stage that formats it."""
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    except OverflowError:
        return f"{ms}ms-since-epoch"


def parse_published_at(value: str) -> int:
    """ISO 8601 with an offset -> epoch milliseconds. ValueError when it is not that, or when the
    instant is not representable in UTC (0001-01-01T00:00:00+01:00 is year 0 there)."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("no UTC offset (write e.g. 2026-03-02T14:05:00Z)")
    try:
        utc = dt.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("outside the years 1..9999 once converted to UTC") from None
    return (utc - _EPOCH) // timedelta(milliseconds=1)


def _encodable(text: str) -> bool:
    # JSON "\ud800" escapes decode to lone surrogates: valid JSON, but not text the tokenizer or the
    # UTF-8 encoder of the output can take.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_content(text: str) -> bool:
    return any(c.isprintable() and not c.isspace() for c in text)


def _text_of(obj: dict[str, Any], item_id: str) -> str:
    if obj.get("text") is not None:
        text = obj["text"]
        if not isinstance(text, str):
            raise _Reject("bad_text_type", f"'text' must be a string, got {type(text).__name__}", item_id)
        parts = [text]
    elif obj.get("headline") is not None:
        headline, body = obj["headline"], obj.get("body")
        if not isinstance(headline, str):
            raise _Reject(
                "bad_text_type", f"'headline' must be a string, got {type(headline).__name__}", item_id
            )
        if body is not None and not isinstance(body, str):
            raise _Reject("bad_text_type", f"'body' must be a string, got {type(body).__name__}", item_id)
        parts = [headline] + ([body] if body and body.strip() else [])
    else:
        raise _Reject("missing_text", "neither 'text' nor 'headline' is present", item_id)
    for part in parts:
        if not _encodable(part):
            raise _Reject("invalid_unicode", "text contains unpaired UTF-16 surrogates", item_id)
    text = "\n".join(p.strip() for p in parts)
    if not _has_content(text):
        raise _Reject("empty_text", "text is empty or whitespace/control characters only", item_id)
    return text


def _optional_str(obj: dict[str, Any], key: str, item_id: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _encodable(value):
        raise _Reject("bad_field_type", f"'{key}' must be a string, got {type(value).__name__}", item_id)
    return value


def _tickers(obj: dict[str, Any], item_id: str) -> tuple[str, ...]:
    value = obj.get("tickers")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and _encodable(t) for t in value):
        raise _Reject("bad_field_type", "'tickers' must be a list of strings", item_id)
    return tuple(value)


def _id_of(obj: dict[str, Any]) -> str:
    if "id" not in obj:
        raise _Reject("missing_id", "no 'id' field")
    value = obj["id"]
    if not isinstance(value, str):
        raise _Reject("bad_id", f"'id' must be a string, got {type(value).__name__}")
    if not value.strip() or len(value) > MAX_ID_CHARS or not _encodable(value):
        raise _Reject("bad_id", f"'id' must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _item(
    obj: dict[str, Any], origin: Origin, raw: bytes, bounds: EventTimeBounds | None, now_ms: int | None
) -> NewsItem:
    item_id = _id_of(obj)
    text = _text_of(obj, item_id)
    published = obj.get("published_at")
    if published is not None:
        if not isinstance(published, str):
            raise _Reject(
                "bad_published_at",
                f"'published_at' must be an ISO 8601 string, got {type(published).__name__}",
                item_id,
            )
        try:
            event_time_ms = parse_published_at(published)
        except (ValueError, OverflowError) as exc:
            raise _Reject("bad_published_at", f"'published_at' {published[:64]!r}: {exc}", item_id) from None
    elif origin.timestamp_ms is not None and origin.timestamp_ms >= 0:
        event_time_ms = origin.timestamp_ms
    else:
        raise _Reject("missing_time", "no 'published_at' and no record timestamp", item_id)
    if bounds is not None:
        assert now_ms is not None, "event-time bounds need the processing clock"
        why = bounds.violation(event_time_ms, origin.timestamp_ms, now_ms)
        if why is not None:
            raise _Reject("event_time_out_of_range", why, item_id)
    return NewsItem(
        id=item_id,
        text=text,
        event_time_ms=event_time_ms,
        published_at=published,
        source=_optional_str(obj, "source", item_id),
        tickers=_tickers(obj, item_id),
        origin=origin,
        raw=raw,
    )


def parse_message(
    raw: bytes | None,
    origin: Origin,
    *,
    max_bytes: int,
    bounds: EventTimeBounds | None = None,
    now_ms: int | None = None,
) -> NewsItem | DeadLetter:
    """Validate one message. Never raises: anything unusable becomes a `DeadLetter`.

    With `bounds` (the daemon always passes them, with `now_ms`), an event time too far from the
    record timestamp is dead-lettered as `event_time_out_of_range`."""
    data = raw or b""

    def dead(reason: str, message: str, item_id: str | None = None) -> DeadLetter:
        return DeadLetter(reason, f"{origin}: {message}", data, origin, item_id)

    if not data.strip():
        return dead("empty_message", "empty message (no value, or whitespace only)")
    if len(data) > max_bytes:
        return dead("oversize", f"message is {len(data)} bytes, limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead("invalid_utf8", f"not UTF-8: byte {exc.start}: {exc.reason}")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return dead("invalid_json", f"not JSON: {exc}")
    except RecursionError:
        return dead("invalid_json", "not JSON: nested too deeply")
    if not isinstance(obj, dict):
        return dead("not_an_object", f"JSON value is {type(obj).__name__}, expected an object")
    try:
        return _item(obj, origin, data, bounds, now_ms)
    except _Reject as rej:
        return dead(rej.reason, rej.message, rej.item_id)
