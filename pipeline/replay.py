"""Replay a recorded feed: into Kafka (`finsent replay FILE`), or through the pipeline without a
broker (`finsent replay FILE --direct`).

A feed is JSONL, one message per line, sent as the line's exact bytes: replay does not validate
(that is the daemon's job, so a bad line in a feed reaches the DLQ like it would in production).
Each record's Kafka timestamp is the line's `published_at` (`record_timestamp`), as if the feed were
arriving live when it was recorded: the daemon bounds event time around the record timestamp, so a
recorded day replayed months later is still scored (`--timestamps now` keeps the producer's clock).
With `--b64` each line is a JSON object whose `b64` field holds the message bytes, for feeds that
must carry bytes that are not UTF-8 or not JSON (tests/feeds/malformed.jsonl).

`--direct` runs the same pure functions as the daemon — `parse_message`, `score_batch`, the
`Aggregator` — over the file in order, in batches of `batch_max_messages`, and writes trend records
(and optionally scored and dead-letter records). It is deterministic for a given model and file,
and is the reference the integration tests compare the daemon's `news.trends` against.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from models.errors import DataError
from pipeline.batching import chunks
from pipeline.records import DeadLetter, EventTimeBounds, Origin, parse_message, parse_published_at
from pipeline.scoring import ScoredRecord, ScorerLike, score_batch, ticker_copies
from pipeline.settings import Settings
from pipeline.stories import StoryIndex

log = logging.getLogger(__name__)


def read_feed(path: str | Path, *, b64: bool = False) -> Iterator[tuple[int, bytes]]:
    """(line number, message bytes) for each non-blank line."""
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - the with below closes it
    except OSError as exc:
        raise DataError(f"{p}: cannot read feed: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            if not b64:
                yield number, line
                continue
            try:
                yield number, base64.b64decode(json.loads(line)["b64"], validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise DataError(
                    f"{p}:{number}: --b64 line needs a JSON object with a base64 'b64' field: {exc}"
                ) from None


def peek(raw: bytes) -> tuple[str | None, int | None]:
    """Best-effort (id, published_at ms) of a message, for keying and pacing; (None, None) if unknown."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    key = obj.get("id") if isinstance(obj.get("id"), str) else None
    when = None
    if isinstance(obj.get("published_at"), str):
        try:
            when = parse_published_at(obj["published_at"])
        except (ValueError, OverflowError):
            when = None
    return key, when


def record_timestamp(published_ms: int | None) -> int | None:
    """The Kafka timestamp a replayed line is produced with: its published_at, where it has one that a
    record timestamp can hold (not before 1970); else None, the producer's clock."""
    return published_ms if published_ms is not None and published_ms >= 0 else None


def pacing(speed: float | None, clock: Callable[[], float] = time.monotonic) -> Callable[[int | None], float]:
    """A function: event time (ms) -> seconds to sleep before sending, keeping relative timing / speed."""
    start: list[float] = []

    def delay(event_ms: int | None) -> float:
        if speed is None or event_ms is None:
            return 0.0
        if not start:
            start.extend((clock(), event_ms / 1000))
            return 0.0
        due = start[0] + (event_ms / 1000 - start[1]) / speed
        return max(0.0, due - clock())

    return delay


def replay_to_kafka(
    settings: Settings,
    path: str | Path,
    topic: str,
    *,
    speed: float | None = None,
    b64: bool = False,
    keep_published_time: bool = True,
) -> int:
    """Produce every line of the feed to `topic`, keyed by id, timestamped with its published_at
    (unless `keep_published_time` is False); returns the number sent (all acknowledged)."""
    from pipeline import kafka_io

    if settings.create_topics:
        kafka_io.ensure_topics(settings, [topic])
    try:
        producer = kafka_io.make_producer(settings, "finsent-replay")
    except Exception as exc:
        raise kafka_io.BrokerError(f"{settings.bootstrap_servers}: cannot connect: {exc}") from exc
    delay = pacing(speed)
    sent = 0
    batch: list[kafka_io.Outgoing] = []
    try:
        for _number, raw in read_feed(path, b64=b64):
            key, when = peek(raw)
            wait = delay(when)
            if wait > 0:
                kafka_io.publish(producer, batch)
                batch.clear()
                time.sleep(wait)
            stamp = record_timestamp(when) if keep_published_time else None
            batch.append(kafka_io.Outgoing(topic, key.encode("utf-8") if key else None, raw, stamp))
            sent += 1
            if len(batch) >= 1000:
                kafka_io.publish(producer, batch)
                batch.clear()
        kafka_io.publish(producer, batch)
    finally:
        producer.close()
    log.info("replayed %d messages from %s to %s", sent, path, topic)
    return sent


@dataclass
class DirectResult:
    scored: list[ScoredRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    trends: list[Any] = field(default_factory=list)
    late: int = 0
    duplicates: int = 0


def replay_direct(
    path: str | Path,
    scorer: ScorerLike,
    trend_settings: Any,
    *,
    batch_size: int = 256,
    max_bytes: int = 65536,
    b64: bool = False,
    now_ms: int | None = None,
    bounds: EventTimeBounds | None = None,
) -> DirectResult:
    """The daemon's pipeline over a file, no broker. Deterministic for a fixed model and `now_ms`.

    Each line's record timestamp is what `replay_to_kafka` would give it: its own published_at; for a
    line without one, the latest event time seen before it, or `now_ms` at the start of the file.
    `bounds` (event time around that timestamp, as the daemon checks it) default to the settings'.
    """
    from pipeline.aggregator import Aggregator, to_event

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    bounds = EventTimeBounds() if bounds is None else bounds
    agg = Aggregator(trend_settings)
    agg.open_topics(dict.fromkeys(getattr(scorer, "topic_labels", ())))
    stories = StoryIndex()
    result = DirectResult()
    latest: int | None = None
    name = Path(path).name
    for batch in chunks(read_feed(path, b64=b64), batch_size):
        items = []
        for number, raw in batch:
            stamp = record_timestamp(peek(raw)[1])
            if stamp is None:
                stamp = now_ms if latest is None else latest
            origin = Origin(name, 0, number, stamp)
            parsed = parse_message(raw, origin, max_bytes=max_bytes, bounds=bounds, now_ms=now_ms)
            if isinstance(parsed, DeadLetter):
                result.dead.append(parsed)
                continue
            items.append(parsed)
            if parsed.published_at is not None:
                latest = parsed.event_time_ms if latest is None else max(latest, parsed.event_time_ms)
        scored, failed = score_batch(items, scorer, now_ms=now_ms, stories=stories)
        result.dead.extend(failed)
        for rec in scored:
            result.scored.append(rec)
            value = rec.to_bytes()
            ev, source, _ = to_event(value)
            outcome = agg.add(ev, source=source)
            result.late += outcome == "late"
            result.duplicates += outcome == "duplicate"
            for _, copy in ticker_copies(value, rec.item.tickers):
                ev, source, kind = to_event(copy)
                agg.add(ev, source=("tickers", source), kind=kind)
        result.trends.extend(agg.advance())
    result.trends.extend(agg.flush())
    return result


def write_jsonl(rows: Iterator[dict[str, Any]] | list[dict[str, Any]], out: IO[str]) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def open_out(path: str | None) -> IO[str]:
    if path in (None, "-"):
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise DataError(f"{path}: cannot write: {exc.strerror}") from None
