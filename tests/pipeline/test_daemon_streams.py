"""The recorded spike day through the real daemon on a real broker, compared with `--direct`.

(1) one daemon: the planted topic, and only it, spikes; trend counts equal the direct run's;
    every input id is scored or dead-lettered exactly once.
(2) two daemons in one group: totals exact, no window counted by both.
(3) SIGKILL mid-stream and restart: every input id ends up scored or dead-lettered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import consume_args, finsent, sample, scrape, start_consume, wait_for_log

FEEDS = Path(__file__).resolve().parents[1] / "feeds"
SPIKE_DAY = FEEDS / "spike_day.jsonl"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SPIKE_DAY.exists(), reason="tests/feeds/spike_day.jsonl not present"),
]


def feed_ids() -> list[str]:
    return [json.loads(line)["id"] for line in SPIKE_DAY.read_text().splitlines() if line.strip()]


def planted_topic() -> str:
    return json.loads((FEEDS / "spike_day.meta.json").read_text())["topic"]


def run_direct(model: Path, out_dir: Path) -> list[dict]:
    """The reference: `finsent replay --direct` over the same file with the same model and variant."""
    out_path = out_dir / "trends.jsonl"
    out = finsent(
        "replay", str(SPIKE_DAY), "--direct", "--model", str(model), "--variant", "fp32",
        "--provider", "cpu", "--out", str(out_path), timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def direct(corpus_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return run_direct(corpus_artifact, tmp_path_factory.mktemp("direct"))


@pytest.fixture(scope="module")
def direct_tiny(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return run_direct(tiny_artifact, tmp_path_factory.mktemp("direct-tiny"))


def window_counts(trends: list[dict]) -> dict[tuple[str, str, int], dict[str, int]]:
    """(key type, topic or ticker, window start) -> sentiment counts, for windows that held messages."""
    out: dict[tuple[str, str, int], dict[str, int]] = {}
    for t in trends:
        if t["total"]:
            key = (t["key_type"], t["key"], t["window_start_ms"])
            assert key not in out, f"window {key} emitted twice"
            out[key] = t["counts"]
    return out


def replay(bs: str) -> None:
    out = finsent("replay", str(SPIKE_DAY), "--bootstrap-servers", bs, "--topic", "news.raw", timeout=120)
    assert out.returncode == 0, out.stderr


def read_outputs(bs: str, n_inputs: int) -> tuple[list[dict], list[dict]]:
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= n_inputs, timeout_s=60))
    dlq = values(read_topic(bs, "news.dlq", timeout_s=20))
    return scored, dlq


# The default scores the next micro-batch while the last one is published; --no-overlap does one
# batch at a time. Both must give the direct run's windows and account for every input once.
@pytest.mark.parametrize("overlap", [[], ["--no-overlap"]], ids=["overlapped", "one-at-a-time"])
def test_spike_day_through_the_daemon_matches_direct(
    kafka_broker: Broker, corpus_artifact: Path, direct: list[dict], tmp_path: Path, overlap: list[str]
) -> None:
    bs = kafka_broker.bootstrap
    replay(bs)
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, *consume_args(bs, corpus_artifact, "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                           "--exit-when-idle", "5", *overlap),
    )  # fmt: skip
    try:
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    ids = feed_ids()
    trends = values(read_topic(bs, "news.trends", timeout_s=30))
    tickers = values(read_topic(bs, "news.trends.tickers", timeout_s=30))
    assert tickers and all(t["key_type"] == "ticker" for t in tickers)
    got, want = window_counts(trends + tickers), window_counts(direct)
    assert got == want  # topic and ticker windows alike
    assert sum(t["late"] for t in trends + tickers) == 0
    spiking = {t["topic"] for t in trends if t["spike_active"]}
    assert (
        spiking
        == {planted_topic()}
        == {t["key"] for t in direct if t["spike_active"] and t["key_type"] == "topic"}
    )
    scored, dlq = read_outputs(bs, len(ids))
    assert {r["id"] for r in scored} | {d["id"] for d in dlq} == set(ids)  # everything accounted for ...
    assert not {r["id"] for r in scored} & {d["id"] for d in dlq}  # ... in one place only ...
    verdicts: dict[str, set[tuple[str, str]]] = {}
    for r in scored:
        verdicts.setdefault(r["id"], set()).add((r["topic"], r["sentiment"]))
    assert all(len(v) == 1 for v in verdicts.values())  # ... so dedup by id keeps exactly one verdict
    assert sum(sum(c.values()) for k, c in got.items() if k[0] == "topic") == len({r["id"] for r in scored})


def test_two_daemons_in_one_group_count_every_message_once(
    kafka_broker: Broker, tiny_artifact: Path, direct_tiny: list[dict], tmp_path: Path
) -> None:
    # Counting, not classification, is under test: the tiny model is enough and much faster.
    direct = direct_tiny
    bs = kafka_broker.bootstrap
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # The feed starts only once both members hold partitions in both groups (below), and the idle
    # clock restarts at each assignment and pauses while partitions are revoked: the limit only has
    # to outlast gaps in a running feed, and each member waits it out once at the end.
    args = consume_args(bs, tiny_artifact, "--metrics-port", "0", "--exit-when-idle", "12")
    procs = [start_consume(logs[0], *args)]
    try:
        wait_for_log(logs[0], "aggregate stage: partitions assigned", timeout=90)
        procs.append(start_consume(logs[1], *args))
        # Both members of both groups hold partitions before the feed starts.
        wait_for_log(logs[1], "score stage: partitions assigned", timeout=90)
        wait_for_log(logs[1], "aggregate stage: partitions assigned", timeout=90)
        wait_for_log(logs[0], "score stage: partitions assigned", timeout=90, count=2)
        wait_for_log(logs[0], "aggregate stage: partitions assigned", timeout=90, count=2)
        replay(bs)
        for p, log in zip(procs, logs, strict=True):
            assert p.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for log in logs:  # each member scored part of the feed
        assert "score stage: idle" in log.read_text()
    trends = values(read_topic(bs, "news.trends", timeout_s=30))
    trends += values(read_topic(bs, "news.trends.tickers", timeout_s=30))  # tickers re-keyed: one owner each
    got, want = window_counts(trends), window_counts(direct)
    per_topic_got: Counter[tuple[str, str]] = Counter()
    per_topic_want: Counter[tuple[str, str]] = Counter()
    for (kind, key, _), counts in got.items():
        per_topic_got[kind, key] += sum(counts.values())
    for (kind, key, _), counts in want.items():
        per_topic_want[kind, key] += sum(counts.values())
    (tmp_path / "trends.json").write_text(json.dumps(trends))  # for a post-mortem when this fails
    late = sum(t["late"] for t in trends)
    assert per_topic_got == per_topic_want, f"late={late}"  # totals exact, no double counting
    assert got == want


def test_sigkill_mid_stream_then_restart_loses_nothing(
    kafka_broker: Broker, tiny_artifact: Path, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    replay(bs)
    ids = feed_ids()
    port = free_port()
    args = consume_args(bs, tiny_artifact, "--metrics-host", "127.0.0.1", "--batch-max-messages", "32")
    first = start_consume(tmp_path / "first.log", *args, "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 180
        handled = 0.0
        while time.monotonic() < deadline and handled < 400:
            with contextlib.suppress(OSError):
                text = scrape(port)
                handled = (sample(text, "finsent_messages_total", outcome="scored") or 0) + (
                    sample(text, "finsent_messages_total", outcome="dlq") or 0
                )
            time.sleep(0.1)
        assert 400 <= handled < len(ids), f"could not catch the daemon mid-stream ({handled} handled)"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    second = start_consume(tmp_path / "second.log", *args, "--metrics-port", "0", "--exit-when-idle", "5")
    try:
        assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    scored, dlq = read_outputs(bs, len(ids))
    assert {r["id"] for r in scored} | {d["id"] for d in dlq} == set(ids)
