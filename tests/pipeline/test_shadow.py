"""Shadow scoring: the comparison and the rate limit (pure), the worker over two real models, and the
daemon with --shadow-model on a real broker."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from models.runtime import Prediction, load_scorer
from pipeline.metrics import Metrics
from pipeline.rate_limit import TokenBucket
from pipeline.records import NewsItem, Origin
from pipeline.scoring import score_batch
from pipeline.shadow import ShadowScorer, compare
from tests.support.broker import Broker, free_port, read_topic, values
from tests.support.daemon_procs import finsent, sample, scrape, start_consume, write_feed
from tests.support.toy_artifact import good_rows, toy_version


def _pred(topic: str, sentiment: str) -> Prediction:
    probs = {"negative": 0.1, "neutral": 0.1, "positive": 0.1}
    probs[sentiment] = 0.8
    return Prediction(topic, 0.9, sentiment, probs, probs["positive"] - probs["negative"])


def _items(texts: list[str], first_offset: int = 0) -> list[NewsItem]:
    return [
        NewsItem(f"id{first_offset + i}", t, 0, None, None, (), Origin("news.raw", 0, first_offset + i))
        for i, t in enumerate(texts)
    ]


class _Fixed:
    """The serving side of a comparison: scores with given predictions (only to build records)."""

    version = "serving"

    def __init__(self, preds: list[Prediction]) -> None:
        self.preds = preds

    def score(self, texts: list[str]) -> list[Prediction]:
        return self.preds[: len(texts)]


def test_compare_counts_agreement_and_flips_per_head() -> None:
    served, _ = score_batch(
        _items(["a", "b", "c"]),
        _Fixed([_pred("Oil", "negative"), _pred("Oil", "neutral"), _pred("Macro", "positive")]),
        now_ms=0,
    )
    shadow = [_pred("Oil", "negative"), _pred("Macro", "neutral"), _pred("Macro", "negative")]
    cmp = compare(served, shadow)
    assert cmp.agree == {"topic": 2, "sentiment": 2}
    assert cmp.flips == {("topic", "Oil", "Macro"): 1, ("sentiment", "positive", "negative"): 1}
    assert cmp.disagreeing == [1, 2]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.25) is False  # half a token
    assert bucket.allow(0.5) is True
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]  # capped at the burst
    assert bucket.allow(50.0) is False  # time going back adds nothing
    with pytest.raises(ValueError):
        TokenBucket(1.0, 0, now=0.0)


TEXTS = [
    "oil falls",
    "profit beats quarter",
    "jobs rates rises",
    "inflation falls",
    "crude refinery misses",
    "quarter profit rises",
] * 5


def test_the_worker_compares_with_the_real_candidate_skips_when_behind_and_samples_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    serving = load_scorer(toy_version(tmp_path, "v1"), provider="cpu")
    candidate = load_scorer(toy_version(tmp_path, "v2", seed=7), provider="cpu")
    reg = CollectorRegistry()
    published: list = []
    now = [0.0]
    worker = ShadowScorer(
        candidate, Metrics(reg), "news.shadow", published.extend, sample_per_s=3, clock=lambda: now[0],
        queue_batches=2,
    )  # fmt: skip
    batches = [score_batch(_items(TEXTS, k * 100), serving, now_ms=0)[0] for k in range(3)]
    assert worker.offer(batches[0]) and worker.offer(batches[1])
    assert not worker.offer(batches[2])  # the queue holds two: the third is skipped, not waited for
    worker.start()
    worker.close()
    g = reg.get_sample_value
    assert g("finsent_shadow_messages_total", {"outcome": "skipped"}) == len(TEXTS)
    assert g("finsent_shadow_messages_total", {"outcome": "compared"}) == 2 * len(TEXTS)

    want = compare(batches[0], candidate.score(TEXTS))  # the candidate, scored here directly
    assert want.flips, "the two toy models should disagree somewhere"
    for head in ("topic", "sentiment"):
        assert g("finsent_shadow_agreements_total", {"head": head}) == 2 * want.agree[head]
    for (head, a, b), n in want.flips.items():
        assert g("finsent_shadow_flips_total", {"head": head, "serving": a, "shadow": b}) == 2 * n
    # the clock stood still: the burst (3) is all that went out
    assert len(published) == 3 == g("finsent_shadow_samples_total")
    for out in published:
        rec = json.loads(out.value)
        assert out.topic == "news.shadow" and out.key == rec["id"].encode()
        (p,) = candidate.score([rec["text"]])
        assert rec["shadow"] == {
            **rec["shadow"],
            "model_version": "v2",
            "topic": p.topic,
            "sentiment": p.sentiment,
        }
        assert rec["serving"]["model_version"] == "v1"
        assert rec["disagree"] and all(rec["serving"][h] != rec["shadow"][h] for h in rec["disagree"])


@pytest.mark.integration
def test_the_daemon_shadows_a_candidate_without_touching_its_output(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    serving = toy_version(tmp_path, "v1")
    candidate = toy_version(tmp_path, "v2", seed=7)
    n = 400
    feed = write_feed(tmp_path / "feed.jsonl", good_rows(n))
    assert finsent("replay", str(feed), "--bootstrap-servers", bs).returncode == 0
    port = free_port()
    log = tmp_path / "consume.log"
    proc = start_consume(
        log, "--bootstrap-servers", bs, "--model", str(serving), "--provider", "cpu",
        "--shadow-model", str(candidate), "--shadow-sample-per-s", "1000",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--exit-when-idle", "5",
    )  # fmt: skip
    try:
        text = ""
        offered = 0.0
        deadline = time.monotonic() + 90
        while offered < n and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                text = scrape(port)
                offered = sum(
                    sample(text, "finsent_shadow_messages_total", outcome=o) or 0
                    for o in ("compared", "skipped")
                )
            time.sleep(0.1)
        # "compared" counts a batch before its disagreement samples are published and counted: scrape
        # once more after the last batch's publish (the daemon idles 5 s before it exits).
        time.sleep(1.0)
        with contextlib.suppress(OSError):
            text = scrape(port)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    compared = sample(text, "finsent_shadow_messages_total", outcome="compared") or 0
    skipped = sample(text, "finsent_shadow_messages_total", outcome="skipped") or 0
    assert compared + skipped == n and compared > 0
    assert sample(text, "finsent_shadow_model_info", version="v2", provider="cpu", variant="fp32") == 1
    for head in ("topic", "sentiment"):
        agree = sample(text, "finsent_shadow_agreements_total", head=head) or 0
        flips = sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("finsent_shadow_flips_total{") and f'head="{head}"' in line
        )
        assert agree + flips == compared, head
    scored = values(read_topic(bs, "news.scored", done=lambda r: len(r) >= n))
    assert sorted(r["id"] for r in scored) == sorted(f"g{i}" for i in range(n))
    assert {r["model_version"] for r in scored} == {"v1"}  # the shadow never serves
    shadow = values(read_topic(bs, "news.shadow", timeout_s=20))
    assert len(shadow) == sample(text, "finsent_shadow_samples_total") and shadow
    by_id = {r["id"]: r for r in scored}
    for rec in shadow:
        served = by_id[rec["id"]]
        assert (rec["serving"]["topic"], rec["serving"]["sentiment"]) == (
            served["topic"],
            served["sentiment"],
        )
        assert any(rec["serving"][h] != rec["shadow"][h] for h in ("topic", "sentiment"))
