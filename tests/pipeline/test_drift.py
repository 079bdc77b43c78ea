"""Confidence and drift: PSI and the sliding mix (pure), the manifest's reference (torch-free reader,
and what training writes), the monitor's metrics, and the alert threshold agreeing with the code."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from devstack import monitoring as mon
from models.artifact import label_distribution, load_artifact
from models.runtime import load_scorer
from pipeline.drift import MIN_MESSAGES, PSI_ALERT, SlidingMix, drift, psi
from pipeline.metrics import Metrics
from pipeline.model_monitor import ModelMonitor
from pipeline.records import NewsItem, Origin
from pipeline.scoring import score_batch
from tests.support.toy_artifact import SENTIMENTS, toy_version

REF = {
    "topic": {"Energy | Oil": 0.5, "Earnings": 0.3, "Macro": 0.2},
    "sentiment": dict.fromkeys(SENTIMENTS, 1 / 3),
}


def test_psi_is_zero_for_the_same_mix_and_matches_the_formula_for_a_shift() -> None:
    assert psi(REF["topic"], {"Energy | Oil": 5000, "Earnings": 3000, "Macro": 2000}) == pytest.approx(
        0, abs=1e-4
    )
    counts = {"Energy | Oil": 200, "Earnings": 300, "Macro": 500}
    by_hand = sum(
        (live - ref) * math.log(live / ref)
        for live, ref in (
            ((200 + 0.5) / 1001.5, 0.5),
            ((300 + 0.5) / 1001.5, 0.3),
            ((500 + 0.5) / 1001.5, 0.2),
        )
    )
    assert psi(REF["topic"], counts) == pytest.approx(by_hand, rel=1e-9)
    assert by_hand > PSI_ALERT  # half the mix moved: significant
    # a moderate wobble stays well under the mark
    assert psi(REF["topic"], {"Energy | Oil": 470, "Earnings": 320, "Macro": 210}) < 0.1


def test_psi_handles_a_class_missing_on_either_side() -> None:
    vanished = psi(REF["topic"], {"Energy | Oil": 600, "Earnings": 400})
    assert math.isfinite(vanished) and vanished > PSI_ALERT
    new_label = psi(REF["topic"], {"Energy | Oil": 500, "Earnings": 300, "Macro": 100, "Crypto": 100})
    assert math.isfinite(new_label) and new_label > 0


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(SENTIMENTS)), max_size=60), st.integers(1, 20)
)
def test_sliding_mix_counts_exactly_the_last_window_predictions(pairs: list, window: int) -> None:
    mix = SlidingMix(window)
    for i in range(0, len(pairs), 7):  # batches of 7
        mix.add(pairs[i : i + 7])
    last = pairs[-window:] if pairs else []
    assert len(mix) == len(last) and mix.full() == (len(pairs) >= window)
    assert mix.counts["topic"] == Counter(t for t, _ in last)
    assert mix.counts["sentiment"] == Counter(s for _, s in last)


def test_drift_is_unavailable_without_a_reference_or_before_enough_predictions() -> None:
    mix = SlidingMix(3)
    mix.add([("Macro", "negative")] * 2)
    assert drift(REF, mix) is None  # a window smaller than MIN_MESSAGES counts once full
    mix.add([("Macro", "negative")])
    got = drift(REF, mix)
    assert got is not None and got["topic"] > PSI_ALERT and got["sentiment"] > PSI_ALERT
    assert drift(None, mix) is None
    big = SlidingMix(2000)
    big.add([("Macro", "negative")] * (MIN_MESSAGES - 1))
    assert drift(REF, big) is None
    big.add([("Macro", "negative")])
    assert drift(REF, big) is not None  # reported from MIN_MESSAGES on, before the window is full


def test_an_unchanged_mix_stays_far_under_the_alert_at_min_messages() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    topics = [f"t{i}" for i in range(20)]
    ref = {"topic": dict.fromkeys(topics, 1 / 20), "sentiment": dict.fromkeys(SENTIMENTS, 1 / 3)}
    worst = 0.0
    for _ in range(50):  # samples of the reference mix itself
        mix = SlidingMix(2000)
        mix.add(zip(rng.choice(topics, MIN_MESSAGES), rng.choice(SENTIMENTS, MIN_MESSAGES), strict=True))
        got = drift(ref, mix)
        assert got is not None
        worst = max(worst, got["topic"])
    assert worst < PSI_ALERT / 2


def test_manifest_reader_accepts_the_written_shape_and_tolerates_old_or_broken_ones() -> None:
    assert label_distribution({"label_distribution": REF}) == REF
    assert label_distribution({}) is None  # an artifact older than the field
    for broken in (
        {"topic": REF["topic"]},
        {"topic": {"a": "x"}, "sentiment": REF["sentiment"]},
        {"topic": {"a": float("nan")}, "sentiment": REF["sentiment"]},
        {"topic": {"a": 0.0}, "sentiment": REF["sentiment"]},
        [1, 2],
    ):
        assert label_distribution({"label_distribution": broken}) is None, broken


def _items(texts: list[str]) -> list[NewsItem]:
    return [NewsItem(f"id{i}", t, 0, None, None, (), Origin("news.raw", 0, i)) for i, t in enumerate(texts)]


def test_monitor_exports_confidence_and_psi_and_resets_on_a_new_model(tmp_path: Path) -> None:
    old = load_scorer(toy_version(tmp_path, "old"), provider="cpu")  # no label_distribution
    new = load_scorer(toy_version(tmp_path, "new", label_distribution=REF), provider="cpu")
    reg = CollectorRegistry()
    monitor = ModelMonitor(Metrics(reg), window=20, scorer=old)
    g = reg.get_sample_value
    scored, _ = score_batch(
        _items(["oil falls", "profit beats quarter", "jobs rates rises"] * 10), old, now_ms=0
    )
    monitor.observe(scored)
    assert g("finsent_drift_reference_available") == 0
    assert g("finsent_drift_psi", {"head": "topic"}) is None  # unavailable: no series, no crash
    assert g("finsent_prediction_confidence_count", {"head": "topic"}) == 30
    top = [r.topic_confidence for r in scored]
    assert g("finsent_prediction_confidence_sum", {"head": "topic"}) == pytest.approx(sum(top))
    sent = [max(r.sentiment_probs.values()) for r in scored]
    assert g("finsent_prediction_confidence_sum", {"head": "sentiment"}) == pytest.approx(sum(sent))
    assert g("finsent_prediction_confidence_bucket", {"head": "sentiment", "le": "0.2"}) == 0  # >= 1/3 always

    monitor.set_model(new)
    assert g("finsent_drift_reference_available") == 1
    first, _ = score_batch(_items(["oil falls"] * 19), new, now_ms=0)
    monitor.observe(first)
    assert g("finsent_drift_psi", {"head": "topic"}) is None  # 19 of a window of 20: not yet
    second, _ = score_batch(_items(["oil falls", "profit beats quarter"]), new, now_ms=0)
    monitor.observe(second)
    # the window: the last 18 of the first batch (the oldest one fell out) and the second batch
    window = first[1:] + second
    for head, of in (("topic", lambda r: r.topic), ("sentiment", lambda r: r.sentiment)):
        want = psi(REF[head], Counter(of(r) for r in window))
        assert g("finsent_drift_psi", {"head": head}) == pytest.approx(want)


def test_the_alert_fires_above_the_threshold_the_code_names() -> None:
    doc = yaml.safe_load((mon.RULES_DIR / "model-alerts.yml").read_text(encoding="utf-8"))
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "ModelDriftSuspected"]
    assert rule["expr"].strip().endswith(f"> {PSI_ALERT}")
    assert f"alert above {PSI_ALERT}" in rule["annotations"]["description"]


def test_training_writes_the_models_validation_mix_into_the_manifest(tiny_artifact: Path) -> None:
    art = load_artifact(tiny_artifact)
    dist = art.label_distribution
    assert dist is not None
    heads = json.loads((tiny_artifact / "metrics.json").read_text())["heads"]
    for head, labels in (("topic", art.topic_labels), ("sentiment", art.sentiment_labels)):
        assert set(dist[head]) == set(labels)  # the manifest is written with sorted keys
        assert sum(dist[head].values()) == pytest.approx(1.0)
        cm = heads[head]["confusion"]
        predicted = [sum(row[j] for row in cm) for j in range(len(labels))]
        assert [dist[head][label] for label in labels] == pytest.approx(
            [n / sum(predicted) for n in predicted]
        )


def test_the_dashboard_draws_the_alert_threshold_on_the_drift_panel() -> None:
    dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if "finsent_drift_psi" in json.dumps(p.get("targets", []))]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, PSI_ALERT]
