"""The whole model life cycle on a tiny model and a real broker, end to end:

serve v1 -> unsure messages reach news.review -> `finsent review export` -> a person labels them
(here: the generator's truth) -> `finsent retrain` (merge, train, gate on a frozen set) -> latest
re-pointed -> the running daemon swaps to v2 by itself -> new messages are scored by v2.
"""

from __future__ import annotations

import csv
import json
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact
from pipeline.records import iso_utc
from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import finsent, sample, start_consume, wait_metric, write_feed
from tests.support.tiny_models import TinyVocabulary, build_base_model, write_csv

pytestmark = pytest.mark.integration

TOPICS = ("Energy | Oil", "Earnings", "Macro")
T0_MS = 1_772_445_600_000
TRAIN_ARGS = [
    "--topics", "data", "--max-length", "32", "--valid-fraction", "0.3", "--lr", "3e-3", "--head-lr",
    "3e-3", "--batch-size", "16", "--threads", "1", "--seed", "0", "--train-embeddings", "--no-progress",
]  # fmt: skip


def _feed(
    vocab: TinyVocabulary, n: int, seed: int, prefix: str
) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(n):
        topic, sentiment = TOPICS[i % 3], vocab.sentiments[(i // 3) % 3]
        text = vocab.headline(topic, sentiment, rng)
        rows.append({"id": f"{prefix}{i}", "headline": text, "published_at": iso_utc(T0_MS + i * 1000)})
        truth[text] = (topic, sentiment)
    return rows, truth


# Longer than the default: the first scrape waits for the tiny model's training and the swap for a retrain.
_wait = partial(wait_metric, timeout=120, poll_s=0.2)


def test_serve_review_label_retrain_gate_and_swap(kafka_broker: Broker, tmp_path: Path) -> None:
    bs = kafka_broker.bootstrap
    vocab = TinyVocabulary(TOPICS, seed=0)
    train_rows = vocab.rows(per_topic=60, seed=0)
    train_csv = write_csv(tmp_path / "train.csv", train_rows)
    frozen = write_csv(tmp_path / "frozen_eval.csv", vocab.rows(per_topic=30, seed=99))
    base = build_base_model(
        tmp_path / "base",
        (r["text"] for r in train_rows),
        vocab_size=300,
        hidden=64,
        layers=2,
        heads=2,
        seed=0,
    )
    root = tmp_path / "artifacts"
    v1 = finsent(
        "train", "--data", str(train_csv), "--out", str(root), "--base-model", str(base), "--epochs", "6",
        *TRAIN_ARGS, timeout=600,
    )  # fmt: skip
    assert v1.returncode == 0, v1.stderr[-3000:]
    v1_version = load_artifact(root / "latest").version

    rows, truth = _feed(vocab, 90, seed=5, prefix="a")
    assert (
        finsent("replay", str(write_feed(tmp_path / "a.jsonl", rows)), "--bootstrap-servers", bs).returncode
        == 0
    )
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(root / "latest"), "--provider", "cpu",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--model-check-interval", "1",
        "--review-min-confidence", "0.95", "--review-per-s", "1000",
    )  # fmt: skip
    try:
        _wait(
            port,
            lambda t: (sample(t, "finsent_messages_total", outcome="scored") or 0) == 90,
            "90 scored",
            log,
        )
        reviewed = values(read_topic(bs, "news.review", done=lambda r: len(r) > 0))
        assert reviewed and all(r["model_version"] == v1_version for r in reviewed)

        to_label = tmp_path / "to_label.csv"
        out = finsent("review", "export", "--bootstrap-servers", bs, "--out", str(to_label))
        assert out.returncode == 0, out.stderr
        with open(to_label, newline="", encoding="utf-8") as fh:
            exported = list(csv.DictReader(fh))
        assert len(exported) == len({r["story"] for r in reviewed})
        for row in exported:  # the labeller: here, the generator's truth
            row["topic"], row["sentiment"] = truth[row["text"]]
        labelled = tmp_path / "labelled.csv"
        with open(labelled, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(exported[0]))
            writer.writeheader()
            writer.writerows(exported)

        # the gate's own logic is tested in test_promote; a wide margin keeps this test about the loop
        retrain = finsent(
            "retrain", "--data", str(train_csv), "--reviewed", str(labelled), "--eval", str(frozen),
            "--root", str(root), "--margin", "0.3", "--", "--base-model", str(base), "--epochs", "6",
            *TRAIN_ARGS, timeout=600,
        )  # fmt: skip
        assert retrain.returncode == 0, retrain.stderr[-3000:]
        assert f"+ {len(exported)} reviewed" in retrain.stderr and "promoted:" in retrain.stderr
        v2 = load_artifact(root / "latest")
        assert v2.version != v1_version
        report = json.loads((v2.path / "gate.json").read_text())
        assert report["passed"] and report["current"]["version"] == v1_version
        assert report["eval_set"]["rows"] == 90

        _wait(
            port, lambda t: (sample(t, "finsent_model_swaps_total", outcome="swapped") or 0) == 1, "swap", log
        )
        more, _ = _feed(vocab, 30, seed=6, prefix="b")
        assert (
            finsent(
                "replay", str(write_feed(tmp_path / "b.jsonl", more)), "--bootstrap-servers", bs
            ).returncode
            == 0
        )
        text = _wait(
            port,
            lambda t: (sample(t, "finsent_messages_total", outcome="scored") or 0) == 120,
            "120 scored",
            log,
        )
        assert sample(text, "finsent_model_info", version=v2.version, provider="cpu", variant="int8") == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= 120))
    assert sorted(r["id"] for r in scored) == sorted(
        [f"a{i}" for i in range(90)] + [f"b{i}" for i in range(30)]
    )
    assert {r["model_version"] for r in scored if r["id"].startswith("a")} == {v1_version}
    assert {r["model_version"] for r in scored if r["id"].startswith("b")} == {v2.version}
