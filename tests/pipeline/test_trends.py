"""TrendFolder: windows per topic, dedup, lateness, record emission and spikes, with time as data."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ConfigError
from pipeline.records import parse_published_at
from pipeline.trends import EventError, ScoredEvent, TrendFolder, TrendRecord, TrendSettings

MIN = 60_000
T0 = 1_763_900_000_000 - 1_763_900_000_000 % MIN  # a window boundary (2025-11-23T12:13Z)
SCORE = {"negative": -0.8, "neutral": 0.0, "positive": 0.8}


def ev(event_id: str, topic: str, sentiment: str, ts: int) -> ScoredEvent:
    return ScoredEvent(event_id, topic, sentiment, SCORE[sentiment], ts)


def fold(events: list[ScoredEvent], folder: TrendFolder | None = None) -> tuple[list[TrendRecord], list[str]]:
    """What the daemon does: add each event, advance to the max event time seen, flush at the end."""
    folder = folder or TrendFolder()
    records, outcomes = [], []
    for e in events:
        outcomes.append(folder.add(e))
        records += folder.advance(folder.max_event_time_ms)
    records += folder.flush()
    return records, outcomes


def calm_and_surge(rng: random.Random, minutes: int, surge: tuple[int, int] | None) -> list[ScoredEvent]:
    """Two topics with 0-3 messages a minute; `surge=(from, to)` adds 7 negatives a minute to "Energy"."""
    events, n = [], 0
    for minute in range(minutes):
        for topic in ("Energy", "Tech"):
            count = rng.randint(0, 3)
            if surge and topic == "Energy" and surge[0] <= minute < surge[1]:
                count += 7
            for k in range(count):
                extra = surge and topic == "Energy" and surge[0] <= minute < surge[1] and k < 7
                sentiment = "negative" if extra or rng.random() < 0.3 else rng.choice(["neutral", "positive"])
                events.append(ev(f"m{n}", topic, sentiment, T0 + minute * MIN + rng.randrange(MIN)))
                n += 1
    events.sort(key=lambda e: e.event_time_ms)
    return events


# -- events and settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"id": ""}, "'id'"),
        ({"topic": ""}, "'topic'"),
        ({"sentiment": "bearish"}, "'sentiment'"),
        ({"score": float("nan")}, "'score'"),
        ({"score": 1.5}, "'score'"),
        ({"event_time_ms": 1.5e12}, "'event_time_ms'"),
    ],
)
def test_malformed_events_name_the_id_and_field(kwargs: dict, fragment: str) -> None:
    base = {"id": "n-17", "topic": "Tech", "sentiment": "neutral", "score": 0.0, "event_time_ms": T0}
    with pytest.raises(EventError, match=fragment) as info:
        ScoredEvent(**{**base, **kwargs})
    assert "n-17" in str(info.value) or kwargs.get("id") == ""


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"window_ms": 0}, "window_ms"),
        ({"allowed_lateness_ms": -1}, "allowed_lateness_ms"),
        ({"dedup_horizon_ms": 60_000}, "dedup_horizon_ms"),
        ({"window_ms": 60.0}, "window_ms"),
        ({"z_enter": 1.0}, "z_leave"),
        ({"max_quiet_windows": 0}, "max_quiet_windows"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TrendSettings(**kwargs)


def test_settings_from_mapping_rejects_unknown_keys_naming_the_source() -> None:
    assert TrendSettings.from_mapping({"window_ms": 30_000}).window_ms == 30_000
    with pytest.raises(ConfigError, match=r"finsent\.yaml.*window_size"):
        TrendSettings.from_mapping({"window_size": 5}, source="finsent.yaml [trends]")


# -- windows, records ----------------------------------------------------------------------------------


def test_a_window_closes_only_after_its_allowed_lateness() -> None:
    folder = TrendFolder()  # 60 s windows, 30 s lateness
    folder.add(ev("a", "Tech", "negative", T0 + 10_000))
    folder.add(ev("b", "Tech", "positive", T0 + 50_000))
    assert folder.advance(T0 + MIN + 29_999) == []
    [record] = folder.advance(T0 + MIN + 30_000)
    assert (record.topic, record.window_start_ms, record.window_end_ms) == ("Tech", T0, T0 + MIN)
    assert record.counts == {"negative": 1, "neutral": 0, "positive": 1}
    assert record.total == 2 and record.negative_share == 0.5 and record.mean_score == pytest.approx(0.0)
    assert record.late == 0 and not record.spike_active and not record.warmed_up


def test_record_json_has_iso_timestamps_and_round_trips() -> None:
    folder = TrendFolder()
    folder.add(ev("a", "Tech", "negative", T0 + 1))
    [record] = folder.flush()
    data = json.loads(json.dumps(record.to_json_dict()))
    assert data["window_start"] == "2025-11-23T12:13:00.000Z"
    assert data["window_end"] == "2025-11-23T12:14:00.000Z"
    assert data["window_start_ms"] == T0 and data["counts"]["negative"] == 1
    assert data["spike_active"] is False and data["spike_transition"] is None


def test_quiet_windows_are_emitted_in_order_and_can_be_switched_off() -> None:
    events = [ev("a", "Tech", "neutral", T0), ev("b", "Tech", "neutral", T0 + 3 * MIN + 5)]
    records, _ = fold(events)
    assert [(r.window_start_ms - T0) // MIN for r in records] == [0, 1, 2, 3]
    assert [r.total for r in records] == [1, 0, 0, 1]
    records, _ = fold(events, TrendFolder(TrendSettings(emit_empty_windows=False)))
    assert [r.total for r in records] == [1, 1]


def test_records_of_one_advance_are_sorted_by_window_then_topic() -> None:
    folder = TrendFolder()
    for i, (topic, minute) in enumerate([("b", 1), ("a", 1), ("b", 0), ("c", 0)]):
        folder.add(ev(f"e{i}", topic, "neutral", T0 + minute * MIN))
    records = folder.advance(T0 + 10 * MIN)
    keys = [(r.window_start_ms, r.topic) for r in records]
    assert keys == sorted(keys)
    assert {r.topic for r in records} == {"a", "b", "c"}


def test_a_long_silence_is_cut_short() -> None:
    folder = TrendFolder(TrendSettings(max_quiet_windows=10))
    folder.add(ev("a", "Tech", "neutral", T0))
    folder.add(ev("b", "Tech", "neutral", T0 + 1_000 * MIN))
    records = folder.flush()
    assert len(records) == 1 + 10 + 1
    assert records[-1].window_start_ms == T0 + 1_000 * MIN and records[-1].total == 1


def test_watermark_never_moves_back() -> None:
    folder = TrendFolder()
    folder.add(ev("a", "Tech", "neutral", T0))
    assert [r.total for r in folder.advance(T0 + 5 * MIN)] == [1, 0, 0, 0]  # windows 0-3 closed
    assert folder.advance(T0) == []
    assert folder.watermark_ms == T0 + 5 * MIN


# -- lateness and dedup ----------------------------------------------------------------------------------


def test_late_events_are_reported_and_ride_on_the_next_record() -> None:
    folder = TrendFolder()
    folder.add(ev("a", "Tech", "neutral", T0))
    [first] = folder.advance(T0 + MIN + 30_000)
    assert first.late == 0
    assert folder.add(ev("late-1", "Tech", "negative", T0 + 59_999)) == "late"
    assert folder.add(ev("late-2", "Macro", "negative", T0 + 1)) == "late"  # a topic not seen before
    assert folder.add(ev("b", "Tech", "neutral", T0 + MIN + 1)) == "counted"
    assert folder.late == 2 and folder.late_by_topic() == {"Macro": 1, "Tech": 1}
    records = folder.advance(T0 + 2 * MIN + 30_000)
    by_topic = {r.topic: r for r in records}
    assert by_topic["Tech"].late == 1 and by_topic["Tech"].total == 1  # the late one is not folded in
    assert by_topic["Macro"].late == 1 and by_topic["Macro"].total == 0
    assert folder.gauges()["Tech"].late_total == 1
    # Reported once: the following record starts again from zero.
    folder.add(ev("c", "Tech", "neutral", T0 + 2 * MIN))
    assert all(r.late == 0 for r in folder.advance(T0 + 3 * MIN + 30_000))


def test_late_count_waits_for_the_next_emitted_record_when_quiet_windows_are_not_emitted() -> None:
    folder = TrendFolder(TrendSettings(emit_empty_windows=False))
    folder.add(ev("a", "Tech", "neutral", T0))
    folder.advance(T0 + MIN + 30_000)
    folder.add(ev("x", "Tech", "negative", T0 + 5))
    assert folder.advance(T0 + 5 * MIN) == []
    folder.add(ev("b", "Tech", "neutral", T0 + 6 * MIN))
    [record] = folder.flush()
    assert record.late == 1 and record.total == 1


def test_duplicates_are_not_counted_again_and_memory_is_bounded() -> None:
    folder = TrendFolder()  # 10 minute horizon
    assert folder.add(ev("a", "Tech", "negative", T0)) == "counted"
    assert folder.add(ev("a", "Tech", "negative", T0)) == "duplicate"
    assert folder.add(ev("a", "Tech", "positive", T0 + 5_000)) == "duplicate"  # same id, other payload
    assert folder.duplicates == 2
    for minute in range(1, 120):  # two hours, 5 messages a minute
        for k in range(5):
            folder.add(ev(f"m{minute}-{k}", "Tech", "neutral", T0 + minute * MIN + k))
        folder.advance(folder.max_event_time_ms)
    assert folder.dedup_size <= 5 * 12  # about horizon + one window's worth, not two hours'
    # Forgotten ids can only belong to closed windows: a redelivery is late, never counted twice.
    assert folder.add(ev("a", "Tech", "negative", T0)) == "late"


# -- spikes through the folder ------------------------------------------------------------------------------


def test_a_planted_surge_is_a_spike_for_that_topic_only() -> None:
    events = calm_and_surge(random.Random(9), 120, surge=(60, 75))
    folder = TrendFolder()
    records, _ = fold(events, folder)
    active = {(r.topic, (r.window_start_ms - T0) // MIN) for r in records if r.spike_active}
    assert {topic for topic, _ in active} == {"Energy"}
    assert min(minute for _, minute in active) <= 64
    entered = [r for r in records if r.spike_transition == "enter"]
    assert len(entered) == 1
    assert not folder.gauges()["Energy"].spike_active  # over by the end of the feed
    assert folder.gauges()["Tech"].volume >= 0


def test_a_calm_feed_has_no_spike_and_gauges_follow_the_last_window() -> None:
    records, _ = fold(calm_and_surge(random.Random(10), 180, surge=None))
    assert not any(r.spike_active for r in records)
    folder = TrendFolder()
    fold(calm_and_surge(random.Random(10), 30, surge=None), folder)
    gauges = folder.gauges()
    assert set(gauges) == {"Energy", "Tech"}
    assert all(g.window_end_ms == T0 + 30 * MIN for g in gauges.values())


# -- properties --------------------------------------------------------------------------------------------

topics = st.sampled_from(["Tech", "Energy", "Macro"])
sentiments = st.sampled_from(["negative", "neutral", "positive"])


@st.composite
def feeds(draw, max_size: int = 60) -> list[ScoredEvent]:
    """Events over ~20 minutes, unique ids, in time order."""
    rows = draw(st.lists(st.tuples(topics, sentiments, st.integers(0, 20 * MIN)), max_size=max_size))
    return sorted(
        (ev(f"e{i}", topic, sentiment, T0 + offset) for i, (topic, sentiment, offset) in enumerate(rows)),
        key=lambda e: e.event_time_ms,
    )


def comparable(records: list[TrendRecord]) -> list[tuple]:
    return [
        (
            r.topic,
            r.window_start_ms,
            tuple(sorted(r.counts.items())),
            r.late,
            r.spike_active,
            round(r.mean_score, 9),
        )
        for r in records
    ]


@settings(max_examples=60, deadline=None)
@given(feeds(), st.data())
def test_every_event_is_accounted_for(events: list[ScoredEvent], data) -> None:
    """Counts over emitted records + late + duplicates == events added, whatever the arrival order."""
    redelivered = data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    arrivals = data.draw(st.permutations(events + redelivered))
    folder = TrendFolder()
    records, outcomes = [], []
    for e in arrivals:
        outcomes.append(folder.add(e))
        if data.draw(st.booleans()):
            records += folder.advance(folder.max_event_time_ms)
    records += folder.flush()
    tally = Counter(outcomes)
    assert sum(r.total for r in records) == tally["counted"] == folder.counted
    assert tally["late"] == folder.late == sum(folder.late_by_topic().values())
    assert tally["duplicate"] == folder.duplicates
    assert tally["counted"] + tally["late"] + tally["duplicate"] == len(arrivals)
    # Window assignment: each record counts exactly the counted events of its topic inside its bounds.
    counted = [e for e, o in zip(arrivals, outcomes, strict=True) if o == "counted"]
    for r in records:
        inside = [
            e
            for e in counted
            if e.topic == r.topic and r.window_start_ms <= e.event_time_ms < r.window_end_ms
        ]
        assert r.total == len(inside)
        assert r.window_end_ms - r.window_start_ms == MIN and r.window_start_ms % MIN == 0
    # Per topic, records are in window order with no window twice.
    for topic in {r.topic for r in records}:
        starts = [r.window_start_ms for r in records if r.topic == topic]
        assert starts == sorted(set(starts))


@settings(max_examples=60, deadline=None)
@given(feeds(), st.lists(st.integers(0, 30_000), min_size=60, max_size=60))
def test_arrival_order_within_allowed_lateness_does_not_change_the_result(events, jitter) -> None:
    # Each event arrives up to `allowed_lateness` after its own time: it can overtake or be overtaken by
    # others, but never arrives after its window has closed.
    arrival = [e.event_time_ms + j for e, j in zip(events, jitter[: len(events)], strict=True)]
    shuffled = [e for _, e in sorted(zip(arrival, events, strict=True), key=lambda p: p[0])]
    in_order, outcomes_in_order = fold(events)
    reordered, outcomes_reordered = fold(shuffled)
    assert set(outcomes_in_order) <= {"counted"} and set(outcomes_reordered) <= {"counted"}
    assert comparable(reordered) == comparable(in_order)


@settings(max_examples=60, deadline=None)
@given(feeds(), st.lists(st.tuples(st.integers(0, 59), st.integers(0, 200)), max_size=20))
def test_redelivered_duplicates_do_not_change_counts(events, redeliveries) -> None:
    once, _ = fold(events)
    stream = list(events)
    for index, delay in redeliveries:
        if events:
            original = events[index % len(events)]
            position = min(stream.index(original) + 1 + delay, len(stream))
            stream.insert(position, original)
    again, outcomes = fold(stream)
    assert [(r.topic, r.window_start_ms, r.counts) for r in again] == [
        (r.topic, r.window_start_ms, r.counts) for r in once
    ]
    # A redelivery is a duplicate within the horizon, else late; never counted.
    assert Counter(outcomes)["counted"] == len(events)


def test_order_invariance_example_overtaking_inside_the_lateness() -> None:
    a = ev("a", "Tech", "negative", T0 + 59_000)
    b = ev("b", "Tech", "positive", T0 + MIN + 20_000)
    first, _ = fold([a, b])
    second, outcomes = fold([b, a])  # a arrives 21 s after b, inside the 30 s lateness
    assert outcomes == ["counted", "counted"]
    assert comparable(first) == comparable(second)
    # ... while one beyond the lateness is late, and reported.
    third, outcomes = fold([replace(b, event_time_ms=T0 + MIN + 31_000), a])
    assert outcomes == ["counted", "late"]
    assert sum(r.late for r in third) == 1


# -- the recorded feeds, folded by their TRUTH labels ---------------------------------------------------

FEEDS = Path(__file__).resolve().parents[1] / "feeds"


def truth_events(name: str, noise: random.Random | None = None) -> list[ScoredEvent]:
    """A recorded feed as scored events, labelled by its truth; `noise` flips 15% of the sentiments."""
    out = []
    for line in (FEEDS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        sentiment = row["truth"]["sentiment"]
        if noise is not None and noise.random() < 0.15:
            sentiment = noise.choice(["negative", "neutral", "positive"])
        ts = parse_published_at(row["published_at"])
        out.append(ScoredEvent(row["id"], row["truth"]["topic"], sentiment, SCORE[sentiment], ts))
    return out


def test_the_calm_feed_raises_no_spike() -> None:
    events = truth_events("calm_day")
    records, outcomes = fold(events)
    assert outcomes == ["counted"] * len(events)
    assert sum(r.total for r in records) == len(events)
    assert not any(r.spike_active for r in records)
    assert max(r.spike_score for r in records) < TrendSettings().z_enter


@pytest.mark.parametrize("noise_seed", [None, 1])
def test_the_spike_feed_raises_a_spike_for_the_planted_topic_only(noise_seed: int | None) -> None:
    meta = json.loads((FEEDS / "spike_day.meta.json").read_text(encoding="utf-8"))
    start = parse_published_at(meta["interval"]["start"])
    end = parse_published_at(meta["interval"]["end"])
    noise = random.Random(noise_seed) if noise_seed is not None else None
    records, _ = fold(truth_events("spike_day", noise))
    active = [r for r in records if r.spike_active]
    assert {r.topic for r in active} == {meta["topic"]}
    # Raised during the planted interval, within 10 minutes of its start, and over soon after its end.
    assert start <= min(r.window_start_ms for r in active) <= start + 10 * MIN
    assert max(r.window_end_ms for r in active) <= end + 5 * MIN
    assert [r.spike_transition for r in records if r.spike_transition] == ["enter", "leave"]
