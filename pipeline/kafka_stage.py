"""The Kafka plumbing both stages share: connect, poll, publish until acknowledged, commit, rewind, lag.

A stage owns one consumer (in its own group) and one producer. Broker trouble never raises out of
here: connecting and publishing retry with backoff until they succeed or the stop event is set, and
`finsent_broker_up` says what is happening. A rebalance re-seeks every assigned partition to its
committed offset, so a new owner starts where the outputs are known to be durable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from pipeline import kafka_io
from pipeline.broker_health import BrokerHealth
from pipeline.kafka_io import Backoff, Outgoing
from pipeline.metrics import Metrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _listener(stage: KafkaStage) -> Any:
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Rebalance callbacks: remember that a rebalance happened and re-seek to committed offsets."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            stage.rebalanced = True
            # The idle clock stops while the group rebalances: a member joining slowly must not
            # make this one give up (with --exit-when-idle) before the new assignment arrives.
            stage.assigned_at = None
            log.info("%s stage: partitions revoked: %s", stage.name, _tps(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            stage.rebalanced = True
            stage.rewind()
            stage.assigned_at = time.monotonic()
            stage.on_assigned()
            log.info("%s stage: partitions assigned: %s", stage.name, _tps(assigned))

    return Listener()


def _tps(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "none"


class KafkaStage:
    name = "stage"

    def __init__(self, settings: Settings, metrics: Metrics, stop: threading.Event, group: str) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.group = group
        self.backoff = Backoff(stop, max_s=settings.retry_backoff_max_s)
        self.consumer: Any = None
        self.producer: Any = None
        self.rebalanced = False
        self.committed_metadata: list[str] = []
        self.assigned_at: float | None = None
        self.last_input_at: float | None = None
        self.consumed = 0
        self.done = threading.Event()
        # Set by the app: the idle clock counts only while the broker answers (see broker_health).
        self.health: BrokerHealth | None = None

    # -- set-up -----------------------------------------------------------------------------------
    def connect(self, topic: str | list[str]) -> bool:
        topics = [topic] if isinstance(topic, str) else list(topic)

        def make() -> tuple[Any, Any]:
            consumer = kafka_io.make_consumer(
                self.settings,
                self.group,
                f"finsent-{self.name}-{os.getpid()}",
                self.settings.batch_max_messages,
            )
            consumer.subscribe(topics, listener=_listener(self))
            self.consumer = consumer
            producer = kafka_io.make_producer(self.settings, f"finsent-{self.name}-{os.getpid()}")
            return consumer, producer

        made = kafka_io.retrying(
            f"{self.name} stage: connect to {self.settings.bootstrap_servers}",
            make,
            self.backoff,
            self._broker_error,
        )
        if made is None:
            return False
        self.consumer, self.producer = made
        self.metrics.broker_ok()
        return True

    def close(self) -> None:
        for client in (self.consumer, self.producer):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # closing must not mask the real exit reason
                    log.debug("%s stage: close: %s", self.name, exc)

    def on_assigned(self) -> None:
        pass

    def _broker_error(self, exc: Exception) -> None:
        self.metrics.broker_failed()

    # -- helpers ----------------------------------------------------------------------------------
    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        from kafka.errors import KafkaError

        try:
            records = kafka_io.poll_records(self.consumer, timeout_s, max_records)
        except KafkaError as exc:
            log.warning("%s stage: poll failed: %s", self.name, exc)
            self.metrics.broker_failed()
            self.backoff.wait()
            return []
        if records:
            self.last_input_at = time.monotonic()
            self.metrics.broker_ok()
        return records

    def publish(self, out: list[Outgoing]) -> bool:
        """Publish until acknowledged; False when stopped first (the batch stays uncommitted)."""
        if not out:
            return True
        ok = kafka_io.retrying(
            f"{self.name} stage: publish {len(out)} records",
            lambda: kafka_io.publish(self.producer, out),
            self.backoff,
            self._broker_error,
        )
        if ok:
            self.metrics.broker_ok()
        return bool(ok)

    def commit(self, offsets: dict[Any, int], metadata: str = "") -> None:
        from kafka.errors import KafkaError

        if not offsets:
            return
        try:
            kafka_io.commit(self.consumer, offsets, metadata)
        except KafkaError as exc:
            # A rebalance or a broker hiccup: the outputs are durable, the inputs will be re-read and
            # the duplicates are absorbed downstream (dedup by id).
            log.warning("%s stage: commit failed (%s); those messages will be redelivered", self.name, exc)
            self.metrics.broker_failed()
            return
        self.metrics.commits.labels(stage=self.name).inc()

    def rewind(self) -> None:
        """Seek every assigned partition to its committed offset (or the beginning)."""
        self.committed_metadata = []
        for tp in self.consumer.assignment():
            committed = self.consumer.committed(tp, metadata=True)
            if committed is None or committed.offset is None or committed.offset < 0:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed.offset)
                if committed.metadata:
                    self.committed_metadata.append(committed.metadata)

    def update_lag(self) -> None:
        try:
            for tp, value in kafka_io.lag(self.consumer).items():
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition), group=self.group).set(
                    value
                )
        except Exception as exc:  # lag is best effort; never let it stop the loop
            log.debug("%s stage: lag: %s", self.name, exc)

    def idle_for(self) -> float | None:
        """Seconds since the last input (or since assignment), counted only while the broker answers;
        None before the first assignment."""
        if self.assigned_at is None:
            return None
        since = max(self.assigned_at, self.last_input_at or 0.0)
        if self.health is None:
            return time.monotonic() - since
        return self.health.idle_seconds(since, time.monotonic())
