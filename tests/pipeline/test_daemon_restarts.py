"""The aggregate stage under catch-up, kill -9 and broker freezes, on a real broker (issue 8, findings 3, 4).

(1) catch-up: a backlog read unevenly by the score stage (one raw partition for a long time while the
    others wait) makes no event late: the watermark waits for raw partitions that still have lag;
    also while the feed is replayed concurrently.
(2) kill -9 mid-stream: the newest trend record per (topic, window) sums, per topic, to
    exactly the distinct ids scored (the changelog carries how far windows were emitted).
(3) slow tier: a 20,600-message backlog with random kill -9 and SIGSTOP/SIGCONT of the broker; and
    the issue's catch-up at scale (20,600 messages, corpus model): 0 late, exact totals, four spikes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import consume_args, finsent, scrape, start_consume, write_feed

FEEDS = Path(__file__).resolve().parents[1] / "feeds"
SPIKE_DAY, CALM_DAY = FEEDS / "spike_day.jsonl", FEEDS / "calm_day.jsonl"
DAY_MS = 86_400_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SPIKE_DAY.exists(), reason="tests/feeds/spike_day.jsonl not present"),
]


def replay(bs: str, feed: Path) -> None:
    out = finsent("replay", str(feed), "--bootstrap-servers", bs, "--topic", "news.raw", timeout=300)
    assert out.returncode == 0, out.stderr


def shifted_days(tmp_path: Path, copies: int) -> Path:
    """`copies` day-shifted copies of the calm and spike days, ids made unique, one feed in time order."""
    from datetime import datetime, timedelta

    rows = []
    for day in range(copies):
        for feed in (CALM_DAY, SPIKE_DAY):
            for line in feed.read_text().splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                row["id"] = f"d{day}-{feed.stem}-{row['id']}"
                at = datetime.fromisoformat(row["published_at"]) + timedelta(
                    days=2 * day + (feed == SPIKE_DAY)
                )
                row["published_at"] = at.isoformat(timespec="milliseconds")
                rows.append(row)
    rows.sort(key=lambda r: r["published_at"])
    return write_feed(tmp_path / "backlog.jsonl", rows)


def newest_totals(trends: list[dict]) -> tuple[Counter[str], int]:
    """Per topic, the sum over windows of the newest record's total; and how many windows were re-emitted
    with a different total (a shrunk or grown window)."""
    newest: dict[tuple[str, int], dict] = {}
    changed = 0
    for t in trends:
        key = (t["topic"], t["window_start_ms"])
        if key in newest and newest[key]["total"] != t["total"]:
            changed += 1
        newest[key] = t
    per_topic: Counter[str] = Counter()
    for (topic, _), t in newest.items():
        per_topic[topic] += t["total"]
    return per_topic, changed


def scored_per_topic(bs: str, at_least: int) -> Counter[str]:
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= at_least, timeout_s=120))
    topic_of = {r["id"]: r["topic"] for r in scored}
    return Counter(topic_of.values())


def wait_exit(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def trend_records(port: int) -> float:
    """Trend records this daemon process has published (all topics)."""
    with contextlib.suppress(OSError):
        return sum(
            float(line.rpartition(" ")[2])
            for line in scrape(port).splitlines()
            if line.startswith("finsent_trend_records_total{")
        )
    return 0.0


# A silent stream with no backlog stops holding the watermark after this long: short here, so the
# score stage reading one raw partition for a few seconds (instead of minutes on a big backlog) is
# enough to make the starved partitions' events late under a wall-clock rule.
SHORT_IDLE = ["--trend", "source_idle_ms=300", "--batch-max-messages", "32"]


@pytest.mark.parametrize("mode", ["backlog", "concurrent"])
def test_catch_up_makes_no_event_late(
    kafka_broker: Broker, tiny_artifact: Path, tmp_path: Path, mode: str
) -> None:
    bs = kafka_broker.bootstrap
    n = sum(1 for line in SPIKE_DAY.read_text().splitlines() if line.strip())
    log = tmp_path / "consume.log"
    args = consume_args(bs, tiny_artifact, "--metrics-port", "0", "--exit-when-idle", "8", *SHORT_IDLE)
    if mode == "backlog":
        replay(bs, SPIKE_DAY)
        proc = start_consume(log, *args)
    else:
        proc = start_consume(log, *args)
        replay(bs, SPIKE_DAY)
    wait_exit(proc, log, 240)
    trends = values(read_topic(bs, "news.trends", timeout_s=30))
    want = scored_per_topic(bs, n)
    got, changed = newest_totals(trends)
    late = sum(t["late"] for t in trends)
    assert late == 0 and changed == 0
    assert got == want, f"late={late}"
    assert sum(want.values()) > 0.9 * n  # the rest are dead letters


def test_kill_9_mid_stream_never_shrinks_a_window(
    kafka_broker: Broker, tiny_artifact: Path, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    replay(bs, SPIKE_DAY)
    n = sum(1 for line in SPIKE_DAY.read_text().splitlines() if line.strip())
    port = free_port()
    args = consume_args(bs, tiny_artifact, "--metrics-host", "127.0.0.1", "--batch-max-messages", "32")
    # A run killed mid-stream (after 1,500 of the ~6,000 trend records the tiny model's topics make),
    # then a last run that ends when idle. (Several kills: the slow chaos test; each restart waits
    # out the dead member's session, ~20 s here.)
    for i, target in enumerate((1500,)):
        proc = start_consume(tmp_path / f"run{i}.log", *args, "--metrics-port", str(port))
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and trend_records(port) < target:
                time.sleep(0.02)
            assert trend_records(port) >= target, "the aggregate stage made no progress"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    last = tmp_path / "last.log"
    wait_exit(start_consume(last, *args, "--metrics-port", "0", "--exit-when-idle", "5"), last, 240)
    trends = values(read_topic(bs, "news.trends", timeout_s=30))
    got, changed = newest_totals(trends)
    assert changed == 0
    assert got == scored_per_topic(bs, n)
    assert "resumes from" in last.read_text()


@pytest.mark.slow
def test_chaos_backlog_kills_and_broker_freezes_end_with_exact_totals(
    kafka_broker: Broker, tiny_artifact: Path, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    feed = shifted_days(tmp_path, 4)
    n = sum(1 for _ in feed.open())
    assert n >= 20_000
    replay(bs, feed)
    rnd = random.Random(8)
    port = free_port()
    args = consume_args(bs, tiny_artifact, "--metrics-host", "127.0.0.1", "--metrics-port", str(port))
    events = ["kill"] * 5 + ["freeze"] * 2
    rnd.shuffle(events)
    proc = start_consume(tmp_path / "run0.log", *args)
    try:
        for i, what in enumerate(events, start=1):
            time.sleep(rnd.uniform(4, 12))
            if what == "kill":
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                proc = start_consume(tmp_path / f"run{i}.log", *args)
            else:
                os.kill(kafka_broker.proc.pid, signal.SIGSTOP)
                time.sleep(rnd.uniform(2, 6))
                os.kill(kafka_broker.proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = tmp_path / "last.log"
    wait_exit(start_consume(last, *args[:-2], "--metrics-port", "0", "--exit-when-idle", "10"), last, 900)
    trends = values(read_topic(bs, "news.trends", timeout_s=120))
    got, changed = newest_totals(trends)
    want = scored_per_topic(bs, n)
    assert sum(want.values()) > 0.9 * n
    assert changed == 0
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["backlog", "concurrent"])
def test_catch_up_at_scale(kafka_broker: Broker, corpus_artifact: Path, tmp_path: Path, mode: str) -> None:
    """The figures in README "Running the daemon": four day-shifted copies of each test feed."""
    bs = kafka_broker.bootstrap
    feed = shifted_days(tmp_path, 4)
    n = sum(1 for _ in feed.open())
    log = tmp_path / "consume.log"
    args = consume_args(bs, corpus_artifact, "--metrics-port", "0", "--exit-when-idle", "40")
    if mode == "backlog":
        replay(bs, feed)
        proc = start_consume(log, *args)
    else:
        proc = start_consume(log, *args)
        replay(bs, feed)
    wait_exit(proc, log, 1200)
    trends = values(read_topic(bs, "news.trends", timeout_s=120))
    got, changed = newest_totals(trends)
    want = scored_per_topic(bs, n)
    late = sum(t["late"] for t in trends)
    spikes = sorted(
        {(t["topic"], t["window_start"][:10]) for t in trends if t["spike_transition"] == "enter"}
    )
    print(
        f"{mode}: {n} inputs, {sum(want.values())} scored, late {late}, windows {sum(got.values())}, {spikes}"
    )
    assert late == 0 and changed == 0
    assert got == want and sum(want.values()) == n
    planted = json.loads((FEEDS / "spike_day.meta.json").read_text())["topic"]
    assert len(spikes) == 4 and {t for t, _ in spikes} == {planted}
