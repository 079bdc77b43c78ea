"""The daemon's Prometheus metrics, on a registry passed in (tests get a fresh one each).

Names are the agreed contract with the alert rules and dashboards (README "Metrics"); change them
only together. Units are in the names: `*_seconds`, `*_messages`, `*_total` for counters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from models.errors import ConfigError
from pipeline import http_api
from pipeline.alert_feed import AlertFeed
from pipeline.model_swap import OUTCOMES as SWAP_OUTCOMES

log = logging.getLogger(__name__)

# Messages per batch: powers of two up to well past the default max of 256.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Top-class probability: 1/20 is the floor for 20 topics, 1/3 for sentiment; most mass sits high.
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def exported_tickers(gauges: Mapping[str, Any], top_k: int) -> list[str]:
    """The tickers that get Prometheus series: every one with an active spike, plus the `top_k`
    busiest by recent volume (ties by name, so the choice is stable)."""
    active = sorted(t for t, g in gauges.items() if g.spike_active)
    busiest = sorted((t for t in gauges if t not in active), key=lambda t: (-gauges[t].recent_volume, t))
    return active + busiest[:top_k]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registry = registry
        self.messages = Counter("finsent_messages", "Input messages by outcome", ["outcome"], registry=r)
        self.dlq = Counter("finsent_dlq", "Dead-lettered messages by reason code", ["reason"], registry=r)
        self.batch_size = Histogram(
            "finsent_batch_size", "Messages per scored batch", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_scoring_seconds = Histogram(
            "finsent_batch_scoring_seconds",
            "Tokenize + ONNX Runtime time per batch",
            buckets=SCORING_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "finsent_end_to_end_latency_seconds",
            "Kafka ingest timestamp (or published_at when absent) to scored",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "finsent_consumer_lag_messages",
            "High watermark minus position, per assigned partition",
            ["topic", "partition", "group"],
            registry=r,
        )
        self.scored = Counter(
            "finsent_scored",
            "Scored messages by predicted topic and sentiment",
            ["topic", "sentiment"],
            registry=r,
        )
        self.window_negative_share = Gauge(
            "finsent_window_negative_share", "Last closed window's negative share", ["topic"], registry=r
        )
        self.window_volume = Gauge(
            "finsent_window_volume", "Last closed window's message count", ["topic"], registry=r
        )
        self.baseline_share = Gauge(
            "finsent_negative_baseline_share",
            "Spike detector's rolling baseline negative share",
            ["topic"],
            registry=r,
        )
        self.spike_score = Gauge(
            "finsent_negative_spike_score",
            "Negative-share z-score against the baseline",
            ["topic"],
            registry=r,
        )
        self.spike_active = Gauge(
            "finsent_spike_active",
            "1 while a negative spike is active (after hysteresis)",
            ["topic"],
            registry=r,
        )
        self.late = Counter(
            "finsent_late", "Events later than the allowed lateness, by topic", ["topic"], registry=r
        )
        self.duplicates = Counter("finsent_duplicates", "Duplicate ids skipped by the aggregator", registry=r)
        # An Info metric (exposed as finsent_model_info): one series, whose labels change on a swap.
        self.model_info = Info("finsent_model", "The model now serving (value 1)", registry=r)
        self.model_swaps = Counter(
            "finsent_model_swaps",
            "Model reloads by outcome: swapped, refused_labels, refused_invalid",
            ["outcome"],
            registry=r,
        )
        for outcome in SWAP_OUTCOMES:  # 0 from the start, not absent
            self.model_swaps.labels(outcome=outcome)
        self.confidence = Histogram(
            "finsent_prediction_confidence",
            "Top-class probability per scored message, by head (topic, sentiment)",
            ["head"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.drift_psi = Gauge(
            "finsent_drift_psi",
            "Population stability index of the last drift_window_messages predictions against the "
            "model's validation mix, by head (absent while unavailable)",
            ["head"],
            registry=r,
        )
        self.drift_reference = Gauge(
            "finsent_drift_reference_available",
            "1 when the serving model's manifest has the label distribution drift is measured against",
            registry=r,
        )
        # Shadow scoring (--shadow-model): the candidate's answers on the same batches.
        self.shadow_info = Info("finsent_shadow_model", "The shadow (candidate) model (value 1)", registry=r)
        self.shadow_messages = Counter(
            "finsent_shadow_messages",
            "Scored messages offered to the shadow, by outcome: compared, skipped (it was behind), failed",
            ["outcome"],
            registry=r,
        )
        self.shadow_agree = Counter(
            "finsent_shadow_agreements",
            "Compared messages on which shadow and serving model predict the same class, by head",
            ["head"],
            registry=r,
        )
        self.shadow_flips = Counter(
            "finsent_shadow_flips",
            "Compared messages the shadow classes differently, by head and (serving, shadow) class",
            ["head", "serving", "shadow"],
            registry=r,
        )
        self.shadow_samples = Counter(
            "finsent_shadow_samples", "Disagreements published to the shadow topic", registry=r
        )
        self.review = Counter(
            "finsent_review_records",
            "Messages sent to the review topic, by reason: low_confidence, shadow_disagreement",
            ["reason"],
            registry=r,
        )
        self.provider_fallback = Gauge(
            "finsent_provider_fallback",
            "1 when a GPU was requested or expected but the model runs on the CPU",
            registry=r,
        )
        self.broker_up = Gauge(
            "finsent_broker_up", "1 while the broker answers and the last operation succeeded", registry=r
        )
        self.broker_errors = Counter(
            "finsent_broker_errors", "Failed broker operations and unanswered probes", registry=r
        )
        self._broker_lock = threading.Lock()
        self._ops_ok = False  # no operation yet: 0 until the stages connect
        self._probe_ok = True  # no probe yet (or none running): the operations decide
        self.last_batch = Gauge(
            "finsent_last_batch_timestamp_seconds", "Unix time of the last scored batch", registry=r
        )
        self.commits = Counter("finsent_commits", "Offset commits by stage", ["stage"], registry=r)
        self.trend_records = Counter(
            "finsent_trend_records", "Trend records published (closed windows)", ["topic"], registry=r
        )
        # Tickers: series only for the top K by recent volume plus those spiking (`exported_tickers`),
        # so the label set stays bounded however many names the news mentions.
        self.ticker_negative_share = Gauge(
            "finsent_ticker_negative_share",
            "Last closed window's negative share, per ticker",
            ["ticker"],
            registry=r,
        )
        self.ticker_volume = Gauge(
            "finsent_ticker_volume", "Last closed window's message count, per ticker", ["ticker"], registry=r
        )
        self.ticker_spike_score = Gauge(
            "finsent_ticker_spike_score",
            "Spike score of the ticker's last closed window",
            ["ticker"],
            registry=r,
        )
        self.ticker_spike_active = Gauge(
            "finsent_ticker_spike_active",
            "1 while a negative spike is active for the ticker",
            ["ticker"],
            registry=r,
        )
        self.tickers_tracked = Gauge(
            "finsent_tickers_tracked", "Tickers with detector state in this process (bounded)", registry=r
        )
        self.ticker_trend_records = Counter(
            "finsent_ticker_trend_records", "Ticker trend records published", registry=r
        )
        self.ticker_late = Counter("finsent_ticker_late", "Late events of the ticker trends", registry=r)
        self._tickers_exported: set[str] = set()

    def set_model(self, version: str, provider: str, variant: str, fallback: bool) -> None:
        self.model_info.info({"version": version, "provider": provider, "variant": variant})
        self.provider_fallback.set(1 if fallback else 0)

    def set_topic_gauges(self, gauges: Mapping[str, Any]) -> None:
        """Per-topic gauges from `TrendFolder.gauges()` (`TopicGauges` of each topic's last window)."""
        for topic, g in gauges.items():
            self.window_negative_share.labels(topic=topic).set(g.negative_share)
            self.window_volume.labels(topic=topic).set(g.volume)
            self.baseline_share.labels(topic=topic).set(g.baseline_negative_share)
            self.spike_score.labels(topic=topic).set(g.spike_score)
            self.spike_active.labels(topic=topic).set(1 if g.spike_active else 0)

    def set_ticker_gauges(self, gauges: Mapping[str, Any], top_k: int, tracked: int) -> None:
        """Per-ticker gauges for `exported_tickers`; series of tickers that left the set are removed."""
        chosen = exported_tickers(gauges, top_k)
        for ticker in self._tickers_exported - set(chosen):
            for gauge in self._ticker_gauges():
                gauge.remove(ticker)
        for ticker in chosen:
            g = gauges[ticker]
            self.ticker_negative_share.labels(ticker=ticker).set(g.negative_share)
            self.ticker_volume.labels(ticker=ticker).set(g.volume)
            self.ticker_spike_score.labels(ticker=ticker).set(g.spike_score)
            self.ticker_spike_active.labels(ticker=ticker).set(1 if g.spike_active else 0)
        self._tickers_exported = set(chosen)
        self.tickers_tracked.set(tracked)

    def _ticker_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.ticker_negative_share,
            self.ticker_volume,
            self.ticker_spike_score,
            self.ticker_spike_active,
        )

    # finsent_broker_up is 1 only while the probe gets answers (see broker_health) *and* the last
    # operation of the stages succeeded: the probe alone would hide a broker that answers but refuses
    # to publish, the operations alone miss a silent broker (an empty poll is not an answer).
    def broker_ok(self) -> None:
        with self._broker_lock:
            self._ops_ok = True
            self._set_broker_up()

    def broker_failed(self) -> None:
        with self._broker_lock:
            self._ops_ok = False
            self._set_broker_up()
        self.broker_errors.inc()

    def broker_probe(self, answered: bool, resumed: bool = False) -> None:
        """The probe's verdict; `resumed` (first answer after a silence) clears an operation failure,
        which the silence explains, until the next operation says otherwise."""
        with self._broker_lock:
            self._probe_ok = answered
            if resumed:
                self._ops_ok = True
            self._set_broker_up()
        if not answered:
            self.broker_errors.inc()

    def _set_broker_up(self) -> None:
        self.broker_up.set(1 if self._ops_ok and self._probe_ok else 0)


def serve(registry: CollectorRegistry, host: str, port: int, feed: AlertFeed | None = None) -> Any:
    """Start the HTTP endpoint (/metrics, and /spikes from `feed`; see pipeline.http_api) in a daemon
    thread; returns the server (call shutdown())."""
    try:
        server = http_api.start(registry, feed, host, port)
    except OSError as exc:
        raise ConfigError(
            f"metrics endpoint {host}:{port}: {exc.strerror or exc} (set --metrics-port)"
        ) from None
    log.info("metrics on http://%s:%d/metrics, active spikes on /spikes", host, server.server_port)
    return server
