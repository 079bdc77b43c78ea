"""The daemon's metrics: agreed names on a registry of its own, served over HTTP."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from models.errors import ConfigError
from pipeline.app import provider_fallback
from pipeline.metrics import Metrics, serve
from pipeline.settings import Settings
from pipeline.trends import TopicGauges

AGREED = [
    "finsent_messages_total", "finsent_dlq_total", "finsent_batch_size", "finsent_batch_scoring_seconds",
    "finsent_end_to_end_latency_seconds", "finsent_consumer_lag_messages", "finsent_scored_total",
    "finsent_window_negative_share", "finsent_window_volume", "finsent_negative_baseline_share",
    "finsent_negative_spike_score", "finsent_spike_active", "finsent_late_total", "finsent_duplicates_total",
    "finsent_model_info", "finsent_provider_fallback", "finsent_broker_up", "finsent_broker_errors_total",
    "finsent_last_batch_timestamp_seconds", "finsent_commits_total",
]  # fmt: skip


def test_agreed_names_and_topic_gauges() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_model("20260302-0900", "cpu", "int8", fallback=False)
    m.set_topic_gauges({"Energy | Oil": TopicGauges(0.8, 10, 0.2, 5.5, True, 1_772_445_660_000, 0)})
    m.messages.labels(outcome="scored").inc(3)
    m.lag.labels(topic="news.raw", partition="0", group="finsent").set(7)
    m.late.labels(topic="Energy | Oil").inc()
    m.duplicates.inc()
    m.broker_failed()
    m.commits.labels(stage="score").inc()
    m.dlq.labels(reason="invalid_json").inc()
    m.scored.labels(topic="Energy | Oil", sentiment="negative").inc()
    m.batch_size.observe(3)
    m.batch_scoring_seconds.observe(0.01)
    m.latency.observe(0.2)
    m.last_batch.set(1.0)
    names = {s.name for metric in reg.collect() for s in metric.samples}
    for name in AGREED:
        assert any(n == name or n.startswith(name + "_") for n in names), name
    g = reg.get_sample_value
    topic = {"topic": "Energy | Oil"}
    assert g("finsent_spike_active", topic) == 1 and g("finsent_negative_spike_score", topic) == 5.5
    assert g("finsent_window_negative_share", topic) == 0.8 and g("finsent_window_volume", topic) == 10
    assert g("finsent_negative_baseline_share", topic) == 0.2
    assert g("finsent_model_info", {"version": "20260302-0900", "provider": "cpu", "variant": "int8"}) == 1
    assert g("finsent_broker_up") == 0 and g("finsent_broker_errors_total") == 1
    assert (
        g("finsent_consumer_lag_messages", {"topic": "news.raw", "partition": "0", "group": "finsent"}) == 7
    )


class _Ran:
    def __init__(self, provider: str) -> None:
        self.provider = provider


def test_provider_fallback_flag() -> None:
    assert provider_fallback(Settings(provider="cuda"), _Ran("cpu"), env={})
    assert not provider_fallback(Settings(provider="auto"), _Ran("cpu"), env={})
    assert provider_fallback(Settings(provider="auto"), _Ran("cpu"), env={"FINSENT_EXPECT_GPU": "1"})
    assert not provider_fallback(Settings(provider="auto"), _Ran("cuda"), env={"FINSENT_EXPECT_GPU": "1"})


def test_endpoint_serves_the_registry_and_a_taken_port_is_a_clear_error() -> None:
    reg = CollectorRegistry()
    Metrics(reg).messages.labels(outcome="dlq").inc(2)
    server = serve(reg, "127.0.0.1", 0)
    try:
        port = server.server_port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'finsent_messages_total{outcome="dlq"} 2.0' in body
        with socket.socket() as s, pytest.raises(ConfigError, match=r"metrics endpoint 127.0.0.1:\d+"):
            s.bind(("127.0.0.1", 0))
            s.listen()
            serve(reg, "127.0.0.1", s.getsockname()[1])
    finally:
        server.shutdown()
        server.server_close()


class _NoPartitions:
    """Just enough of a KafkaConsumer for the rebalance listener: nothing assigned, nothing committed."""

    def assignment(self) -> set:
        return set()


def test_the_idle_clock_stops_while_partitions_are_revoked() -> None:
    import threading

    from pipeline.kafka_stage import _listener
    from pipeline.stages import ScoreStage

    stage = ScoreStage(Settings(exit_when_idle_s=1.0), Metrics(CollectorRegistry()), threading.Event(), None)
    stage.consumer = _NoPartitions()
    listener = _listener(stage)
    assert stage.idle_for() is None  # never assigned: not idle yet
    listener.on_partitions_assigned(set())
    stage.assigned_at -= 5.0  # as if assigned five seconds ago
    assert stage.idle_for() >= 5.0
    listener.on_partitions_revoked(set())  # a member joins: the group rebalances
    assert stage.idle_for() is None  # a slow rebalance does not count as idle time
    listener.on_partitions_assigned(set())
    assert stage.idle_for() < 1.0  # the clock restarts at the new assignment
