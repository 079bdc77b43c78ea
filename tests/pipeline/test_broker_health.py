"""Broker health bookkeeping and per-record serialisation in the score stage (issue 8, findings 1, 5)."""

from __future__ import annotations

import json

from pipeline.broker_health import BrokerHealth
from pipeline.records import DeadLetter, NewsItem, Origin
from pipeline.scoring import ScoredRecord
from pipeline.stages import dead_outgoing, scored_outgoing


def test_the_idle_clock_runs_only_while_the_broker_answers() -> None:
    h = BrokerHealth(timeout_s=3.0)
    assert h.idle_seconds(since=0.0, now=5.0) is None  # no answer yet: not counting
    assert h.answered(1.0) is True  # the first answer starts an answering spell
    for t in (2.0, 3.0, 4.0):
        assert h.answered(t) is False
    assert h.idle_seconds(since=0.0, now=4.0) == 3.0  # from the spell's start (1.0) to the last answer
    assert h.idle_seconds(since=2.5, now=4.5) == 1.5  # counts only up to the last answer (4.0)
    assert h.answering(7.0) and not h.answering(7.1)  # silent for more than the timeout
    assert h.idle_seconds(since=2.5, now=60.0) == 0.0  # an outage is not idleness
    assert h.answered(61.0) is True  # the broker is back: the clock starts again from zero
    h.answered(63.0), h.answered(65.0)
    assert h.idle_seconds(since=2.5, now=65.0) == 4.0


def _item(text: str, item_id: str) -> NewsItem:
    origin = Origin("news.raw", 0, 5, 1_772_445_600_000)
    return NewsItem(item_id, text, 1_772_445_600_000, None, "wire\ud800", (), origin, raw=b'{"raw": 1}')


def _record(item: NewsItem) -> ScoredRecord:
    probs = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    return ScoredRecord(item, "Energy | Oil", 0.9, "positive", probs, 0.6, "v1", 1_772_445_600_000)


def test_a_scored_record_that_cannot_be_serialised_is_dead_lettered_alone() -> None:
    good = _record(NewsItem("ok", "Oil rallies", 1, None, None, (), Origin("news.raw", 0, 4, 1)))
    bad = _record(_item("Oil slides", "bad"))  # a lone surrogate no UTF-8 encoder takes
    out, ok, dead = scored_outgoing("news.scored", [good, bad])
    assert [o.value for o in out] == [good.to_bytes()] and ok == [good]
    (d,) = dead
    assert d.reason == "serialization_failed" and d.id == "bad" and d.raw == b'{"raw": 1}'
    assert d.message.startswith("news.raw[0]@5: id 'bad': scored record not serialisable")


def test_a_dead_letter_quoting_a_lone_surrogate_still_serialises() -> None:
    d = DeadLetter("bad_field_type", "news.raw[0]@1: 'source' \ud800", b"x", Origin("news.raw", 0, 1, None))
    (o,) = dead_outgoing("news.dlq", [d], 0)
    assert json.loads(o.value)["reason"] == "bad_field_type"


def test_readme_states_the_numbers_the_code_uses() -> None:
    from pathlib import Path

    from pipeline.broker_health import PROBE_INTERVAL_S, PROBE_TIMEOUT_S
    from pipeline.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert PROBE_INTERVAL_S == 1.0 and "every second" in readme
    assert f"sets 0 after {PROBE_TIMEOUT_S:.0f} s without an answer" in readme
    for value in (Settings.event_time_max_ahead_ms, Settings.event_time_max_behind_ms):
        assert f"{value:,}".replace(",", " ") in readme


def test_broker_up_needs_both_an_answering_probe_and_a_successful_last_operation() -> None:
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import Metrics

    reg = CollectorRegistry()
    m = Metrics(reg)

    def up() -> float | None:
        return reg.get_sample_value("finsent_broker_up")

    m.broker_ok()
    assert up() == 1
    m.broker_probe(False)  # silent broker: poll comes back empty, nothing failed, yet it is down
    assert up() == 0
    m.broker_ok()  # an operation that still succeeded (buffered) does not override the silence
    assert up() == 0
    m.broker_probe(True, resumed=True)
    assert up() == 1
    m.broker_failed()  # answers probes but refuses to publish: still down
    m.broker_probe(True)
    assert up() == 0
    m.broker_ok()
    assert up() == 1
    assert reg.get_sample_value("finsent_broker_errors_total") == 2
