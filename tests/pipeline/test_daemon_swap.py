"""Model swaps in the real daemon on a real broker: a feed replayed, `artifacts/latest` re-pointed
mid-stream (to a good model, a model with other topics, a corrupt one later repaired and re-read
on SIGHUP). Every input is scored exactly once, and in each input partition the model version
changes at one offset per swap.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import finsent, sample, scrape, start_consume, wait_metric, write_feed
from tests.support.toy_artifact import OTHER_TOPICS, corrupt, good_rows, point_latest, toy_version

pytestmark = pytest.mark.integration


def swaps(text: str, outcome: str) -> float:
    return sample(text, "finsent_model_swaps_total", outcome=outcome) or 0


def scored(text: str) -> float:
    return sample(text, "finsent_messages_total", outcome="scored") or 0


def test_swaps_mid_stream_lose_nothing_score_nothing_twice_and_change_at_one_offset(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    root = tmp_path / "artifacts"
    root.mkdir()
    for version, seed in (("v1", 0), ("v2", 1), ("v3", 3)):
        toy_version(root, version, seed=seed)
    toy_version(root, "v4", seed=4, topics=OTHER_TOPICS)
    good_v3 = tmp_path / "v3-model.onnx"
    shutil.copy(root / "v3" / "model.onnx", good_v3)
    bad_file = corrupt(root / "v3")
    latest = point_latest(root, "v1")

    n_a, n_b = 3000, 300
    feed_a = write_feed(tmp_path / "a.jsonl", good_rows(n_a, "a"))
    assert finsent("replay", str(feed_a), "--bootstrap-servers", bs).returncode == 0
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(latest), "--provider", "cpu",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--batch-max-messages", "8",
        "--model-check-interval", "0.5",
    )  # fmt: skip
    try:
        wait_metric(port, lambda t: scored(t) >= 300, "300 scored", log, timeout=90)
        point_latest(root, "v2")  # picked up by the periodic check
        text = wait_metric(port, lambda t: swaps(t, "swapped") == 1, "swap to v2", log)
        assert scored(text) < n_a, "the swap should have happened mid-stream"

        point_latest(root, "v4")  # other topic labels: refused, v2 keeps serving
        wait_metric(port, lambda t: swaps(t, "refused_labels") == 1, "labels refusal", log)
        point_latest(root, "v3")  # corrupt: refused with the file named
        wait_metric(port, lambda t: swaps(t, "refused_invalid") == 1, "corrupt refusal", log)
        refusal = [line for line in log.read_text().splitlines() if "model reload refused" in line]
        assert len(refusal) == 2 and str(bad_file.resolve()) in refusal[1], refusal
        assert "checksum mismatch" in refusal[1] and "still serving version v2" in refusal[1]

        shutil.copy(good_v3, root / "v3" / "model.onnx")  # the copy completes...
        time.sleep(2)  # ...the periodic check does not retry a refused target on its own
        assert swaps(scrape(port), "swapped") == 1
        proc.send_signal(signal.SIGHUP)  # the operator asks
        wait_metric(port, lambda t: swaps(t, "swapped") == 2, "swap to v3 on SIGHUP", log)

        feed_b = write_feed(tmp_path / "b.jsonl", good_rows(n_b, "b"))
        assert finsent("replay", str(feed_b), "--bootstrap-servers", bs).returncode == 0
        text = wait_metric(port, lambda t: scored(t) == n_a + n_b, "every input scored", log, timeout=90)
        assert sample(text, "finsent_model_info", version="v3", provider="cpu", variant="fp32") == 1
        assert text.count("finsent_model_info{") == 1  # one series: the model serving now
        assert swaps(text, "swapped") == 2 and swaps(text, "refused_labels") == 1
        assert swaps(text, "refused_invalid") == 1
        assert sample(text, "finsent_messages_total", outcome="dlq") in (None, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()

    out = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= n_a + n_b, timeout_s=60))
    ids = [r["id"] for r in out]
    assert sorted(ids) == sorted([f"a{i}" for i in range(n_a)] + [f"b{i}" for i in range(n_b)])
    rank = {"v1": 0, "v2": 1, "v3": 2}
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for r in out:
        assert r["model_version"] in rank, r  # v4 never scored anything
        by_partition.setdefault(r["input"]["partition"], []).append(
            (r["input"]["offset"], r["model_version"])
        )
    seen = set()
    for part, rows in by_partition.items():
        versions = [v for _off, v in sorted(rows)]
        # one contiguous run per version, in swap order: the version changes at one offset per swap
        assert versions == sorted(versions, key=rank.__getitem__), f"partition {part}"
        seen.update(versions)
    assert seen == {"v1", "v2", "v3"}
    assert {r["model_version"] for r in out if r["id"].startswith("b")} == {"v3"}
