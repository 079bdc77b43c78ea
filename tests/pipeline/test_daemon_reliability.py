"""Issue 8 on a real broker: poison timestamps, a frozen broker, and bad bootstrap lists via the CLI.

Each test runs the real `finsent consume` against Tansu; each failed on the code before the fix
(the score stage crash-looped; --exit-when-idle exited during the outage with broker_up still 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.broker_health import PROBE_TIMEOUT_S
from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import finsent, sample, scrape, start_consume, write_feed
from tests.support.toy_artifact import build_toy_artifact, good_rows

POISON = [
    # Parse, but leave years 1..9999 once converted to UTC.
    {"id": "p-year0", "text": "Stocks slide", "published_at": "0001-01-01T00:00:00+01:00"},
    {"id": "p-year10000", "text": "Stocks slide", "published_at": "9999-12-31T23:59:30-01:00"},
    # Representable, but far from the record timestamp.
    {"id": "p-9999", "text": "Stocks slide", "published_at": "9999-12-31T23:59:30Z"},
    {"id": "p-2100", "text": "Stocks slide", "published_at": "2100-01-01T00:00:00Z"},
    {"id": "p-year1", "text": "Stocks slide", "published_at": "0001-01-01T00:00:00Z"},
]
EXPECTED = {
    "p-year0": "bad_published_at",
    "p-year10000": "bad_published_at",
    "p-9999": "event_time_out_of_range",
    "p-2100": "event_time_out_of_range",
    "p-year1": "event_time_out_of_range",
    "p-live-2100": "event_time_out_of_range",
}


def _produce(bootstrap: str, topic: str, values_: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for v in values_:
            producer.send(topic, v)  # the producer's clock as record timestamp, like a live feed
        producer.flush(timeout=10)
    finally:
        producer.close()


@pytest.mark.integration
def test_poison_timestamps_end_in_the_dlq_and_everything_behind_them_is_scored(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    art = build_toy_artifact(tmp_path)
    bs = kafka_broker.bootstrap
    rows = good_rows(20) + POISON + good_rows(20, prefix="h")
    assert (
        finsent("replay", str(write_feed(tmp_path / "f.jsonl", rows)), "--bootstrap-servers", bs).returncode
        == 0
    )
    live = {"id": "p-live-2100", "text": "Stocks slide", "published_at": "2100-01-01T00:00:00Z"}
    _produce(bs, "news.raw", [json.dumps(live).encode()])
    # What a daemon without these checks wrote to news.scored: the aggregate stage must survive both.
    old = {"id": "o-1", "topic": "Energy | Oil", "sentiment": "negative", "score": -0.5,
           "input": {"topic": "news.raw", "partition": 0}}  # fmt: skip
    old_rows = [{**old, "event_time_ms": 253402300770000}, {**old, "id": "o-2", "event_time_ms": 10**17}]
    old_feed = write_feed(tmp_path / "old.jsonl", old_rows)  # 9999-12-31T23:59:30Z; past year 9999
    assert (
        finsent("replay", str(old_feed), "--bootstrap-servers", bs, "--topic", "news.scored").returncode == 0
    )
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(art), "--metrics-port", "0", "--exit-when-idle", "6"
    )
    try:
        assert proc.wait(timeout=150) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "crashed" not in text and "Traceback" not in text, text[-3000:]
    dlq = values(read_topic(bs, "news.dlq", done=lambda r: len(r) >= len(EXPECTED) + 1))
    by_id = {d["id"]: d for d in dlq if d["id"]}
    assert {i: by_id[i]["reason"] for i in EXPECTED} == EXPECTED
    assert "record timestamp" in by_id["p-year1"]["message"]  # the replay could not timestamp it
    assert "processing clock" in by_id["p-2100"]["message"]
    (bad_scored,) = [d for d in dlq if d["reason"] == "invalid_scored_record"]
    assert "outside the years 1..9999" in bad_scored["message"]
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= 42))
    assert {r["id"] for r in scored} >= {f"g{i}" for i in range(20)} | {f"h{i}" for i in range(20)}
    assert not {r["id"] for r in scored} & set(EXPECTED)


@pytest.mark.integration
def test_a_frozen_broker_is_not_idleness_and_broker_up_drops_during_the_freeze(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    art = build_toy_artifact(tmp_path)
    bs = kafka_broker.bootstrap
    n, idle_s, freeze_s = 3000, 8, 20
    feed = write_feed(tmp_path / "feed.jsonl", good_rows(n))
    assert finsent("replay", str(feed), "--bootstrap-servers", bs).returncode == 0
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(art), "--metrics-host", "127.0.0.1",
        "--metrics-port", str(port), "--batch-max-messages", "8", "--exit-when-idle", str(idle_s),
    )  # fmt: skip
    tansu = kafka_broker.proc.pid
    try:
        handled = 0.0
        deadline = time.monotonic() + 90
        while handled < 150 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                handled = sample(scrape(port), "finsent_messages_total", outcome="scored") or 0
            time.sleep(0.05)
        assert 150 <= handled < n, handled
        os.kill(tansu, signal.SIGSTOP)
        frozen_at = time.monotonic()
        down_after = None
        try:
            while time.monotonic() - frozen_at < freeze_s:
                with contextlib.suppress(OSError):
                    if down_after is None and sample(scrape(port), "finsent_broker_up") == 0:
                        down_after = time.monotonic() - frozen_at
                assert proc.poll() is None, "exited during the outage:\n" + log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            os.kill(tansu, signal.SIGCONT)
        assert down_after is not None and down_after <= PROBE_TIMEOUT_S + 2.0, down_after
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    ids = {r["id"] for r in values(read_topic(bs, "news.scored", done=lambda r: len(r) >= n, timeout_s=60))}
    assert ids == {f"g{i}" for i in range(n)}  # nothing left unscored
    assert "idle clock is paused" in log.read_text()


@pytest.mark.integration
def test_an_outage_after_the_input_is_done_does_not_count_as_idle_time(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    # Everything is scored, then the broker freezes for longer than --exit-when-idle: the idle clock
    # must wait for the broker to answer again (it used to run through the outage and end the run).
    art = build_toy_artifact(tmp_path)
    bs = kafka_broker.bootstrap
    idle_s, freeze_s = 8, 20
    assert (
        finsent(
            "replay", str(write_feed(tmp_path / "f.jsonl", good_rows(20))), "--bootstrap-servers", bs
        ).returncode
        == 0
    )
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(art), "--metrics-host", "127.0.0.1",
        "--metrics-port", str(port), "--exit-when-idle", str(idle_s),
    )  # fmt: skip
    tansu = kafka_broker.proc.pid
    try:
        handled, deadline = 0.0, time.monotonic() + 90
        while handled < 20 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                handled = sample(scrape(port), "finsent_messages_total", outcome="scored") or 0
            time.sleep(0.1)
        assert handled == 20
        os.kill(tansu, signal.SIGSTOP)
        try:
            time.sleep(freeze_s)
            assert "idle for" not in log.read_text(), (
                "the outage counted as idleness:\n" + log.read_text()[-3000:]
            )
            assert proc.poll() is None
        finally:
            os.kill(tansu, signal.SIGCONT)
        resumed = time.monotonic()
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        assert time.monotonic() - resumed >= idle_s - 1  # the clock started again when the broker answered
    finally:
        if proc.poll() is None:
            proc.kill()
