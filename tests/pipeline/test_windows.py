"""Window arithmetic, the window aggregation and the dedup index (pure functions, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.windows import (
    DedupIndex,
    agg_add,
    agg_initialize,
    agg_result,
    last_closed_start,
    window_end,
    window_start,
)

timestamps = st.integers(min_value=-(10**13), max_value=10**13)
sizes = st.integers(min_value=1, max_value=10**7)
sentiments = st.sampled_from(["negative", "neutral", "positive"])


def test_window_start_examples() -> None:
    assert window_start(0, 60_000) == 0
    assert window_start(59_999, 60_000) == 0
    assert window_start(60_000, 60_000) == 60_000
    # A pre-epoch timestamp belongs to the window that contains it, not the one after.
    assert window_start(-1, 60_000) == -60_000
    assert window_end(1_700_000_012_345, 60_000) == 1_700_000_040_000


@given(timestamps, sizes)
def test_window_contains_its_timestamp_and_is_aligned(ts: int, size: int) -> None:
    start = window_start(ts, size)
    assert start <= ts < start + size
    assert start % size == 0
    assert window_start(start, size) == start
    assert window_end(ts, size) == start + size


@given(timestamps, timestamps, sizes)
def test_window_assignment_is_monotone_and_grid_spaced(a: int, b: int, size: int) -> None:
    lo, hi = sorted((a, b))
    assert window_start(lo, size) <= window_start(hi, size)
    assert (window_start(hi, size) - window_start(lo, size)) % size == 0
    same = window_start(lo, size) == window_start(hi, size)
    assert same == (hi < window_end(lo, size))


@given(timestamps, st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_last_closed_start_matches_the_closing_rule(watermark: int, size: int, lateness: int) -> None:
    last = last_closed_start(watermark, size, lateness)
    # That window is closed, the next one is not: closed means end + lateness <= watermark.
    assert last + size + lateness <= watermark
    assert last + 2 * size + lateness > watermark


def test_aggregation_counts_and_means() -> None:
    state = agg_initialize()
    for sentiment, score in [("negative", -0.9), ("negative", -0.5), ("neutral", 0.1), ("positive", 0.7)]:
        state = agg_add(state, sentiment, score)
    result = agg_result(state)
    assert result.counts == {"negative": 2, "neutral": 1, "positive": 1}
    assert result.total == 4 and result.negatives == 2
    assert result.negative_share == pytest.approx(0.5)
    assert result.mean_score == pytest.approx((-0.9 - 0.5 + 0.1 + 0.7) / 4)


def test_empty_window_result_is_zero_by_convention() -> None:
    result = agg_result(agg_initialize())
    assert result.total == 0 and result.negative_share == 0.0 and result.mean_score == 0.0


def test_aggregation_rejects_unknown_sentiment() -> None:
    with pytest.raises(ValueError, match="bearish"):
        agg_add(agg_initialize(), "bearish", 0.0)


@given(st.lists(st.tuples(sentiments, st.floats(min_value=-1, max_value=1)), max_size=50), st.randoms())
def test_aggregation_is_order_independent(items: list[tuple[str, float]], rnd) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    a, b = agg_initialize(), agg_initialize()
    for s, x in items:
        a = agg_add(a, s, x)
    for s, x in shuffled:
        b = agg_add(b, s, x)
    ra, rb = agg_result(a), agg_result(b)
    assert ra.counts == rb.counts
    assert ra.total == len(items)
    assert ra.mean_score == pytest.approx(rb.mean_score, abs=1e-9)


def test_aggregation_state_is_immutable() -> None:
    before = agg_initialize()
    after = agg_add(before, "negative", -1.0)
    assert before.total == 0 and after.total == 1


def test_dedup_remembers_and_evicts_by_event_time() -> None:
    index = DedupIndex()
    index.remember("a", 1_000)
    index.remember("b", 5_000)
    index.remember("a", 9_000)  # already known: keeps its first event time
    assert "a" in index and "b" in index and len(index) == 2
    assert index.evict_before(1_000) == 0  # strictly older only
    assert index.evict_before(5_000) == 1
    assert "a" not in index and "b" in index
    assert index.evict_before(10**9) == 1
    assert len(index) == 0


@given(st.lists(st.tuples(st.text(max_size=3), st.integers(0, 10_000)), max_size=60), st.integers(0, 10_000))
def test_dedup_eviction_keeps_exactly_the_recent_ids(items: list[tuple[str, int]], cutoff: int) -> None:
    index = DedupIndex()
    first_seen: dict[str, int] = {}
    for event_id, ts in items:
        index.remember(event_id, ts)
        first_seen.setdefault(event_id, ts)
    index.evict_before(cutoff)
    assert {i for i in first_seen if i in index} == {i for i, t in first_seen.items() if t >= cutoff}
    assert len(index) == sum(1 for t in first_seen.values() if t >= cutoff)
