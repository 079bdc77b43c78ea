"""Thin kafka-python wrappers: clients built from Settings, topic creation, acknowledged publish.

The loops in `pipeline.stages` and `pipeline.kafka_stage` only see these functions. What they encode:
- consumers never auto-commit: the daemon commits after the batch's outputs are acknowledged;
- producers use acks=all and idempotent-safe ordering (one request in flight per connection), and
  `publish` returns only when every future of the batch has succeeded, or raises `PublishError`;
- topic creation goes through the admin client (auto-creation differs between brokers) and
  treats "already exists" as success.
Lag uses `consumer.highwater(tp)` (learned from fetch responses) rather than `end_offsets()`, whose
ListOffsets answer was wrong on the Tansu broker used in tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from models.errors import FinsentError
from pipeline.settings import Settings, bootstrap_list

log = logging.getLogger(__name__)
T = TypeVar("T")

FETCH_MAX_BYTES = 32 << 20


def frame_limits() -> dict[str, int]:
    """Consumer settings that keep the fetch size and the largest accepted network frame consistent
    (see `make_consumer`); shared by every consumer that reads the daemon's topics."""
    return {"fetch_max_bytes": FETCH_MAX_BYTES, "receive_message_max_bytes": FETCH_MAX_BYTES + (1 << 20)}


class BrokerError(FinsentError):
    """The broker cannot be reached or refused an operation (message names servers/topic)."""


class PublishError(BrokerError):
    """At least one output of a batch was not acknowledged."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None  # the record timestamp; None: the producer's clock


def client_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """What every kafka-python client of the daemon is built with: servers, client id, security."""
    return {
        "bootstrap_servers": bootstrap_list("bootstrap_servers", settings.bootstrap_servers),
        "client_id": client_id,
        **settings.kafka_security(),
    }


def make_consumer(settings: Settings, group_id: str, client_id: str, max_poll_records: int) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        # Scoring a batch on a slow CPU must not look like a dead member.
        max_poll_interval_ms=600_000,
        # kafka-python refuses network frames over 1 MB by default while asking for up to 50 MB per
        # fetch; a broker that honours the ask (or, like Tansu, ignores the per-partition limit) then
        # breaks the connection on every fetch of a busy partition. Keep the two consistent.
        **frame_limits(),
        **client_config(settings, client_id),
    )


def make_producer(settings: Settings, client_id: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        acks="all",
        retries=5,
        linger_ms=5,
        max_in_flight_requests_per_connection=1,  # retries must not reorder a topic's stream
        max_request_size=max(1_048_576, 4 * settings.max_message_bytes),
        **client_config(settings, client_id),
    )


def ensure_topics(
    settings: Settings,
    topics: Iterable[str],
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> bool:
    """Create missing topics (`partitions`, default settings.topic_partitions; topic `configs` such as
    cleanup.policy); existing ones are left as they are. True when done, BrokerError on failure."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    n = settings.topic_partitions if partitions is None else partitions
    try:
        admin = KafkaAdminClient(**client_config(settings, "finsent-admin"))
    except KafkaError as exc:
        raise BrokerError(f"{settings.bootstrap_servers}: cannot connect to create topics: {exc}") from exc
    try:
        for name in topics:
            topic = NewTopic(name, n, settings.replication_factor, topic_configs=dict(configs or {}))
            try:
                admin.create_topics([topic])
                log.info("created topic %s (%d partitions)", name, n)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(f"{settings.bootstrap_servers}: cannot create topic {name}: {exc}") from exc
    finally:
        admin.close()
    return True


def partition_for(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives `key` among `partitions` (murmur2, as the
    Java client): where a producer keying by topic name puts that topic's records."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def wait_for_partitions(consumer: Any, topic: str, timeout_s: float) -> set[int] | None:
    """The topic's partition ids once the consumer has metadata for it; None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts is not None or time.monotonic() >= deadline:
            return parts
        time.sleep(0.2)


def publish(producer: Any, messages: Sequence[Outgoing], timeout_s: float = 30.0) -> bool:
    """Send all, flush, and check every future: returns (True) only when the broker acknowledged all."""
    from kafka.errors import KafkaError

    try:
        futures = [
            producer.send(m.topic, key=m.key, value=m.value, timestamp_ms=m.timestamp_ms) for m in messages
        ]
        producer.flush(timeout=timeout_s)
        for fut in futures:
            fut.get(timeout=timeout_s)
    except KafkaError as exc:
        raise PublishError(f"publish of {len(messages)} records failed: {exc}") from exc
    return True


def commit(consumer: Any, offsets: dict[Any, int], metadata: str = "") -> None:
    """Commit `next offset to read` per TopicPartition (synchronously), with a metadata string."""
    from kafka.structs import OffsetAndMetadata

    if offsets:
        consumer.commit({tp: OffsetAndMetadata(off, metadata, -1) for tp, off in offsets.items()})


def poll_records(consumer: Any, timeout_s: float, max_records: int) -> list[Any]:
    """`consumer.poll` flattened to one list, in partition-then-offset order."""
    got = consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records)
    out: list[Any] = []
    for records in got.values():
        out.extend(records)
    return out


def lag(consumer: Any) -> dict[Any, int]:
    """High watermark minus position for each assigned partition whose watermark is known."""
    out = {}
    for tp in consumer.assignment():
        hw = consumer.highwater(tp)
        if hw is None:
            continue
        try:
            pos = consumer.position(tp, timeout_ms=0)
        except Exception:  # position not fetched yet (just assigned): no lag figure this round
            continue
        if pos is not None:
            out[tp] = max(0, hw - pos)
    return out


class Backoff:
    """Exponential backoff between retries, interruptible by a stop event."""

    def __init__(self, stop: threading.Event, first_s: float = 0.2, max_s: float = 30.0) -> None:
        self.stop, self.first_s, self.max_s = stop, first_s, max_s
        self.delay = first_s

    def reset(self) -> None:
        self.delay = self.first_s

    def wait(self) -> bool:
        """Sleep the current delay (doubling it for next time); False when asked to stop."""
        stopped = self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, self.max_s)
        return not stopped


def retrying(
    what: str,
    fn: Callable[[], T],
    backoff: Backoff,
    on_error: Callable[[Exception], None] | None = None,
) -> T | None:
    """Call `fn` until it succeeds; None if the stop event fired first. Logs every failure."""
    from kafka.errors import KafkaError

    while True:
        try:
            result = fn()
        except (KafkaError, BrokerError, OSError) as exc:
            log.warning("%s failed: %s; retrying in %.1fs", what, exc, backoff.delay)
            if on_error:
                on_error(exc)
            if not backoff.wait():
                return None
            continue
        backoff.reset()
        return result
