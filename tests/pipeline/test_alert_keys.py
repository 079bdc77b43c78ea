"""Alerts a desk can trust (pure): quiet topics known from the start, stories not reprints, the headlines
behind a spike, per-ticker trends with a prior and bounded state, and the detector over a restart."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator import Aggregator, PartitionState
from pipeline.changelog import decode, encode
from pipeline.metrics import exported_tickers
from pipeline.trends import ScoredEvent, TrendFolder, TrendRecord, TrendSettings

MIN = 60_000
T0 = 1_772_443_800_000  # a window boundary
CALM, QUIET = "Markets | Equities", "Energy | Oil"


class Feed:
    """Builds events with unique ids; `story` defaults to a fresh one per event."""

    def __init__(self) -> None:
        self.n = 0

    def ev(
        self,
        key: str,
        minute: float,
        sentiment: str,
        story: str = "",
        text: str = "",
        score: float | None = None,
    ) -> ScoredEvent:
        self.n += 1
        if score is None:
            score = {"negative": -0.8, "neutral": 0.0, "positive": 0.7}[sentiment]
        text = text or f"headline {self.n} about {key}"
        return ScoredEvent(
            f"m{self.n}", key, sentiment, score, T0 + int(minute * MIN), story or f"s{self.n}", text, "wire"
        )


def run_minutes(folder: TrendFolder, minutes: int, per_minute) -> list[TrendRecord]:
    """Each minute: add that minute's events, then advance past the previous window."""
    out: list[TrendRecord] = []
    for m in range(minutes):
        for e in per_minute(m):
            folder.add(e)
        out += folder.advance(T0 + (m + 1) * MIN)
    return out + folder.flush()


def calm_and_burst(feed: Feed, burst_start: int, burst: int, copies_of_one: bool = False):
    def per_minute(m: int) -> list[ScoredEvent]:
        evs = [
            feed.ev(CALM, m + 0.1, "negative"),
            feed.ev(CALM, m + 0.2, "neutral"),
            feed.ev(CALM, m + 0.3, "positive"),
        ]
        if burst_start <= m < burst_start + burst:
            for i in range(8):
                story = "one-story" if copies_of_one else ""
                evs.append(feed.ev(QUIET, m + 0.4 + i * 0.05, "negative", story=story))
        return evs

    return per_minute


def first_active(records: list[TrendRecord], key: str) -> int | None:
    for r in records:
        if r.topic == key and r.spike_active:
            return (r.window_start_ms - T0) // MIN
    return None


def test_a_burst_in_a_topic_silent_for_an_hour_is_a_spike_when_the_taxonomy_is_known() -> None:
    burst_start = 60
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    folder.open([CALM, QUIET])
    records = run_minutes(folder, 75, calm_and_burst(Feed(), burst_start, 5))
    at = first_active(records, QUIET)
    assert at is not None and at - burst_start < 5, at  # within 5 windows of the burst's start
    assert first_active(records, CALM) is None
    quiet = [r for r in records if r.topic == QUIET]
    assert quiet[0].window_start_ms == T0 and quiet[0].total == 0  # silence from the stream's start


def test_a_taxonomy_topic_whose_first_event_precedes_the_first_close_still_begins_at_the_stream_start() -> (
    None
):
    feed = Feed()
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    folder.open([CALM, QUIET])
    for m in range(20):  # one batch, then the first close: QUIET's first event is at minute 12
        folder.add(feed.ev(CALM, m + 0.5, "neutral"))
    folder.add(feed.ev(QUIET, 12.5, "neutral"))
    records = folder.advance(T0 + 20 * MIN)
    quiet = [r for r in records if r.topic == QUIET]
    assert quiet[0].window_start_ms == T0 and len(quiet) == 20 and not quiet[0].warmed_up


def test_without_the_taxonomy_the_same_burst_is_its_own_warm_up() -> None:
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    records = run_minutes(folder, 75, calm_and_burst(Feed(), 60, 5))
    assert first_active(records, QUIET) is None  # the failure the taxonomy fixes


def test_a_topic_the_taxonomy_does_not_list_starts_from_the_prior() -> None:
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    folder.open([CALM])  # QUIET is not in the taxonomy: it appears with its burst
    records = run_minutes(folder, 75, calm_and_burst(Feed(), 60, 5))
    first = next(r for r in records if r.topic == QUIET)
    assert first.warmed_up and first.window_start_ms == T0 + 60 * MIN
    assert first_active(records, QUIET) is not None


def test_fifty_copies_of_one_headline_do_not_fire_but_fifty_stories_do() -> None:
    def spikes(copies: bool) -> tuple[int | None, list[TrendRecord]]:
        folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
        folder.open([CALM, QUIET])
        records = run_minutes(folder, 70, calm_and_burst(Feed(), 60, 6, copies_of_one=copies))
        return first_active(records, QUIET), [r for r in records if r.topic == QUIET and r.total]

    fired, burst = spikes(copies=False)
    assert fired is not None
    quiet, burst = spikes(copies=True)
    assert quiet is None
    assert [r.total for r in burst] == [8] * 6  # every copy is a message...
    assert [r.stories for r in burst] == [1, 0, 0, 0, 0, 0]  # ...one story


def test_counting_messages_instead_lets_reprints_fire() -> None:
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0, count_by="messages"))
    folder.open([CALM, QUIET])
    records = run_minutes(folder, 70, calm_and_burst(Feed(), 60, 6, copies_of_one=True))
    assert first_active(records, QUIET) is not None


def test_a_spike_record_carries_its_most_negative_headlines_one_per_story() -> None:
    feed = Feed()

    def per_minute(m: int) -> list[ScoredEvent]:
        evs = [feed.ev(CALM, m + 0.1, "neutral")]
        if m >= 30:
            for i in range(7):  # scores -0.30 .. -0.90; story "dup" twice; one positive among them
                evs.append(
                    feed.ev(QUIET, m + 0.2 + i * 0.01, "negative", score=-0.3 - 0.1 * i + (m - 30) / 100)
                )
            evs.append(
                feed.ev(QUIET, m + 0.5, "negative", story="dup", score=-0.99, text="the reprinted one")
            )
            evs.append(feed.ev(QUIET, m + 0.6, "positive", score=0.9))
        return evs

    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    folder.open([CALM, QUIET])
    records = run_minutes(folder, 36, per_minute)
    active = [r for r in records if r.topic == QUIET and r.spike_active]
    assert active
    last = active[-1]
    scores = [h.score for h in last.spike_headlines]
    assert len(scores) == 5 and scores == sorted(scores)
    assert len({h.story for h in last.spike_headlines}) == 5
    assert last.spike_headlines[0].text == "the reprinted one"  # its later copies are reprints, not kept
    # the most negative of all the spike's windows, not only the last one's
    assert min(scores[1:]) < min(h.score for h in last.headlines if h.story != "dup")
    payload = last.to_json_dict()
    assert payload["key_type"] == "topic" and payload["key"] == QUIET
    assert set(payload["spike_headlines"][0]) == {"id", "text", "source", "score", "story", "published_at"}
    quiet_before = [r for r in records if r.topic == QUIET and r.window_start_ms < T0 + 30 * MIN]
    assert all(not r.headlines and not r.spike_headlines for r in quiet_before)


def test_a_new_ticker_starts_from_the_prior_and_a_calm_one_stays_quiet() -> None:
    feed = Feed()

    def per_minute(m: int) -> list[ScoredEvent]:
        evs = [
            feed.ev("CALM", m + 0.1, "negative"),
            feed.ev("CALM", m + 0.2, "neutral"),
            feed.ev("CALM", m + 0.3, "positive"),
        ]
        evs.append(feed.ev("CALM", m + 0.4, "neutral"))
        if 40 <= m < 45:
            evs += [feed.ev("ACME", m + 0.5 + i * 0.01, "negative") for i in range(6)]
        return evs

    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0), key_type="ticker", max_keys=100)
    records = run_minutes(folder, 60, per_minute)
    acme = [r for r in records if r.topic == "ACME"]
    assert acme[0].warmed_up and acme[0].window_start_ms == T0 + 40 * MIN
    at = first_active(records, "ACME")
    assert at is not None and at - 40 < 5
    assert first_active(records, "CALM") is None
    assert all(r.key_type == "ticker" and r.to_json_dict()["ticker"] == r.topic for r in records)


def test_ticker_state_is_bounded_and_forgets_the_least_recently_active() -> None:
    feed = Feed()
    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0), key_type="ticker", max_keys=3)
    for m, ticker in enumerate(["AAA", "BBB", "CCC", "DDD", "EEE"]):
        folder.add(feed.ev(ticker, m + 0.5, "neutral"))
        folder.advance(T0 + (m + 1) * MIN)
    assert folder.topics() == ["CCC", "DDD", "EEE"] and folder.evicted == 2
    folder.add(feed.ev("AAA", 5.5, "neutral"))  # a forgotten ticker comes back from the prior
    folder.advance(T0 + 7 * MIN)
    assert "AAA" in folder.topics() and len(folder.topics()) == 3


def test_exported_tickers_are_the_busiest_plus_every_spiking_one() -> None:
    @dataclass
    class G:
        recent_volume: float
        spike_active: bool = False

    gauges = {"A": G(5), "B": G(9), "C": G(1, True), "D": G(9), "E": G(0.5)}
    assert exported_tickers(gauges, 2) == ["C", "B", "D"]
    assert exported_tickers(gauges, 0) == ["C"]


def test_the_aggregator_opens_the_taxonomy_per_partition_and_stores_it() -> None:
    trend = TrendSettings(allowed_lateness_ms=0)
    p0, p1, pt = ("news.scored", 0), ("news.scored", 1), ("news.scored.tickers", 0)
    agg = Aggregator(trend)
    agg.open_topics({CALM: p0, QUIET: p1})
    feed = Feed()
    agg.add(feed.ev(CALM, 0.5, "neutral"), p0, 0, (0, "raw0"))
    agg.add(feed.ev("ACME", 0.5, "negative"), pt, 0, ("t", 0, "raw0"), kind="ticker")
    agg.add(feed.ev(CALM, 2.5, "neutral"), p0, 1, (0, "raw0"))
    records = agg.advance(now_s=60.0)  # every stream idle: the watermark is the newest event time
    assert {(r.key_type, r.topic) for r in records} == {("topic", CALM), ("topic", QUIET), ("ticker", "ACME")}
    assert set(agg.snapshot(p1).topics) == {QUIET} and agg.snapshot(p1).kind == "topic"
    state = decode(encode(agg.snapshot(pt)))
    assert state.kind == "ticker" and set(state.topics) == {"ACME"}
    fresh = Aggregator(trend)
    fresh.restore(pt, state)
    assert fresh.tickers.topics() == ["ACME"] and fresh.folder.topics() == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 12), st.booleans()), min_size=1, max_size=60),
    st.integers(0, 70),
    st.sampled_from(["topic", "ticker"]),
)
def test_the_detector_restored_after_a_restart_equals_the_one_that_kept_running(
    counts: list[tuple[int, int, bool]], cut: int, kind: str
) -> None:
    """Per minute, for three keys, a number of events (negative or not). Stopping after any minute,
    storing the folder's snapshots through the changelog's encoding and restoring them into a new
    folder gives the same detector state and the same records as never stopping."""
    trend = TrendSettings(
        allowed_lateness_ms=0, warmup_windows=3, min_negatives=2, min_total=2, enter_windows=2
    )
    keys = ["K0", "K1", "K2"]
    feed = Feed()
    minutes = [
        [feed.ev(keys[k], m + 0.01 * i, "negative" if neg or i % 2 else "neutral") for i in range(n)]
        for m, (k, n, neg) in enumerate(counts)
    ]

    def make() -> TrendFolder:
        folder = TrendFolder(trend, key_type=kind, max_keys=None)
        if kind == "topic":
            folder.open(keys)
        return folder

    kept, out_kept = make(), []
    for m, evs in enumerate(minutes):
        for e in evs:
            kept.add(e)
        out_kept += kept.advance(T0 + (m + 1) * MIN)
    stop = min(cut, len(minutes))
    first, out = make(), []
    for m, evs in enumerate(minutes[:stop]):
        for e in evs:
            first.add(e)
        out += first.advance(T0 + (m + 1) * MIN)
    snaps = {k: s for k in first.topics() if (s := first.snapshot_topic(k)) is not None}
    stored = decode(encode(PartitionState(stop, snaps, kind)))
    second = make()
    for k, snap in stored.topics.items():
        second.restore_topic(k, snap)
    for m, evs in enumerate(minutes):
        for e in evs:
            second.add(e, reread=m < stop)
        if m >= stop:
            out += second.advance(T0 + (m + 1) * MIN)
    assert out == out_kept
    assert {k: second.snapshot_topic(k) for k in second.topics()} == {
        k: kept.snapshot_topic(k) for k in kept.topics()
    }


def test_a_new_ticker_whose_surge_ramps_up_is_still_a_spike() -> None:
    """The prior must not be dragged to the surge's share by its first, still small, windows."""
    feed = Feed()
    ramp = [1, 2, 3, 4, 5, 6, 7, 8, 8, 8]

    def per_minute(m: int) -> list[ScoredEvent]:
        n = ramp[m - 30] if 30 <= m < 40 else 0
        return [feed.ev("NWCO", m + 0.5 + i * 0.01, "negative") for i in range(n)]

    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0), key_type="ticker", max_keys=10)
    records = run_minutes(folder, 50, per_minute)
    at = first_active(records, "NWCO")
    assert at is not None and at - 30 <= 7, at


def test_ticker_series_stay_bounded_and_leave_with_their_ticker() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from pipeline.metrics import Metrics
    from pipeline.trend_types import TopicGauges

    def g(volume: float, active: bool = False) -> TopicGauges:
        return TopicGauges(0.5, int(volume), 0.2, 4.0 if active else 0.0, active, T0, 0, recent_volume=volume)

    registry = CollectorRegistry()
    m = Metrics(registry)
    m.set_ticker_gauges({f"T{i:03d}": g(i) for i in range(300)}, top_k=5, tracked=300)
    text = generate_latest(registry).decode()
    shown = {line.split('"')[1] for line in text.splitlines() if line.startswith("finsent_ticker_volume{")}
    assert shown == {"T299", "T298", "T297", "T296", "T295"}
    m.set_ticker_gauges({"T001": g(1, active=True), "T299": g(9)}, top_k=0, tracked=2)
    text = generate_latest(registry).decode()
    shown = {
        line.split('"')[1] for line in text.splitlines() if line.startswith("finsent_ticker_spike_active{")
    }
    assert shown == {"T001"}  # the spiking one stays; the others' series are gone
    assert "finsent_tickers_tracked 2.0" in text


def test_ticker_copies_are_the_scored_record_plus_its_ticker() -> None:
    import json

    from pipeline.scoring import ticker_copies

    value = json.dumps(
        {"id": "m1", "text": "Ölpreis fällt \u2014 $ACME", "n": 1}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    copies = ticker_copies(value, ("ACME", "BRK.B"))
    assert [k for k, _ in copies] == [b"ACME", b"BRK.B"]
    for (_, v), ticker in zip(copies, ("ACME", "BRK.B"), strict=True):
        assert json.loads(v) == {**json.loads(value), "ticker": ticker}
