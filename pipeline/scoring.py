"""A batch of parsed messages + a Scorer -> scored records (and dead letters). Pure given the Scorer.

Both the Kafka loop and `finsent replay --direct` call `score_batch`, so the broker-free mode runs
exactly the code the daemon runs. The scored record is also the contract of `news.scored`:
`scored_event` reads one back for the aggregate stage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.records import MAX_DATETIME_MS, MIN_DATETIME_MS, DeadLetter, NewsItem, iso_utc
from pipeline.stories import StoryAssignment, StoryIndex

log = logging.getLogger(__name__)


class ScorerLike(Protocol):
    """What scoring needs from `models.runtime.Scorer`."""

    @property
    def version(self) -> str: ...

    def score(self, texts: Sequence[str]) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class ScoredRecord:
    item: NewsItem
    topic: str
    topic_confidence: float
    sentiment: str
    sentiment_probs: dict[str, float]
    score: float
    model_version: str
    scored_at_ms: int
    story: str = ""  # pipeline.stories: the key of the story this text belongs to
    story_first: bool = True  # the first text of its story seen by this score process

    @property
    def key(self) -> bytes:
        # Keyed by predicted topic: one topic's stream lands in one partition of news.scored, so
        # exactly one aggregate member folds it.
        return self.topic.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        item = self.item
        return {
            "id": item.id,
            "topic": self.topic,
            "topic_confidence": round(self.topic_confidence, 6),
            "sentiment": self.sentiment,
            "sentiment_probs": {k: round(v, 6) for k, v in self.sentiment_probs.items()},
            "score": round(self.score, 6),
            "model_version": self.model_version,
            "published_at": item.published_at,
            "event_time_ms": item.event_time_ms,
            "event_time": iso_utc(item.event_time_ms),
            "scored_at": iso_utc(self.scored_at_ms),
            "source": item.source,
            "text": item.text,
            "tickers": list(item.tickers),
            "story": self.story,
            "story_first": self.story_first,
            "input": item.origin.to_dict(),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def ticker_copies(value: bytes, tickers: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) per ticker for news.scored.tickers: the scored record's JSON (`value`, as
    `ScoredRecord.to_bytes` wrote it) with `ticker` added, keyed by ticker, so one aggregate member
    folds each ticker whatever topics its messages were given. Spliced into the bytes already written
    rather than serialised again per ticker (the score stage's JSON is a visible share of its time)."""
    head = value[:-1]  # a compact JSON object: everything before its closing brace
    return [
        (t.encode("utf-8"), head + b',"ticker":' + json.dumps(t, ensure_ascii=False).encode("utf-8") + b"}")
        for t in tickers
    ]


def _record(item: NewsItem, pred: Any, version: str, now_ms: int, story: StoryAssignment) -> ScoredRecord:
    return ScoredRecord(
        item=item,
        topic=pred.topic,
        topic_confidence=float(pred.topic_confidence),
        sentiment=pred.sentiment,
        sentiment_probs={k: float(v) for k, v in pred.sentiment_probs.items()},
        score=float(pred.score),
        model_version=version,
        scored_at_ms=now_ms,
        story=story.story,
        story_first=story.first,
    )


def score_batch(
    items: Sequence[NewsItem], scorer: ScorerLike, *, now_ms: int, stories: StoryIndex | None = None
) -> tuple[list[ScoredRecord], list[DeadLetter]]:
    """Score a batch in one Scorer call; output order follows input order.

    Each scored record is stamped with its story from `stories` (in input order, after scoring, so a
    dead-lettered text starts no story). A stream of batches passes one index; without one, the
    batch gets a fresh index and its stories span only this batch.

    If the batch call fails, each item is scored alone so one poison text cannot take its batch
    mates down with it; the ones that still fail are dead-lettered as `scoring_failed` (their raw
    bytes kept), never dropped and never crashing the loop.
    """
    if not items:
        return [], []
    predicted, dead = predict_batch(items, scorer)
    return scored_records(predicted, scorer.version, now_ms=now_ms, stories=stories), dead


def predict_batch(
    items: Sequence[NewsItem], scorer: ScorerLike
) -> tuple[list[tuple[NewsItem, Any]], list[DeadLetter]]:
    """The model's half of `score_batch`: (item, prediction) pairs in input order, and the items
    that could not be scored even alone as `scoring_failed` dead letters."""
    if not items:
        return [], []
    try:
        preds = scorer.score([it.text for it in items])
        return list(zip(items, preds, strict=True)), []
    except Exception as exc:  # the tokenizer and ONNX Runtime raise assorted types
        log.warning("batch of %d failed to score (%s); scoring one by one", len(items), exc)
    pairs: list[tuple[NewsItem, Any]] = []
    dead: list[DeadLetter] = []
    for it in items:
        try:
            (pred,) = scorer.score([it.text])
        except Exception as exc:
            msg = f"{it.origin}: id {it.id!r}: scoring failed: {type(exc).__name__}: {exc}"
            dead.append(DeadLetter("scoring_failed", msg, it.raw, it.origin, it.id))
        else:
            pairs.append((it, pred))
    return pairs, dead


def scored_records(
    predicted: Sequence[tuple[NewsItem, Any]],
    version: str,
    *,
    now_ms: int,
    stories: StoryIndex | None = None,
) -> list[ScoredRecord]:
    """The other half: a record per prediction, stamped with its story in input order."""
    index = StoryIndex() if stories is None else stories
    assigned = index.assign_many([(it.text, it.event_time_ms, it.id) for it, _ in predicted])
    return [
        _record(it, p, version, now_ms, story) for (it, p), story in zip(predicted, assigned, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class ScoredFields:
    """The fields of a `news.scored` record the aggregate stage uses."""

    id: str
    topic: str
    sentiment: str
    score: float
    event_time_ms: int
    source: tuple[str, int] | None  # the input topic/partition it was read from
    story: str = ""
    text: str = ""
    news_source: str | None = None  # the input's own `source` field
    ticker: str | None = None  # set on news.scored.tickers records


def scored_event(value: bytes) -> ScoredFields:
    """Read back one `news.scored` value; ValueError names what is wrong."""
    obj = json.loads(value)
    if not isinstance(obj, dict):
        raise ValueError("scored record is not a JSON object")
    try:
        fields = ScoredFields(
            id=str(obj["id"]),
            topic=str(obj["topic"]),
            sentiment=str(obj["sentiment"]),
            score=float(obj["score"]),
            event_time_ms=int(obj["event_time_ms"]),
            source=_source(obj.get("input")),
            story=_optional_str(obj, "story") or "",
            text=_optional_str(obj, "text") or "",
            news_source=_optional_str(obj, "source"),
            ticker=_optional_str(obj, "ticker") or None,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"scored record lacks a valid field: {exc}") from None
    if not MIN_DATETIME_MS <= fields.event_time_ms <= MAX_DATETIME_MS:
        # Only a writer without today's checks (an older daemon) produces this; it must not reach
        # the windows, whose bounds are written as dates.
        raise ValueError(f"event_time_ms {fields.event_time_ms} is outside the years 1..9999")
    return fields


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _source(value: Any) -> tuple[str, int] | None:
    if isinstance(value, dict) and "topic" in value and "partition" in value:
        return str(value["topic"]), int(value["partition"])
    return None
