"""The streaming daemon: a score stage and an aggregate stage, each a thin Kafka loop.

    news.raw --score stage--> news.scored (keyed by topic) + news.dlq
    news.scored --aggregate stage (group <group>-aggregate)--> news.trends (keyed by topic)

Each stage polls, hands bytes to the pure functions (`records`, `scoring`, `trends`), publishes the
results, waits for the broker's acknowledgement of every output and only then commits the input
offsets, so a crash at any point re-delivers rather than loses (at-least-once). A publish that fails
is retried with backoff, without committing; the process stays up and says so in
`finsent_broker_up` and the log. SIGTERM/SIGINT set a stop event: an in-flight batch finishes if its
publish succeeds, or is abandoned uncommitted, and the process exits 0.

The aggregate stage commits a `news.scored` offset only once every event before it has been folded
into a window that is closed and published, so a restart re-reads exactly the events of the windows
still open (see `Aggregator.safe_offsets`). Events re-read after a restart or rebalance are counted
once: the folder dedups ids, and events of windows this member already published are skipped.

Stop conditions for tests and backfills: `run(count=N)` (input messages), `run(timeout=S)`, and
`exit_when_idle_s`; those three end a replay, so the aggregate stage then flushes its open windows.
A signal does not flush: open windows are re-built from the uncommitted events on restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import CollectorRegistry

from pipeline import kafka_io
from pipeline.batching import collect_batch
from pipeline.kafka_io import Backoff, Outgoing
from pipeline.metrics import Metrics
from pipeline.records import DeadLetter, NewsItem, Origin, parse_message
from pipeline.scoring import ScorerLike, score_batch, scored_event
from pipeline.settings import Settings
from pipeline.trends import EventError, ScoredEvent, TrendFolder, TrendRecord, TrendSettings
from pipeline.windows import last_closed_start, window_start

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5
SOURCE_IDLE_S = 10.0  # an input partition silent this long stops holding the watermark back
DRAIN_IDLE_S = 2.0  # after run(count=) ends the score stage: how long the aggregate stage waits for more


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------------
# Aggregation with commit bookkeeping (pure; shared with `finsent replay --direct`)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """Per input partition: (offset, window start) of events in windows not yet closed."""

    events: list[tuple[int, int]] = field(default_factory=list)
    next_offset: int | None = None  # last offset seen + 1


class Aggregator:
    """A TrendFolder plus what the Kafka loop needs: a watermark, safe commits, rebalance recovery.

    Watermark: the minimum, over the ordered streams that delivered recently, of the max event time
    seen from each. A stream is one `news.raw` partition (carried by every scored record) as seen
    through one `news.scored` partition: each input partition is in event-time order when its
    producer is (a replay, a live feed) and the score stage keeps that order, but consumers read
    partitions in chunks, so the max over everything would run ahead and turn the slower streams'
    events "late". A partition silent for `source_idle_s` (wall time) while others
    deliver stops holding the watermark back, so one quiet partition cannot stall every topic's
    windows; when input resumes after a pause, every partition gets a fresh grace period.
    """

    def __init__(self, settings: TrendSettings, source_idle_s: float = SOURCE_IDLE_S) -> None:
        self.settings = settings
        self.source_idle_s = source_idle_s
        self.folder = TrendFolder(settings)
        self.pending: dict[Any, _Pending] = {}
        self.sources: dict[Any, tuple[int | None, float]] = {}  # source -> (max event time, last seen)
        self.last_event_s: float | None = None
        self.closed_before: int | None = None  # every window starting before this was emitted
        self.skip_before: int | None = None  # after a reset: windows before this were already emitted
        self.skipped = 0

    def add(
        self,
        ev: ScoredEvent,
        partition: Any = None,
        offset: int | None = None,
        source: Any = None,
        now_s: float = 0.0,
    ) -> str:
        start = window_start(ev.event_time_ms, self.settings.window_ms)
        if self.skip_before is not None and start < self.skip_before:
            # Re-read after a reset; its window was published before the reset.
            self.skipped += 1
            outcome = "replayed"
        else:
            outcome = self.folder.add(ev)
        if self.last_event_s is None or now_s - self.last_event_s > self.source_idle_s:
            # Input resumes after a pause (or starts): every partition gets a fresh grace period,
            # so the first one to speak cannot run the watermark past the others.
            self.sources = {src: (t, now_s) for src, (t, _) in self.sources.items()}
        self.last_event_s = now_s
        seen = self.sources.get(source)
        latest = ev.event_time_ms if seen is None or seen[0] is None else max(ev.event_time_ms, seen[0])
        self.sources[source] = (latest, now_s)
        if partition is not None and offset is not None:
            p = self.pending.setdefault(partition, _Pending())
            if outcome == "counted":
                p.events.append((offset, start))
            p.next_offset = offset + 1
        return outcome

    def expect_sources(self, sources: Any, now_s: float) -> None:
        """Input partitions known from metadata: one that has not delivered yet holds the watermark
        back (up to `source_idle_s`), so a slow partition's first events are not late."""
        for src in sources:
            self.sources.setdefault(src, (None, now_s))

    def watermark(self, now_s: float = 0.0) -> int | None:
        active = [t for t, seen in self.sources.values() if now_s - seen <= self.source_idle_s]
        if None in active:
            return None
        if active:
            return min(t for t in active if t is not None)
        return max((t for t, _ in self.sources.values() if t is not None), default=None)

    def advance(self, now_s: float = 0.0) -> list[TrendRecord]:
        """Close the windows the watermark has passed (plus the allowed lateness)."""
        watermark = self.watermark(now_s)
        if watermark is None:
            return []
        records = self.folder.advance(watermark)
        s = self.settings
        self._closed(last_closed_start(watermark, s.window_ms, s.allowed_lateness_ms) + s.window_ms)
        return records

    def flush(self) -> list[TrendRecord]:
        watermark = self.folder.max_event_time_ms
        records = self.folder.flush()
        if watermark is not None:
            self._closed(window_start(watermark, self.settings.window_ms) + self.settings.window_ms)
        return records

    def _closed(self, frontier: int) -> None:
        if self.closed_before is not None and frontier <= self.closed_before:
            return
        self.closed_before = frontier
        for p in self.pending.values():
            p.events = [(off, start) for off, start in p.events if start >= frontier]

    def safe_offsets(self) -> dict[Any, int]:
        """Per partition, the offset to commit: the first event still in an open window, else the end."""
        out = {}
        for tp, p in self.pending.items():
            if p.events:
                out[tp] = min(off for off, _ in p.events)
            elif p.next_offset is not None:
                out[tp] = p.next_offset
        return out

    def commit_metadata(self) -> str:
        """Stored with the committed offsets: windows before this are emitted (see `reset`)."""
        return "" if self.closed_before is None else json.dumps({"closed_before": self.closed_before})

    def skip_windows_before(self, frontier: int | None) -> None:
        if frontier is not None:
            self.skip_before = max(self.skip_before or frontier, frontier)

    def reset(self) -> None:
        """Forget open windows (a rebalance: uncommitted events will be re-read from committed offsets)."""
        self.folder = TrendFolder(self.settings)
        self.pending = {}
        self.sources = {}
        self.last_event_s = None
        if self.closed_before is not None:
            self.skip_before = max(self.skip_before or self.closed_before, self.closed_before)


def _closed_before_of(metadata: str) -> int | None:
    try:
        value = json.loads(metadata).get("closed_before")
    except (ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None


def to_event(value: bytes) -> tuple[ScoredEvent, Any]:
    """A news.scored value -> (the event, its input partition as the watermark source)."""
    f = scored_event(value)
    return ScoredEvent(f.id, f.topic, f.sentiment, f.score, f.event_time_ms), f.source


def trend_outgoing(topic_name: str, records: list[TrendRecord]) -> list[Outgoing]:
    return [
        Outgoing(topic_name, r.topic.encode("utf-8"), json.dumps(r.to_json_dict()).encode("utf-8"))
        for r in records
    ]


def dead_outgoing(
    topic_name: str, dead: list[DeadLetter], now_ms: int, max_raw_bytes: int | None = None
) -> list[Outgoing]:
    return [
        Outgoing(
            topic_name,
            d.reason.encode(),
            json.dumps(d.to_dict(now_ms, max_raw_bytes), ensure_ascii=False).encode("utf-8"),
        )
        for d in dead
    ]


# --------------------------------------------------------------------------------------------------
# The Kafka loops
# --------------------------------------------------------------------------------------------------


def _listener(stage: _Stage) -> Any:
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


class _Stage:
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

    # -- set-up -----------------------------------------------------------------------------------
    def connect(self, topic: str) -> bool:
        def make() -> tuple[Any, Any]:
            consumer = kafka_io.make_consumer(
                self.settings,
                self.group,
                f"finsent-{self.name}-{os.getpid()}",
                self.settings.batch_max_messages,
            )
            consumer.subscribe([topic], listener=_listener(self))
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
        """Seconds since the last input (or since assignment); None before the first assignment."""
        if self.assigned_at is None:
            return None
        since = max(self.assigned_at, self.last_input_at or 0.0)
        return time.monotonic() - since


class ScoreStage(_Stage):
    name = "score"

    def __init__(
        self, settings: Settings, metrics: Metrics, stop: threading.Event, scorer: ScorerLike
    ) -> None:
        super().__init__(settings, metrics, stop, settings.group_id)
        self.scorer = scorer
        self.first_input_seen = False

    def step(self) -> int:
        """One micro-batch: poll, parse, score, publish, commit. Returns the messages handled."""
        s = self.settings
        self.rebalanced = False
        batch = collect_batch(
            self.poll,
            max_messages=s.batch_max_messages,
            max_wait_s=s.batch_max_wait_ms / 1000,
            idle_poll_s=IDLE_POLL_S,
        )
        if self.rebalanced and batch:
            # Some of these may belong to partitions now owned by another member: drop the batch and
            # go back to the committed offsets, which is where the new owners start too.
            log.info("score stage: rebalance during batch assembly; re-reading %d messages", len(batch))
            self.rewind()
            return 0
        self.update_lag()
        if not batch:
            return 0
        if not self.first_input_seen:
            # `make bench` times the stage from this line to the last commit.
            self.first_input_seen = True
            log.info("score stage: first input: %d messages", len(batch))
        self.process(batch)
        return len(batch)

    def process(self, batch: list[Any]) -> None:
        from kafka.structs import TopicPartition

        s, m = self.settings, self.metrics
        items: list[NewsItem] = []
        dead: list[DeadLetter] = []
        for rec in batch:
            origin = Origin(rec.topic, rec.partition, rec.offset, rec.timestamp)
            parsed = parse_message(rec.value, origin, max_bytes=s.max_message_bytes)
            if isinstance(parsed, DeadLetter):
                dead.append(parsed)
            else:
                items.append(parsed)
        t0 = time.perf_counter()
        scored, failed = score_batch(items, self.scorer, now_ms=_now_ms())
        elapsed = time.perf_counter() - t0
        dead.extend(failed)
        now_ms = _now_ms()
        out = [Outgoing(s.scored_topic, r.key, r.to_bytes()) for r in scored]
        out.extend(dead_outgoing(s.dlq_topic, dead, now_ms, s.max_message_bytes))
        if not self.publish(out):
            log.warning("score stage: stopping with an unpublished batch of %d (not committed)", len(batch))
            return
        published_ms = _now_ms()
        offsets: dict[Any, int] = {}
        for rec in batch:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        self.commit(offsets)
        # Metrics after the commit: they count what is durable.
        done_ms = _now_ms()
        log.debug(
            "score stage: batch of %d: score %.0f ms, publish %d ms, commit %d ms",
            len(batch), elapsed * 1000, published_ms - now_ms, done_ms - published_ms,
        )  # fmt: skip
        m.batch_size.observe(len(batch))
        if items:
            m.batch_scoring_seconds.observe(elapsed)
        m.messages.labels(outcome="scored").inc(len(scored))
        m.messages.labels(outcome="dlq").inc(len(dead))
        for d in dead:
            m.dlq.labels(reason=d.reason).inc()
        for r in scored:
            m.scored.labels(topic=r.topic, sentiment=r.sentiment).inc()
            ts = r.item.origin.timestamp_ms
            start = ts if ts is not None and ts > 0 else r.item.event_time_ms
            m.latency.observe(max(0.0, (done_ms - start) / 1000))
        m.last_batch.set(done_ms / 1000)


class AggregateStage(_Stage):
    name = "aggregate"

    def __init__(
        self, settings: Settings, metrics: Metrics, stop: threading.Event, trend: TrendSettings
    ) -> None:
        super().__init__(settings, metrics, stop, settings.aggregate_group_id)
        self.agg = Aggregator(trend)

    def on_assigned(self) -> None:
        # Open windows may hold events of partitions now owned by another member, and our positions
        # went back to the committed offsets: rebuild from those. The commits carry how far windows
        # were already emitted (by us, a previous run, or the previous owner), so those events are
        # not folded into a second record for the same window.
        self.agg.reset()
        for meta in self.committed_metadata:
            self.agg.skip_windows_before(_closed_before_of(meta))
        topic = self.settings.input_topic
        try:
            parts = self.consumer.partitions_for_topic(topic) or set()
        except Exception as exc:  # metadata is an optimisation here: without it the max event time rules
            log.warning("aggregate stage: no partition metadata for %s: %s", topic, exc)
            parts = set()
        self.agg.expect_sources(
            [(tp.partition, (topic, p)) for tp in self.consumer.assignment() for p in sorted(parts)],
            time.monotonic(),
        )

    def step(self) -> int:
        from kafka.structs import TopicPartition

        s, m = self.settings, self.metrics
        records = self.poll(IDLE_POLL_S, max(s.batch_max_messages, 500))
        now_s = time.monotonic()
        self.update_lag()
        bad: list[DeadLetter] = []
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            try:
                ev, source = to_event(rec.value)
            except (ValueError, EventError) as exc:
                origin = Origin(rec.topic, rec.partition, rec.offset, rec.timestamp)
                bad.append(DeadLetter("invalid_scored_record", f"{origin}: {exc}", rec.value or b"", origin))
                self.agg.pending.setdefault(tp, _Pending()).next_offset = rec.offset + 1
                continue
            # Ordered streams are per (news.scored partition, news.raw partition): this consumer reads
            # its scored partitions in chunks, each interleaving events from every raw partition.
            outcome = self.agg.add(ev, tp, rec.offset, (tp.partition, source), now_s)
            if outcome == "late":
                m.late.labels(topic=ev.topic).inc()
            elif outcome == "duplicate":
                m.duplicates.inc()
        closed = self.agg.advance(now_s) if records else []
        if not self.emit(closed, bad):
            return len(records)
        self.commit(self.agg.safe_offsets(), self.agg.commit_metadata())
        return len(records)

    def emit(self, closed: list[TrendRecord], bad: list[DeadLetter]) -> bool:
        s, m = self.settings, self.metrics
        out = trend_outgoing(s.trends_topic, closed) + dead_outgoing(
            s.dlq_topic, bad, _now_ms(), s.max_message_bytes
        )
        if not self.publish(out):
            return False
        for r in closed:
            m.trend_records.labels(topic=r.topic).inc()
        for d in bad:
            m.dlq.labels(reason=d.reason).inc()
        m.set_topic_gauges(self.agg.folder.gauges())
        return True

    def finish(self, flush: bool) -> None:
        """End of run: at the end of a replay close every window; on a signal keep them for a restart."""
        if flush and self.emit(self.agg.flush(), []):
            self.commit(self.agg.safe_offsets(), self.agg.commit_metadata())


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def provider_fallback(settings: Settings, scorer: Any, env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    expect = env.get("FINSENT_EXPECT_GPU", "").strip().lower() in ("1", "true", "yes", "on")
    wanted_gpu = settings.provider == "cuda" or (settings.provider == "auto" and expect)
    return bool(wanted_gpu and scorer.provider == "cpu")


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        scorer: ScorerLike | None = None,
        registry: CollectorRegistry | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.stop = stop or threading.Event()
        self.scorer = scorer
        self.trend = settings.trend_settings() if settings.stage in ("all", "aggregate") else None
        self.score_stage: ScoreStage | None = None
        self.agg_stage: AggregateStage | None = None
        self.errors: list[BaseException] = []
        self._ended_by_limit = threading.Event()

    def load_model(self) -> None:
        if self.scorer is not None or self.settings.stage == "aggregate":
            return
        from models.runtime import load_scorer

        s = self.settings
        self.scorer = cast(
            ScorerLike, load_scorer(s.model, provider=s.provider, variant=s.variant, threads=s.threads)
        )

    def run(self, count: int | None = None, timeout: float | None = None) -> int:
        """Run until stopped, `count` input messages, `timeout` seconds or the idle limit. Exit code."""
        s = self.settings
        self.load_model()
        server = None
        if s.metrics_port:
            from pipeline.metrics import serve

            server = serve(self.registry, s.metrics_host, s.metrics_port)
        try:
            if self.scorer is not None:
                sc: Any = self.scorer
                fallback = provider_fallback(s, sc)
                self.metrics.set_model(sc.version, sc.provider, sc.variant, fallback)
                log.info(
                    "model %s: provider=%s variant=%s%s",
                    sc.version,
                    sc.provider,
                    sc.variant,
                    " (GPU expected: running on CPU)" if fallback else "",
                )
            log.info("settings: %s", s.masked())
            if s.create_topics:
                topics = [s.input_topic, s.scored_topic, s.trends_topic, s.dlq_topic]
                if (
                    kafka_io.retrying(
                        "create topics",
                        lambda: kafka_io.ensure_topics(s, topics),
                        Backoff(self.stop, max_s=s.retry_backoff_max_s),
                        lambda e: self.metrics.broker_failed(),
                    )
                    is None
                ):
                    return 0
            threads = []
            if s.stage in ("all", "score"):
                assert self.scorer is not None
                self.score_stage = ScoreStage(s, self.metrics, self.stop, self.scorer)
                threads.append(threading.Thread(target=self._score_loop, args=(count,), name="score"))
            if s.stage in ("all", "aggregate"):
                assert self.trend is not None
                self.agg_stage = AggregateStage(s, self.metrics, self.stop, self.trend)
                agg_count = count if s.stage == "aggregate" else None
                threads.append(threading.Thread(target=self._agg_loop, args=(agg_count,), name="aggregate"))
            for t in threads:
                t.start()
            deadline = None if timeout is None else time.monotonic() + timeout
            while any(t.is_alive() for t in threads):
                if deadline is not None and time.monotonic() >= deadline and not self.stop.is_set():
                    log.info("run timeout of %.1fs reached; stopping", timeout)
                    self._ended_by_limit.set()
                    self.stop.set()
                for t in threads:
                    t.join(timeout=0.2)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
        return 1 if self.errors else 0

    def _guard(self, stage: _Stage, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:  # a bug, not a broker problem: stop everything, exit non-zero
            log.exception("%s stage crashed", stage.name)
            self.errors.append(exc)
            self.stop.set()
        finally:
            stage.done.set()
            stage.close()

    def _score_loop(self, count: int | None) -> None:
        stage = self.score_stage
        assert stage is not None

        def body() -> None:
            if not stage.connect(self.settings.input_topic):
                return
            while not self.stop.is_set():
                stage.consumed += stage.step()
                if count is not None and stage.consumed >= count:
                    log.info("score stage: %d messages handled; done", stage.consumed)
                    self._ended_by_limit.set()
                    if self.agg_stage is None:
                        self.stop.set()
                    return
                if self._idle_expired(stage):
                    log.info("score stage: idle for %.1fs; done", self.settings.exit_when_idle_s)
                    self._ended_by_limit.set()
                    return

        self._guard(stage, body)

    def _agg_loop(self, count: int | None) -> None:
        stage = self.agg_stage
        assert stage is not None

        def body() -> None:
            if not stage.connect(self.settings.scored_topic):
                return
            upstream = self.score_stage
            while not self.stop.is_set():
                stage.consumed += stage.step()
                if count is not None and stage.consumed >= count:
                    self._ended_by_limit.set()
                    break
                if upstream is not None and not upstream.done.is_set():
                    continue
                # Nothing more will come from this process's score stage: drain what it published
                # (and what other members publish to our partitions) until idle, then end.
                limit = self.settings.exit_when_idle_s
                if limit is None and self._ended_by_limit.is_set():
                    limit = DRAIN_IDLE_S
                idle = stage.idle_for()
                if limit is not None and idle is not None and idle >= limit:
                    log.info("aggregate stage: idle for %.1fs; done", limit)
                    self._ended_by_limit.set()
                    break
            stage.finish(flush=self._ended_by_limit.is_set())
            self.stop.set()

        self._guard(stage, body)

    def _idle_expired(self, stage: _Stage) -> bool:
        limit = self.settings.exit_when_idle_s
        if limit is None:
            return False
        idle = stage.idle_for()
        return idle is not None and idle >= limit
