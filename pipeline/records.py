"""Raw Kafka bytes -> a `NewsItem` to score, or a `DeadLetter` saying exactly why not. Pure.

The daemon must never crash on input and never drop it silently, so `parse_message` has no failure
mode other than returning a `DeadLetter` with a stable reason code (what `finsent_dlq_total{reason}`
counts and alerts key on) and a human message naming the field at fault. The original bytes travel
with the dead letter so nothing is lost; the source topic/partition/offset say where to look.

Input schema (README "Input schema"): a JSON object with `id` (non-empty string), `text` or
`headline` (+ optional `body`), optional `published_at` (ISO 8601 with a UTC offset; the event time,
defaulting to the Kafka record timestamp), optional `source` (string) and `tickers` (list of
strings). Other fields (`truth` in the test feeds, say) are ignored.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    "scoring_failed",
)
MAX_ID_CHARS = 256


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
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def parse_published_at(value: str) -> int:
    """ISO 8601 with an offset -> epoch milliseconds. ValueError when it is not that."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("no UTC offset (write e.g. 2026-03-02T14:05:00Z)")
    return int(dt.timestamp() * 1000)


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


def _item(obj: dict[str, Any], origin: Origin, raw: bytes) -> NewsItem:
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


def parse_message(raw: bytes | None, origin: Origin, *, max_bytes: int) -> NewsItem | DeadLetter:
    """Validate one message. Never raises: anything unusable becomes a `DeadLetter`."""
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
        return _item(obj, origin, data)
    except _Reject as rej:
        return dead(rej.reason, rej.message, rej.item_id)
