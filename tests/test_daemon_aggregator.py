"""The aggregate stage's bookkeeping (pure): watermark over input partitions, safe commits, resets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator import Aggregator
from pipeline.trends import ScoredEvent, TrendSettings

MIN = 60_000
T0 = 1_772_443_800_000  # 2026-03-02T09:30Z, a window boundary
P = ("news.scored", 0)  # stands in for a TopicPartition
A, B = ("news.raw", 0), ("news.raw", 1)


def ev(i: int, t_ms: int, topic: str = "Energy | Oil", sentiment: str = "negative") -> ScoredEvent:
    return ScoredEvent(f"id{i}", topic, sentiment, -0.5 if sentiment == "negative" else 0.5, t_ms)


def totals(records: list) -> int:
    return sum(r.total for r in records)


def test_commit_offset_stops_at_the_first_event_of_an_open_window() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0))
    for off, minute in enumerate([0, 0, 1, 1, 2]):
        agg.add(ev(off, T0 + minute * MIN + 1000), P, off, A)
    assert agg.safe_offsets() == {P: 0}  # nothing closed yet
    records = agg.advance()
    # Watermark is in minute 2: minutes 0 and 1 are closed and emitted, offsets 0-3 are safe.
    assert [r.total for r in records] == [2, 2]
    assert agg.safe_offsets() == {P: 4}
    assert totals(agg.flush()) == 1 and agg.safe_offsets() == {P: 5}


def test_reset_rebuilds_open_windows_without_re_emitting_closed_ones() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0))
    events = [ev(i, T0 + (i // 3) * MIN) for i in range(9)]  # 3 per minute, minutes 0-2
    for off, e in enumerate(events):
        agg.add(e, P, off, A)
    emitted = agg.advance()
    committed = agg.safe_offsets()[P]
    assert totals(emitted) == 6 and committed == 6  # minutes 0 and 1 closed at watermark T0+2min
    # A rebalance: state is dropped and the partition re-read from the committed offset ...
    agg.reset()
    for off in range(committed, len(events)):
        agg.add(events[off], P, off, A)
    # ... plus a redelivery of an already-emitted event, which must not count again.
    assert agg.add(events[0], P, 0, A) == "replayed"
    emitted += agg.flush()
    assert totals(emitted) == len(events)
    assert sorted(r.window_start_ms for r in emitted if r.total) == [T0, T0 + MIN, T0 + 2 * MIN]


def test_watermark_is_the_slowest_active_input_partition() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.add(ev(1, T0 + 30 * MIN), P, 0, A, now_s=100.0)
    agg.add(ev(2, T0 + 1 * MIN), P, 1, B, now_s=100.0)
    assert agg.watermark(now_s=101.0) == T0 + 1 * MIN
    # B's event for minute 2 arrives after A ran far ahead: not late.
    assert agg.advance(now_s=101.0) == []
    assert agg.add(ev(3, T0 + 2 * MIN), P, 2, B, now_s=102.0) == "counted"
    # When B goes quiet, A alone drives the watermark.
    assert agg.watermark(now_s=113.0) == T0 + 30 * MIN


def test_an_expected_partition_that_has_not_delivered_holds_the_watermark_until_idle() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.expect_sources([A, B], now_s=0.0)
    agg.add(ev(1, T0 + 5 * MIN), P, 0, A, now_s=1.0)
    assert agg.watermark(now_s=2.0) is None and agg.advance(now_s=2.0) == []
    assert agg.add(ev(2, T0), P, 1, B, now_s=3.0) == "counted"  # B was merely slow
    assert agg.watermark(now_s=4.0) == T0
    agg2 = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg2.expect_sources([A, B], now_s=0.0)
    agg2.add(ev(1, T0 + 5 * MIN), P, 0, A, now_s=1.0)
    assert agg2.watermark(now_s=11.5) == T0 + 5 * MIN  # B stayed silent 10 s while A delivered


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 600), min_size=1, max_size=60),
    st.lists(st.integers(0, 600), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
    st.integers(1, 25),
)
def test_interleaved_ordered_partitions_are_never_late(a: list[int], b: list[int], rnd, step: int) -> None:
    """Two input partitions, each in event-time order, read in arbitrary chunks: nothing is late and
    every event is in exactly one emitted window, however the reads interleave."""
    streams = {A: sorted(a), B: sorted(b)}
    queues = {src: [(src, i, T0 + s * 1000) for i, s in enumerate(times)] for src, times in streams.items()}
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0))
    agg.expect_sources([A, B], now_s=0.0)  # the input topic's partitions, known from metadata
    emitted = []
    offset = 0
    while any(queues.values()):
        src = rnd.choice([s for s, q in queues.items() if q])
        take, queues[src] = queues[src][:step], queues[src][step:]
        for s, i, t in take:
            assert agg.add(ev(hash((s, i)), t), P, offset, s) == "counted"
            offset += 1
        emitted += agg.advance()
    emitted += agg.flush()
    assert totals(emitted) == len(a) + len(b)
    assert agg.folder.late == 0


def test_a_new_process_skips_windows_the_previous_one_emitted() -> None:
    """After a restart the commit metadata says which windows were already published."""
    from pipeline.aggregator import _closed_before_of

    first = Aggregator(TrendSettings(allowed_lateness_ms=0))
    # Out of order within the partition: minute 3 at offset 0, minute 1 at offset 1.
    for off, minute in enumerate([3, 1]):
        first.add(ev(off, T0 + minute * MIN), P, off, A)
    emitted = first.advance()  # watermark in minute 3: minutes up to 2 closed, minute 3 open
    assert totals(emitted) == 1 and first.safe_offsets() == {P: 0}
    meta = first.commit_metadata()
    second = Aggregator(TrendSettings(allowed_lateness_ms=0))  # the restarted process re-reads 0 and 1
    second.skip_windows_before(_closed_before_of(meta))
    assert second.add(ev(0, T0 + 3 * MIN), P, 0, A) == "counted"
    assert second.add(ev(1, T0 + 1 * MIN), P, 1, A) == "replayed"  # minute 1 was already published
    assert totals(second.flush()) == 1
    assert _closed_before_of("not json") is None and _closed_before_of("") is None


def test_a_pause_gives_every_partition_a_fresh_grace_period() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.expect_sources([A, B], now_s=0.0)
    # The feed starts long after the assignment: B has not "gone quiet", it has not started yet.
    agg.add(ev(1, T0 + 5 * MIN), P, 0, A, now_s=60.0)
    assert agg.watermark(now_s=61.0) is None
    assert agg.add(ev(2, T0), P, 1, B, now_s=62.0) == "counted"
