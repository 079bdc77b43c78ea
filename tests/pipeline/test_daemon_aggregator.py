"""The aggregate stage's bookkeeping (pure): watermark over input partitions, safe commits, resets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator import Aggregator
from pipeline.changelog import decode, encode
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
    stored = agg.snapshot(P)  # what the stage writes to the changelog before committing
    assert totals(emitted) == 6 and committed == 6  # minutes 0 and 1 closed at watermark T0+2min
    # A rebalance: state is dropped, restored from the changelog, the partition re-read from the commit ...
    agg.reset()
    agg.restore(P, stored)
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
    """After a restart the stored partition state says which windows were already published."""
    first = Aggregator(TrendSettings(allowed_lateness_ms=0))
    # Out of order within the partition: minute 3 at offset 0, minute 1 at offset 1.
    for off, minute in enumerate([3, 1]):
        first.add(ev(off, T0 + minute * MIN), P, off, A)
    emitted = first.advance()  # watermark in minute 3: minutes up to 2 closed, minute 3 open
    assert totals(emitted) == 1 and first.safe_offsets() == {P: 0}
    stored = decode(encode(first.snapshot(P)))  # through the changelog's bytes
    second = Aggregator(TrendSettings(allowed_lateness_ms=0))  # the restarted process re-reads 0 and 1
    second.restore(P, stored)
    assert second.add(ev(0, T0 + 3 * MIN), P, 0, A) == "counted"
    assert second.add(ev(1, T0 + 1 * MIN), P, 1, A) == "replayed"  # minute 1 was already published
    # A new event for minute 1 (beyond what the first process read) is late, not replayed.
    assert second.add(ev(7, T0 + 1 * MIN + 5), P, 2, A) == "late"
    records = second.flush()
    assert totals(records) == 1 and records[0].window_start_ms == T0 + 3 * MIN and records[0].late == 1


def test_a_pause_gives_every_partition_a_fresh_grace_period() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.expect_sources([A, B], now_s=0.0)
    # The feed starts long after the assignment: B has not "gone quiet", it has not started yet.
    agg.add(ev(1, T0 + 5 * MIN), P, 0, A, now_s=60.0)
    assert agg.watermark(now_s=61.0) is None
    assert agg.add(ev(2, T0), P, 1, B, now_s=62.0) == "counted"


# -- finding 3: the watermark follows the backlog, not the wall clock --------------------------------
RAW_A, RAW_B = A, B  # the raw partitions; a stream is (scored partition, raw partition)
SA, SB = (0, RAW_A), (0, RAW_B)


def test_a_stream_with_upstream_backlog_holds_the_watermark_however_long_it_is_silent() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.expect_sources([SA, SB], now_s=0.0)
    agg.add(ev(1, T0), P, 0, SB, now_s=1.0)
    for i in range(30):  # the score stage reads raw A for minutes while raw B waits
        agg.add(ev(10 + i, T0 + i * MIN), P, 1 + i, SA, now_s=2.0 + i)
        agg.observe_backlog({RAW_A: 100, RAW_B: 500}, {0: (2 + i, 600)})
        assert agg.advance(now_s=2.5 + i) == []  # B (silent, but with lag) holds every window
    assert agg.watermark(now_s=60.0) == T0
    # Once B has no lag and this member has read past where B's records can be, B stops holding it.
    agg.observe_backlog({RAW_A: 0, RAW_B: 0}, {0: (40, 700)})
    assert agg.watermark(now_s=61.0) == T0  # drained only since this observation: not yet
    agg.observe_backlog({RAW_A: 0, RAW_B: 0}, {0: (40, 700)})
    assert agg.watermark(now_s=62.0) == T0  # B's records may sit below offset 700: still held
    agg.observe_backlog({RAW_A: 0, RAW_B: 0}, {0: (700, 700)})
    assert agg.watermark(now_s=63.0) == T0 + 29 * MIN
    # Without the backlog, the old wall-clock rule would have let A run ahead after 10 s:
    old = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    old.expect_sources([SA, SB], now_s=0.0)
    old.add(ev(1, T0), P, 0, SB, now_s=1.0)
    for i in range(30):
        old.add(ev(10 + i, T0 + i * MIN), P, 1 + i, SA, now_s=2.0 + i)
    assert old.watermark(now_s=32.0) == T0 + 29 * MIN


def test_unknown_backlog_falls_back_to_the_idle_rule() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.expect_sources([SA, SB], now_s=0.0)
    agg.observe_backlog(None, {0: (0, 10)})  # the broker did not say
    agg.add(ev(1, T0 + 5 * MIN), P, 0, SA, now_s=1.0)
    assert agg.watermark(now_s=2.0) is None
    agg.add(ev(2, T0 + 6 * MIN), P, 1, SA, now_s=6.0)
    agg.add(ev(3, T0 + 7 * MIN), P, 2, SA, now_s=11.5)
    assert agg.watermark(now_s=11.5) == T0 + 7 * MIN  # B silent 10 s: no longer waited for


def test_a_raw_partition_with_lag_again_is_waited_for_again() -> None:
    agg = Aggregator(TrendSettings(allowed_lateness_ms=0), source_idle_s=10.0)
    agg.add(ev(1, T0), P, 0, SB, now_s=0.0)
    agg.add(ev(2, T0 + 9 * MIN), P, 1, SA, now_s=0.0)
    for _ in range(2):
        agg.observe_backlog({RAW_A: 0, RAW_B: 0}, {0: (2, 2)})
    assert agg.watermark(now_s=30.0) == T0 + 9 * MIN
    agg.observe_backlog({RAW_A: 0, RAW_B: 3}, {0: (2, 2)})
    assert agg.watermark(now_s=31.0) == T0  # B has input again: its stream holds until it is read


# -- finding 4: restarts resume exactly ---------------------------------------------------------------
def newest_per_window(records: list) -> dict:
    out = {}
    for r in records:
        out[(r.topic, r.window_start_ms)] = r
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 2)), min_size=5, max_size=120),
    st.lists(st.integers(1, 10_000), min_size=1, max_size=5),
    st.integers(1, 30),
)
def test_crashes_at_any_point_never_shrink_a_window(rows: list, crashes: list[int], batch: int) -> None:
    """One scored partition holding two raw streams (each in time order), read in batches; a "kill -9"
    after any batch restarts from the last stored state and committed offset. The newest record per
    (topic, window) then equals the uninterrupted run's, spike detector fields included."""
    trend = TrendSettings(allowed_lateness_ms=0, warmup_windows=2, min_negatives=1, min_total=1)
    topics = ["Energy | Oil", "Central Banks", "Crypto"]
    streams: dict[int, list[int]] = {0: [], 1: []}
    for raw, second, _ in rows:
        streams[raw].append(second)
    for raw in streams:
        streams[raw].sort()
    log: list[tuple[ScoredEvent, tuple]] = []  # the partition: streams interleaved, each in order
    idx = {0: 0, 1: 0}
    for raw, _, topic in rows:
        t = T0 + streams[raw][idx[raw]] * 20_000
        idx[raw] += 1
        sent = "negative" if len(log) % 3 else "positive"
        log.append((ev(len(log), t, topics[topic], sent), (0, (A, B)[raw])))

    def run(crash_points: set[int]) -> list:
        out, agg, stored, committed, steps = [], Aggregator(trend), None, 0, 0
        agg.expect_sources([(0, A), (0, B)], 0.0)
        pos = 0
        while pos < len(log):
            for off in range(pos, min(pos + batch, len(log))):
                e, src = log[off]
                agg.add(e, P, off, src)
            pos = min(pos + batch, len(log))
            out += agg.advance()
            stored, committed = agg.snapshot(P), agg.safe_offsets().get(P, 0)  # changelog, then commit
            steps += 1
            if steps in crash_points:
                agg = Aggregator(trend)
                agg.expect_sources([(0, A), (0, B)], 0.0)
                agg.restore(P, decode(encode(stored)))
                pos = committed
        return out + agg.flush()

    want = newest_per_window(run(set()))
    got = newest_per_window(run({c % (len(log) // batch + 1) + 1 for c in crashes}))
    assert got == want


def test_changelog_records_of_another_version_or_garbage_are_refused_with_a_clear_error() -> None:
    import pytest

    from pipeline.changelog import ChangelogError

    agg = Aggregator(TrendSettings(allowed_lateness_ms=0))
    agg.add(ev(1, T0), P, 0, A)
    agg.add(ev(2, T0 + 2 * MIN), P, 1, A)
    agg.advance()
    good = encode(agg.snapshot(P))
    assert decode(good, "x").topics["Energy | Oil"].closed_before == T0 + 2 * MIN
    old = good.replace(b'"version": 2', b'"version": 1')
    missing = good.replace(b'"neg_mean"', b'"negative_mean"')
    for bad, why in [
        (b"{", "not JSON"),
        (old, "layout version 1"),
        (missing, "spike state"),
        (b"[]", "object"),
    ]:
        with pytest.raises(ChangelogError, match=why) as info:
            decode(bad, "news.trends.changelog[0]@7")
        assert "news.trends.changelog[0]@7" in str(info.value)


def test_the_spike_detector_resumes_warmed_up_after_a_restart() -> None:
    trend = TrendSettings(allowed_lateness_ms=0, warmup_windows=5)
    agg = Aggregator(trend)
    for i in range(8):  # one event a minute for 8 minutes: 7 windows closed, detector warmed up
        agg.add(ev(i, T0 + i * MIN), P, i, A)
        agg.advance()
    stored = decode(encode(agg.snapshot(P)))
    assert stored.topics["Energy | Oil"].spike.windows == 7
    fresh = Aggregator(trend)
    fresh.restore(P, stored)
    assert fresh.add(ev(7, T0 + 7 * MIN), P, 7, A) == "counted"  # the open window, re-read
    (record,) = fresh.flush()
    assert record.window_start_ms == T0 + 7 * MIN and record.warmed_up  # no second warm-up
