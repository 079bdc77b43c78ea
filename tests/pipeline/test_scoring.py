"""Scoring a batch (real ONNX Runtime on a hand-built graph) and micro-batch assembly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.artifact import verify_artifact
from models.batching import plan_sub_batches
from models.runtime import Scorer
from pipeline.batching import chunks, collect_batch
from pipeline.records import DeadLetter, NewsItem, Origin, parse_message
from pipeline.scoring import score_batch, scored_event
from pipeline.stories import StoryIndex, story_key
from tests.support.toy_artifact import TOPICS, build_toy_artifact

NOW = 1_772_450_000_000


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    root: Path = tmp_path_factory.mktemp("toy")
    return Scorer(verify_artifact(build_toy_artifact(root)), provider="cpu", sub_batch=2)


def items(texts: Sequence[str], start: int = 0) -> list[NewsItem]:
    out = []
    for i, text in enumerate(texts, start):
        raw = json.dumps({"id": f"n{i}", "text": text, "published_at": "2026-03-02T09:30:00Z"}).encode()
        item = parse_message(raw, Origin("news.raw", 1, 100 + i, NOW - 5000), max_bytes=65536)
        assert isinstance(item, NewsItem)
        out.append(item)
    return out


TEXTS = [
    "oil falls",
    "quarter profit beats rises rises rises oil",
    "jobs",
    "inflation rates rises falls",
    "crude",
]


def test_batch_scores_match_single_scores_in_input_order(scorer: Scorer) -> None:
    scored, dead = score_batch(items(TEXTS), scorer, now_ms=NOW)
    assert dead == []
    assert [r.item.id for r in scored] == [f"n{i}" for i in range(len(TEXTS))]
    for rec, text in zip(scored, TEXTS, strict=True):
        (alone,) = scorer.score([text])
        assert rec.topic == alone.topic and rec.sentiment == alone.sentiment
        assert rec.score == pytest.approx(alone.score, abs=1e-5)
        assert rec.topic in TOPICS and rec.model_version == scorer.version


def test_scored_record_contract_round_trips(scorer: Scorer) -> None:
    (rec,), _ = score_batch(items(["oil falls"]), scorer, now_ms=NOW)
    assert rec.key == rec.topic.encode()
    obj = json.loads(rec.to_bytes())
    assert set(obj) >= {
        "id", "topic", "topic_confidence", "sentiment", "sentiment_probs", "score", "model_version",
        "published_at", "event_time_ms", "scored_at", "input", "tickers", "story", "story_first",
    }  # fmt: skip
    assert (obj["story"], obj["story_first"]) == (story_key("oil falls"), True)
    assert obj["published_at"] == "2026-03-02T09:30:00Z" and obj["scored_at"].startswith(
        "2026-03-02T11:13:20"
    )
    assert obj["score"] == pytest.approx(
        obj["sentiment_probs"]["positive"] - obj["sentiment_probs"]["negative"], abs=1e-5
    )
    assert obj["input"] == {"topic": "news.raw", "partition": 1, "offset": 100, "timestamp_ms": NOW - 5000}
    back = scored_event(rec.to_bytes())
    assert (back.id, back.topic, back.sentiment, back.event_time_ms, back.source) == (
        "n0",
        rec.topic,
        rec.sentiment,
        rec.item.event_time_ms,
        ("news.raw", 1),
    )
    with pytest.raises(ValueError, match="lacks a valid field"):
        scored_event(b'{"id": "x"}')


def test_records_carry_their_story_across_batches_of_one_index(scorer: Scorer) -> None:
    stories = StoryIndex()
    first, _ = score_batch(
        items(["Oil jumps after refinery fire shuts Gulf plant", "jobs"]), scorer, now_ms=NOW, stories=stories
    )
    later = items(["UPDATE 1-Oil jumps after refinery fire shuts Gulf plant - sources", "crude"], start=2)
    second, _ = score_batch(later, scorer, now_ms=NOW, stories=stories)
    assert [(r.story_first, r.story == first[0].story) for r in first + second] == [
        (True, True), (True, False), (False, True), (True, False)
    ]  # fmt: skip
    assert json.loads(second[0].to_bytes())["story"] == story_key(
        "Oil jumps after refinery fire shuts Gulf plant"
    )


class PoisonAware:
    """The real scorer, except that one text makes the whole call fail (a tokenizer/runtime bug)."""

    def __init__(self, inner: Scorer) -> None:
        self.inner, self.version = inner, inner.version

    def score(self, texts: Sequence[str]) -> Any:
        if any("poison" in t for t in texts):
            raise RuntimeError("cannot run this input")
        return self.inner.score(texts)


def test_one_poison_text_is_dead_lettered_and_its_batch_mates_scored(scorer: Scorer) -> None:
    batch = items(["oil falls", "poison pill", "jobs"])
    scored, dead = score_batch(batch, PoisonAware(scorer), now_ms=NOW)
    assert [r.item.id for r in scored] == ["n0", "n2"]
    assert len(dead) == 1 and isinstance(dead[0], DeadLetter)
    assert dead[0].reason == "scoring_failed" and dead[0].id == "n1" and dead[0].raw == batch[1].raw
    assert "news.raw[1]@101" in dead[0].message
    # scored one by one, the survivors still get their stories; the dead letter started none
    assert [r.story_first for r in scored] == [True, True]


def test_empty_batch() -> None:
    assert score_batch([], PoisonAware.__new__(PoisonAware), now_ms=NOW) == ([], [])


class Feed:
    """A scripted poll: at each call returns what arrived by then (fake clock advanced by the wait)."""

    def __init__(self, arrivals: list[tuple[float, int]]) -> None:
        self.arrivals = sorted(arrivals)  # (time, message)
        self.now = 0.0
        self.calls: list[tuple[float, int]] = []

    def clock(self) -> float:
        return self.now

    def poll(self, timeout_s: float, max_records: int) -> list[int]:
        self.calls.append((timeout_s, max_records))
        due = [m for t, m in self.arrivals if t <= self.now]
        if not due:
            nxt = min((t for t, _ in self.arrivals), default=None)
            if nxt is None or nxt > self.now + timeout_s:
                self.now += timeout_s
                return []
            self.now = nxt
            due = [m for t, m in self.arrivals if t <= self.now]
        got = due[:max_records]
        self.arrivals = [(t, m) for t, m in self.arrivals if m not in got]
        return got


def test_batch_closes_when_full() -> None:
    feed = Feed([(0.0, i) for i in range(10)])
    got = collect_batch(feed.poll, max_messages=4, max_wait_s=1.0, idle_poll_s=0.5, clock=feed.clock)
    assert got == [0, 1, 2, 3] and feed.now == 0.0


def test_batch_closes_after_the_wait_since_the_first_message() -> None:
    feed = Feed([(0.2, 1), (0.25, 2), (0.26, 3), (0.9, 4)])
    got = collect_batch(feed.poll, max_messages=100, max_wait_s=0.05, idle_poll_s=0.5, clock=feed.clock)
    assert got == [1, 2]  # the first came at 0.2, so the batch closed at 0.25: 3 and 4 wait
    assert feed.now == pytest.approx(0.25)
    nxt = collect_batch(feed.poll, max_messages=100, max_wait_s=0.05, idle_poll_s=0.5, clock=feed.clock)
    assert nxt == [3]


def test_no_messages_is_an_empty_batch_after_the_idle_poll() -> None:
    feed = Feed([])
    assert collect_batch(feed.poll, max_messages=8, max_wait_s=0.05, idle_poll_s=0.5, clock=feed.clock) == []
    assert feed.calls == [(0.5, 8)]


def test_chunks() -> None:
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def _padded_tokens(lengths: list[int], spans: list[tuple[int, int]]) -> int:
    return sum((end - start) * lengths[end - 1] for start, end in spans)


def test_sub_batch_plan_covers_every_text_once_within_the_size_limit() -> None:
    lengths = sorted([5, 7, 7, 9, 12, 15, 21, 22, 30, 41, 44, 58, 60, 63, 64] * 5)
    spans = plan_sub_batches(np.array(lengths), 8)
    assert spans[0][0] == 0 and spans[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, no overlap
    assert all(0 < end - start <= 8 for start, end in spans)


def test_sub_batch_plan_pads_a_small_mixed_batch_far_less_than_one_chunk() -> None:
    # A quiet minute: 35 texts from 5 to 64 tokens. One fixed chunk of 32 pads all to ~64.
    rng = np.random.default_rng(0)
    lengths = sorted(int(x) for x in rng.integers(5, 65, 35))
    spans = plan_sub_batches(np.array(lengths), 32)
    fixed = [(0, 32), (32, 35)]
    assert _padded_tokens(lengths, spans) < 0.7 * _padded_tokens(lengths, fixed)
    assert _padded_tokens(lengths, spans) <= 1.15 * sum(lengths)  # close to no padding at all
    assert len(spans) < 15  # ... without one run per text: each run has a fixed cost too


def test_sub_batch_plan_uses_as_few_runs_as_the_limit_allows_for_equal_lengths() -> None:
    spans = plan_sub_batches(np.array([12] * 70), 32)
    assert len(spans) == 3 and all(end - start <= 32 for start, end in spans)
