"""The aggregate stage's restart state, kept in a compacted changelog topic (the Kafka Streams way).

One record per input partition (`news.scored` and `news.scored.tickers`), keyed `<topic>/<partition>`,
valued with the partition's `PartitionState` as JSON: which folder it feeds (topics or tickers), how
far it was read and, per key folded from it, how far its windows were emitted, its late counters, its
spike detector's state and the headlines of a spike in progress. The stage publishes it (and
waits for the acknowledgement) after the trend records it describes and *before* it commits the input
offsets, and reads the newest record of each assigned partition back on assignment; so the state never
lags the committed offsets, and it does not depend on offset-commit metadata (which Tansu drops).

A record this version cannot read (unparseable, or written by another layout version) is reported by
the caller and that partition's state is rebuilt from the input, never a crash.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from typing import Any

from models.errors import FinsentError
from pipeline import kafka_io
from pipeline.aggregator import PartitionState
from pipeline.kafka_io import BrokerError, Outgoing
from pipeline.settings import Settings
from pipeline.spikes import SpikeState
from pipeline.trends import TopicSnapshot
from pipeline.windows import Headline

VERSION = 2  # bump when the layout changes (2: kind, spike_headlines); a record of another version is rebuilt, not misread
_SPIKE_FIELDS = {f.name: f.type for f in fields(SpikeState)}


class ChangelogError(FinsentError):
    """A changelog record cannot be used (the message names the record and what is wrong)."""


def key_for(scored_topic: str, partition: int) -> bytes:
    return f"{scored_topic}/{partition}".encode()


def encode(state: PartitionState) -> bytes:
    topics = {
        name: {
            "closed_before": snap.closed_before,
            "next_start": snap.next_start,
            "pending_late": snap.pending_late,
            "late_total": snap.late_total,
            "spike": asdict(snap.spike),
            "spike_headlines": [asdict(h) for h in snap.spike_headlines],
        }
        for name, snap in sorted(state.topics.items())
    }
    return json.dumps(
        {"version": VERSION, "kind": state.kind, "read_to": state.read_to, "topics": topics},
        ensure_ascii=False,
    ).encode("utf-8")


def _int(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChangelogError(f"{where}: field {name!r} must be an integer, got {value!r}")
    return value


def _spike(obj: Any, where: str) -> SpikeState:
    if not isinstance(obj, dict) or set(obj) != set(_SPIKE_FIELDS):
        got = sorted(obj) if isinstance(obj, dict) else obj
        raise ChangelogError(f"{where}: spike state must have fields {sorted(_SPIKE_FIELDS)}, got {got!r}")
    for name, value in obj.items():
        ok = isinstance(value, bool) if name == "active" else isinstance(value, (int, float))
        if not ok or (name != "active" and isinstance(value, bool)):
            raise ChangelogError(f"{where}: spike field {name!r} has a bad value {value!r}")
    return SpikeState(**obj)


_HEADLINE_FIELDS = {f.name for f in fields(Headline)}


def _headlines(obj: Any, where: str) -> tuple[Headline, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, list) or not all(isinstance(h, dict) and set(h) == _HEADLINE_FIELDS for h in obj):
        raise ChangelogError(f"{where}: spike_headlines must be a list of {sorted(_HEADLINE_FIELDS)} objects")
    try:
        return tuple(Headline(**h) for h in obj)
    except TypeError as exc:
        raise ChangelogError(f"{where}: spike_headlines: {exc}") from None


def decode(value: bytes | None, where: str = "changelog record") -> PartitionState:
    """Parse one record; ChangelogError (naming `where`) when it is unreadable or of another version."""
    try:
        obj = json.loads(value or b"")
    except ValueError as exc:
        raise ChangelogError(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ChangelogError(f"{where}: not a JSON object")
    if obj.get("version") != VERSION:
        raise ChangelogError(f"{where}: written by layout version {obj.get('version')!r}, this is {VERSION}")
    kind = obj.get("kind")
    if kind not in ("topic", "ticker"):
        raise ChangelogError(f"{where}: field 'kind' must be 'topic' or 'ticker', got {kind!r}")
    read_to = obj.get("read_to")
    if read_to is not None:
        read_to = _int(obj, "read_to", where)
    topics_obj = obj.get("topics")
    if not isinstance(topics_obj, dict):
        raise ChangelogError(f"{where}: field 'topics' must be an object")
    topics = {}
    for name, t in topics_obj.items():
        at = f"{where}: topic {name!r}"
        if not isinstance(t, dict):
            raise ChangelogError(f"{at}: not an object")
        topics[name] = TopicSnapshot(
            closed_before=_int(t, "closed_before", at),
            next_start=_int(t, "next_start", at),
            pending_late=_int(t, "pending_late", at),
            late_total=_int(t, "late_total", at),
            spike=_spike(t.get("spike"), at),
            spike_headlines=_headlines(t.get("spike_headlines"), at),
        )
    return PartitionState(read_to, topics, kind)


# -- Kafka -------------------------------------------------------------------------------------------
def ensure_topic(settings: Settings) -> bool:
    """Create the changelog topic (one partition, compacted) unless it exists; True when done,
    BrokerError on failure."""
    return kafka_io.ensure_topics(
        settings, [settings.changelog_topic], partitions=1, configs={"cleanup.policy": "compact"}
    )


def outgoing(settings: Settings, topic: str, partition: int, state: PartitionState) -> Outgoing:
    return Outgoing(settings.changelog_topic, key_for(topic, partition), encode(state))


def read_latest(settings: Settings, timeout_s: float = 30.0) -> dict[bytes, tuple[bytes, str]]:
    """The newest value of every key in the changelog, with where it was read ("topic[p]@offset").

    Reads every partition from the beginning up to its high watermark (learned from fetch responses:
    Tansu's ListOffsets answer is not reliable); BrokerError when that takes longer than `timeout_s`.
    """
    from kafka import KafkaConsumer, TopicPartition

    name = settings.changelog_topic
    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        **kafka_io.frame_limits(),
        **kafka_io.client_config(settings, f"finsent-changelog-{name}"),
    )
    try:
        deadline = time.monotonic() + timeout_s
        parts = kafka_io.wait_for_partitions(consumer, name, timeout_s)
        if parts is None:
            raise BrokerError(f"{settings.bootstrap_servers}: no metadata for topic {name}")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        latest: dict[bytes, tuple[bytes, str]] = {}
        while True:
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    if r.key is not None:
                        latest[r.key] = (r.value, f"{r.topic}[{r.partition}]@{r.offset}")
            hws = {tp: consumer.highwater(tp) for tp in tps}
            if all(hw is not None and consumer.position(tp) >= hw for tp, hw in hws.items()):
                return latest
            if time.monotonic() > deadline:
                raise BrokerError(f"{settings.bootstrap_servers}: reading {name} took over {timeout_s:.0f}s")
    finally:
        consumer.close()
