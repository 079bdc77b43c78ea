"""Message parsing: every bad input becomes a dead letter with the right reason, nothing raises."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import (
    MAX_DATETIME_MS,
    MIN_DATETIME_MS,
    REASONS,
    DeadLetter,
    EventTimeBounds,
    NewsItem,
    Origin,
    iso_utc,
    parse_message,
)

FEEDS = Path(__file__).resolve().parents[1] / "feeds"
ORIGIN = Origin("news.raw", 2, 41, 1_772_443_800_000)
LIMIT = 65536


def malformed() -> list[tuple[str, str, bytes]]:
    rows = [json.loads(line) for line in (FEEDS / "malformed.jsonl").read_text().splitlines() if line]
    return [(r["kind"], r["reason"], base64.b64decode(r["b64"])) for r in rows]


def test_the_malformed_feed_covers_at_least_20_kinds_and_raw_bytes() -> None:
    cases = malformed()
    assert len({kind for kind, _, _ in cases}) >= 20
    assert len({reason for _, reason, _ in cases}) >= 12
    # Some of them must not even be UTF-8: stored as base64 so the exact bytes survive.
    undecodable = 0
    for _, _, raw in cases:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= 3


@pytest.mark.parametrize(
    ("kind", "reason", "raw"), malformed(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_malformed_message_gets_its_reason(kind: str, reason: str, raw: bytes) -> None:
    out = parse_message(raw, ORIGIN, max_bytes=LIMIT)
    assert isinstance(out, DeadLetter), kind
    assert out.reason == reason, f"{kind}: {out.message}"
    assert out.reason in REASONS
    assert out.raw == raw  # the original bytes travel with the dead letter
    assert out.message.startswith("news.raw[2]@41: ")  # names where it came from
    record = out.to_dict(1_772_443_900_000)
    assert base64.b64decode(record["raw_b64"]) == raw
    assert record["input"] == {
        "topic": "news.raw",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": ORIGIN.timestamp_ms,
    }


def test_a_valid_message_with_headline_and_body() -> None:
    raw = json.dumps(
        {
            "id": "n-1",
            "headline": "Refiners cut runs",
            "body": "Margins fell for a third week.",
            "published_at": "2026-03-02T09:30:00+01:00",
            "source": "wire",
            "tickers": ["VLO", "MPC"],
            "truth": {"topic": "Energy | Oil"},
        }
    ).encode()
    item = parse_message(raw, ORIGIN, max_bytes=LIMIT)
    assert isinstance(item, NewsItem)
    assert item.text == "Refiners cut runs\nMargins fell for a third week."
    assert item.event_time_ms == 1_772_440_200_000  # 08:30Z
    assert (item.source, item.tickers, item.origin) == ("wire", ("VLO", "MPC"), ORIGIN)


def test_text_wins_over_headline_and_kafka_timestamp_is_the_default_time() -> None:
    raw = json.dumps({"id": "n-2", "text": "Payrolls beat", "headline": "ignored"}).encode()
    item = parse_message(raw, ORIGIN, max_bytes=LIMIT)
    assert isinstance(item, NewsItem)
    assert (
        item.text == "Payrolls beat"
        and item.event_time_ms == ORIGIN.timestamp_ms
        and item.published_at is None
    )
    no_time = parse_message(raw, Origin("news.raw", 0, 1, None), max_bytes=LIMIT)
    assert isinstance(no_time, DeadLetter) and no_time.reason == "missing_time"


def test_oversize_limit_is_the_configured_one() -> None:
    raw = json.dumps({"id": "n-3", "text": "x" * 500}).encode()
    assert isinstance(parse_message(raw, ORIGIN, max_bytes=len(raw)), NewsItem)
    out = parse_message(raw, ORIGIN, max_bytes=len(raw) - 1)
    assert isinstance(out, DeadLetter) and out.reason == "oversize"


def test_dead_letter_keeps_the_id_when_it_had_one() -> None:
    out = parse_message(json.dumps({"id": "n-4", "text": 7}).encode(), ORIGIN, max_bytes=LIMIT)
    assert isinstance(out, DeadLetter) and out.id == "n-4" and "'text' must be a string" in out.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    out = parse_message(raw, ORIGIN, max_bytes=200)
    assert isinstance(out, (NewsItem, DeadLetter))
    if isinstance(out, DeadLetter):
        assert out.reason in REASONS and out.raw == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "text", "headline", "body", "published_at", "source", "tickers"]), json_values
    )
)
def test_arbitrary_objects_never_raise_and_accepted_ones_are_well_formed(obj: dict) -> None:
    out = parse_message(json.dumps(obj).encode(), ORIGIN, max_bytes=LIMIT)
    if isinstance(out, NewsItem):
        assert isinstance(out.id, str) and out.id.strip()
        assert out.text.strip()
        out.text.encode("utf-8")
    else:
        assert out.reason in REASONS


def test_dead_letter_bytes_can_be_capped_for_the_dlq() -> None:
    raw = b"x" * 100
    out = parse_message(raw, ORIGIN, max_bytes=10)
    assert isinstance(out, DeadLetter) and out.reason == "oversize"
    record = out.to_dict(0, max_raw_bytes=10)
    assert base64.b64decode(record["raw_b64"]) == b"x" * 10
    assert record["raw_bytes"] == 100 and record["raw_truncated"] is True
    assert out.to_dict(0)["raw_truncated"] is False


# --- event time: representable, and bounded around the record timestamp (issue 8, findings 1-2) ---

DAY = 86_400_000
BOUNDS = EventTimeBounds(max_ahead_ms=DAY, max_behind_ms=30 * DAY)


def _msg(published_at: str | None, item_id: str = "t-1") -> bytes:
    obj = {"id": item_id, "text": "Stocks slide"}
    if published_at is not None:
        obj["published_at"] = published_at
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:30-01:00", "9999-12-31T23:59:59.999999-14:00"]
)
def test_a_published_at_outside_datetime_range_in_utc_is_a_bad_published_at(value: str) -> None:
    # These parse, but converting them to UTC leaves years 1..9999: they used to crash the score stage.
    out = parse_message(_msg(value), ORIGIN, max_bytes=LIMIT)
    assert isinstance(out, DeadLetter) and out.reason == "bad_published_at", out
    assert "years 1..9999" in out.message and out.id == "t-1"
    json.dumps(out.to_dict(ORIGIN.timestamp_ms or 0))  # the dead letter itself serialises


def test_event_time_bounds_are_judged_against_the_record_timestamp() -> None:
    rec = ORIGIN.timestamp_ms
    assert rec is not None
    now = rec + 365 * DAY  # a consumer a year behind its input: old-but-honest news still passes

    def parse(offset_ms: int) -> NewsItem | DeadLetter:
        return parse_message(
            _msg(iso_utc(rec + offset_ms)), ORIGIN, max_bytes=LIMIT, bounds=BOUNDS, now_ms=now
        )

    for ok in (0, DAY, -30 * DAY, -5 * DAY):
        assert isinstance(parse(ok), NewsItem), ok
    for bad in (DAY + 1, -30 * DAY - 1, 75 * 365 * DAY):
        out = parse(bad)
        assert isinstance(out, DeadLetter) and out.reason == "event_time_out_of_range", bad
        assert out.message.startswith("news.raw[2]@41: event time ") and "record timestamp" in out.message
    far = parse_message(_msg("9999-12-31T23:59:30Z"), ORIGIN, max_bytes=LIMIT, bounds=BOUNDS, now_ms=now)
    assert isinstance(far, DeadLetter) and far.reason == "event_time_out_of_range"


def test_without_a_record_timestamp_the_processing_clock_is_the_reference() -> None:
    now = 1_772_445_600_000
    origin = Origin("news.raw", 0, 7, None)
    ok = parse_message(_msg(iso_utc(now + DAY)), origin, max_bytes=LIMIT, bounds=BOUNDS, now_ms=now)
    assert isinstance(ok, NewsItem)
    out = parse_message(_msg(iso_utc(now - 31 * DAY)), origin, max_bytes=LIMIT, bounds=BOUNDS, now_ms=now)
    assert isinstance(out, DeadLetter) and out.reason == "event_time_out_of_range"
    assert "processing clock" in out.message


def test_a_record_timestamp_in_the_future_does_not_carry_a_future_event_past_the_check() -> None:
    # A replay copies published_at into the record timestamp: a line dated 2100 must still be caught.
    now = 1_772_445_600_000
    year_2100 = 4_102_444_800_000
    origin = Origin("news.raw", 0, 7, year_2100)
    out = parse_message(_msg(iso_utc(year_2100)), origin, max_bytes=LIMIT, bounds=BOUNDS, now_ms=now)
    assert isinstance(out, DeadLetter) and out.reason == "event_time_out_of_range"
    assert "processing clock" in out.message


def test_iso_utc_never_raises() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000+00:00"
    assert iso_utc(MAX_DATETIME_MS) == "9999-12-31T23:59:59.999+00:00"
    assert iso_utc(MIN_DATETIME_MS) == "0001-01-01T00:00:00.000+00:00"
    assert iso_utc(MAX_DATETIME_MS + 60_000) == f"{MAX_DATETIME_MS + 60_000}ms-since-epoch"


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()) | st.text(max_size=40))
def test_any_published_at_with_bounds_never_raises(value: object) -> None:
    text = value.isoformat() if not isinstance(value, str) else value
    out = parse_message(_msg(text), ORIGIN, max_bytes=LIMIT, bounds=BOUNDS, now_ms=1_772_445_600_000)
    if isinstance(out, NewsItem):
        iso_utc(out.event_time_ms)
    else:
        assert out.reason in REASONS
