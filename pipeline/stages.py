"""The two stages of the daemon, each a thin loop: poll -> process -> publish -> commit.

    news.raw --ScoreStage--> news.scored (keyed by topic) + news.scored.tickers (keyed by ticker) + news.dlq
    news.scored + news.scored.tickers --AggregateStage (group <group>-aggregate)-->
        news.trends (keyed by topic) + news.trends.tickers (keyed by ticker)

Each stage hands bytes to the pure functions (`records`, `scoring`, `aggregator`), publishes the
results, waits for the broker's acknowledgement of every output and only then commits the input
offsets, so a crash at any point re-delivers rather than loses (at-least-once). A publish that fails
is retried with backoff, without committing (see `kafka_stage`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline import changelog, kafka_io
from pipeline.aggregator import Aggregator, _Pending, to_event
from pipeline.alert_feed import AlertFeed
from pipeline.backlog import UpstreamBacklog
from pipeline.batching import collect_batch
from pipeline.kafka_io import Outgoing
from pipeline.kafka_stage import KafkaStage
from pipeline.metrics import Metrics
from pipeline.records import DeadLetter, NewsItem, Origin, parse_message
from pipeline.scoring import ScoredRecord, ScorerLike, predict_batch, scored_records, ticker_copies
from pipeline.settings import Settings
from pipeline.stories import StoryIndex
from pipeline.trends import EventError, TrendRecord, TrendSettings

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5
BACKLOG_EVERY_S = 1.0  # how often the aggregate stage asks how much input is still to come
BACKLOG_STALE_S = 30.0  # how long the last known backlog stands in for a failed answer


def _now_ms() -> int:
    return int(time.time() * 1000)


def trend_outgoing(topic_name: str, records: list[TrendRecord]) -> list[Outgoing]:
    return [
        Outgoing(topic_name, r.topic.encode("utf-8"), json.dumps(r.to_json_dict()).encode("utf-8"))
        for r in records
    ]


def dead_outgoing(
    topic_name: str, dead: list[DeadLetter], now_ms: int, max_raw_bytes: int | None = None
) -> list[Outgoing]:
    return [Outgoing(topic_name, d.reason.encode(), _dead_bytes(d, now_ms, max_raw_bytes)) for d in dead]


def _dead_bytes(d: DeadLetter, now_ms: int, max_raw_bytes: int | None) -> bytes:
    record = d.to_dict(now_ms, max_raw_bytes)
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate quoted in the message: \u-escapes are valid JSON and always encode.
        return json.dumps(record, ensure_ascii=True).encode("ascii")


def scored_outgoing(
    topic_name: str, scored: list[ScoredRecord], tickers_topic: str | None = None
) -> tuple[list[Outgoing], list[ScoredRecord], list[DeadLetter]]:
    """Serialise each scored record on its own: one that cannot be written (a value no check caught)
    is dead-lettered as `serialization_failed` with its input bytes, and its batch mates go on. With
    `tickers_topic`, each record's copies per ticker follow it there (`scoring.ticker_copies`)."""
    out: list[Outgoing] = []
    ok: list[ScoredRecord] = []
    dead: list[DeadLetter] = []
    for r in scored:
        try:
            value = r.to_bytes()
            out.append(Outgoing(topic_name, r.key, value))
            if tickers_topic is not None and r.item.tickers:
                out.extend(Outgoing(tickers_topic, k, v) for k, v in ticker_copies(value, r.item.tickers))
            ok.append(r)
        except Exception as exc:
            it = r.item
            msg = f"{it.origin}: id {it.id!r}: scored record not serialisable: {type(exc).__name__}: {exc}"
            dead.append(DeadLetter("serialization_failed", msg, it.raw, it.origin, it.id))
    return out, ok, dead


_Predicted = tuple[list[tuple[NewsItem, Any]], list[DeadLetter], str, float]


@dataclass(slots=True)
class _InFlight:
    """A parsed batch whose scoring has started: what `ScoreStage._finish` publishes and commits."""

    batch: list[Any]
    items: list[NewsItem]
    dead: list[DeadLetter]  # parse failures so far; scoring and serialising add theirs
    scoring: Future[_Predicted]  # (item, prediction) pairs, scoring failures, model version, seconds


class ScoreStage(KafkaStage):
    name = "score"

    def __init__(
        self, settings: Settings, metrics: Metrics, stop: threading.Event, scorer: ScorerLike
    ) -> None:
        super().__init__(settings, metrics, stop, settings.group_id)
        self.scorer = scorer
        self.first_input_seen = False
        self.reloader: Any = None  # pipeline.model_reload.ModelReloader when the model may be swapped
        self.monitor: Any = None  # pipeline.model_monitor.ModelMonitor: confidence and drift
        self.shadow: Any = None  # pipeline.shadow.ShadowScorer with --shadow-model
        self.review: Any = None  # pipeline.review.ReviewSampler unless review_per_s is 0
        # Stories (reprints grouped) as this process sees them: only its own news.raw partitions, so
        # a reprint read by another member starts a "first" there too. Novelty across partitions is
        # for the aggregate side, whose news.scored partitions are keyed by topic.
        self.stories = StoryIndex()
        # One scoring thread: the next batch scores on it while this loop publishes the last one.
        self._pool = ThreadPoolExecutor(1, "score-batch") if settings.overlap_batches else None
        self._in_flight: _InFlight | None = None
        # Set when a batch's outputs were not acknowledged (stopping): committing a later batch
        # would move the offsets past it and lose it, so nothing after it is published.
        self._unpublished = False

    def step(self) -> int:
        """One micro-batch: poll, parse, start scoring it, then publish and commit the batch before
        it (scored meanwhile) while this one scores. Returns the messages whose outputs were
        committed in this step.

        Overlapping keeps both cores busy: ORT's runs use every core while a batch scores, and
        building, publishing and committing its records is one Python thread that would leave the
        others idle. Offsets still advance in input order, each only after its batch's outputs are
        acknowledged; a batch in flight at a rebalance is dropped uncommitted and re-read, and once
        a batch goes unpublished (a stop) no later one is published or committed past it.
        """
        s = self.settings
        if self.reloader is not None:  # between two batches: the only place the model changes
            # A batch still scoring keeps the scorer it started with; this one is for the next.
            self.scorer = self.reloader.between_batches(self.scorer)
        self.rebalanced = False
        # With a batch scoring, take only what has already arrived: waiting for more would hold
        # that batch's outputs back (under a backlog the consumer's buffer fills a batch at once).
        scoring = self._in_flight is not None
        batch = collect_batch(
            self.poll,
            max_messages=s.batch_max_messages,
            max_wait_s=0.0 if scoring else s.batch_max_wait_ms / 1000,
            idle_poll_s=0.0 if scoring else IDLE_POLL_S,
        )
        if self.rebalanced and (batch or self._in_flight is not None):
            # Some of these may belong to partitions now owned by another member: drop them and go
            # back to the committed offsets, which is where the new owners start too.
            dropped = len(batch) + self._drop_in_flight()
            log.info("score stage: rebalance during batch assembly; re-reading %d messages", dropped)
            self.rewind()
            return 0
        self.update_lag()
        if not batch:
            return self.drain()
        if not self.first_input_seen:
            # `make bench` times the stage from this line to the last commit.
            self.first_input_seen = True
            log.info("score stage: first input: %d messages", len(batch))
        started = self._start(batch)
        done = self.drain()  # the batch before, while this one scores
        self._in_flight = started
        return done + (self.drain() if self._pool is None else 0)

    def drain(self) -> int:
        """Publish and commit the batch in flight, if any (waiting for its scoring); the messages
        committed, 0 when stopped before its outputs were acknowledged."""
        job, self._in_flight = self._in_flight, None
        if job is None:
            return 0
        if self._unpublished:
            job.scoring.result()  # its run ends; it is re-read from the committed offsets
            return 0
        return self._finish(job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()

    def _drop_in_flight(self) -> int:
        job, self._in_flight = self._in_flight, None
        if job is None:
            return 0
        job.scoring.result()  # let its run end; nothing of it is published
        return len(job.batch)

    def _start(self, batch: list[Any]) -> _InFlight:
        """Parse `batch` and start scoring it: on the stage's scoring thread, or here without one."""
        s = self.settings
        items: list[NewsItem] = []
        dead: list[DeadLetter] = []
        bounds, parsed_at_ms = s.event_time_bounds(), _now_ms()
        for rec in batch:
            origin = Origin(rec.topic, rec.partition, rec.offset, rec.timestamp)
            parsed = parse_message(
                rec.value, origin, max_bytes=s.max_message_bytes, bounds=bounds, now_ms=parsed_at_ms
            )
            if isinstance(parsed, DeadLetter):
                dead.append(parsed)
            else:
                items.append(parsed)
        scorer = self.scorer

        # Only the model runs on the scoring thread; records and stories (Python, in input order)
        # are built by this loop in `_finish`, while the next batch is in the model.
        def predict() -> _Predicted:
            t0 = time.perf_counter()
            pairs, failed = predict_batch(items, scorer)
            return pairs, failed, scorer.version, time.perf_counter() - t0

        if self._pool is not None:
            return _InFlight(batch, items, dead, self._pool.submit(predict))
        done: Future[_Predicted] = Future()
        done.set_result(predict())
        return _InFlight(batch, items, dead, done)

    def _finish(self, job: _InFlight) -> int:
        from kafka.structs import TopicPartition

        s, m = self.settings, self.metrics
        batch, items, dead = job.batch, job.items, job.dead
        pairs, failed, version, elapsed = job.scoring.result()
        scored = scored_records(pairs, version, now_ms=_now_ms(), stories=self.stories)
        dead.extend(failed)
        now_ms = _now_ms()
        out, scored, unwritable = scored_outgoing(s.scored_topic, scored, s.scored_tickers_topic)
        dead.extend(unwritable)
        out.extend(dead_outgoing(s.dlq_topic, dead, now_ms, s.max_message_bytes))
        # unsure messages ride with their batch: as durable as the scored records, no producer of their own
        review = self.review.low_confidence(scored) if self.review is not None else []
        out.extend(review)
        if not self.publish(out):
            log.warning("score stage: stopping with an unpublished batch of %d (not committed)", len(batch))
            self._unpublished = True
            return 0
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
        m.review.labels(reason="low_confidence").inc(len(review))
        if self.monitor is not None:
            self.monitor.observe(scored)
        if self.shadow is not None:
            self.shadow.offer(scored)
        return len(batch)


class AggregateStage(KafkaStage):
    name = "aggregate"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        stop: threading.Event,
        trend: TrendSettings,
        taxonomy: Sequence[str] = (),
    ) -> None:
        super().__init__(settings, metrics, stop, settings.aggregate_group_id)
        self.agg = Aggregator(trend, trend.source_idle_ms / 1000)
        self.taxonomy = tuple(taxonomy)  # the model's topic labels: every one exists from the start
        self.ticker_top_k = trend.ticker_metrics_top_k
        self.backlog = UpstreamBacklog(settings)
        self.backlog_at = 0.0
        self.last_backlog: tuple[Any, float] | None = None
        self.stored: dict[Any, bytes] = {}  # input partition -> the changelog value last stored for it
        self.alert_feed: AlertFeed | None = None  # the active spikes the HTTP endpoint serves

    def connect(self, topic: str | list[str]) -> bool:
        """Subscribe to `topic` (news.scored) and to the ticker copies (news.scored.tickers)."""
        s = self.settings
        topics = [topic] if isinstance(topic, str) else list(topic)
        if s.create_topics and (
            kafka_io.retrying(
                f"aggregate stage: create {s.changelog_topic}",
                lambda: changelog.ensure_topic(s),
                self.backoff,
                self._broker_error,
            )
            is None
        ):
            return False
        return super().connect([*topics, s.scored_tickers_topic])

    def source_key(self, tp: Any, source: Any) -> Any:
        """The ordered stream an event belongs to: (scored partition, raw partition) for news.scored,
        whose backlog decides how long it holds the watermark; ticker streams, being re-keyed copies of
        the same events, hold it by the wall-clock rule only (a 3-tuple, see Aggregator._busy)."""
        if tp.topic == self.settings.scored_topic:
            return (tp.partition, source)
        return (tp.topic, tp.partition, source)

    def close(self) -> None:
        self.backlog.close()
        super().close()

    def on_assigned(self) -> None:
        # Open windows may hold events of partitions now owned by another member, and our positions
        # went back to the committed offsets: rebuild from those. The changelog says, per partition,
        # how far its topics' windows were already emitted (by us, a previous run or the previous
        # owner), so their re-read events are skipped, never folded into a second, smaller record.
        self.agg.reset()
        self.stored = {}
        assignment = self.consumer.assignment()
        self._restore(assignment)
        self._open_taxonomy(assignment)
        topic = self.settings.input_topic
        try:
            parts = self.consumer.partitions_for_topic(topic) or set()
        except Exception as exc:  # metadata is an optimisation here: without it the max event time rules
            log.warning("aggregate stage: no partition metadata for %s: %s", topic, exc)
            parts = set()
        self.agg.expect_sources(
            [self.source_key(tp, (topic, p)) for tp in assignment for p in sorted(parts)],
            time.monotonic(),
        )
        self.backlog_at = 0.0

    def _open_taxonomy(self, assignment: Any) -> None:
        """Open the taxonomy's topics whose news.scored partition this member owns (the score stage
        keys by topic name, so the producer's partitioner says which partition each lands on)."""
        scored = self.settings.scored_topic
        if not self.taxonomy:
            return
        try:
            n = len(self.consumer.partitions_for_topic(scored) or ())
        except Exception as exc:
            log.warning(
                "aggregate stage: no partition metadata for %s: %s; topics open on first event", scored, exc
            )
            return
        owned = {tp.partition: tp for tp in assignment if tp.topic == scored}
        if n:
            mine = {t: owned[p] for t in self.taxonomy if (p := kafka_io.partition_for(t, n)) in owned}
            self.agg.open_topics(mine)
            log.info(
                "aggregate stage: %d of %d taxonomy topics are folded here", len(mine), len(self.taxonomy)
            )

    def _restore(self, assignment: Any) -> None:
        s = self.settings
        latest = kafka_io.retrying(
            f"aggregate stage: read {s.changelog_topic}",
            lambda: changelog.read_latest(s),
            self.backoff,
            self._broker_error,
        )
        if latest is None:
            return  # stopping
        for tp in assignment:
            found = latest.get(changelog.key_for(tp.topic, tp.partition))
            if found is None:
                continue
            value, where = found
            try:
                state = changelog.decode(value, where)
            except changelog.ChangelogError as exc:
                log.warning(
                    "aggregate stage: %s; rebuilding %s[%d] from the input", exc, tp.topic, tp.partition
                )
                continue
            self.agg.restore(tp, state)
            self.stored[tp] = value
            log.info(
                "aggregate stage: %s[%d] resumes from %s: read to %s, %d topics",
                tp.topic, tp.partition, where, state.read_to, len(state.topics),
            )  # fmt: skip

    def observe_backlog(self, now_s: float) -> None:
        """At most once a second: the upstream and own backlog that decide which streams may still deliver."""
        if now_s - self.backlog_at < BACKLOG_EVERY_S:
            return
        self.backlog_at = now_s
        seen = self.backlog.observe()
        if seen is not None:
            self.last_backlog = (seen, now_s)
        elif self.last_backlog is not None and now_s - self.last_backlog[1] <= BACKLOG_STALE_S:
            # One failed answer: the last one still holds (a stale backlog only errs towards waiting).
            seen = self.last_backlog[0]
        if seen is None:
            self.agg.observe_backlog(None, None)
            return
        raw_lag, ends = seen
        positions: dict[int, tuple[int, int | None]] = {}
        for tp in self.consumer.assignment():
            if tp.topic != self.settings.scored_topic:
                continue  # the backlog rule covers news.scored streams (see source_key)
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except Exception as exc:  # not fetched yet (just assigned): unknown this round
                log.debug("aggregate stage: position of %s: %s", tp, exc)
                continue
            if position is not None:
                positions[tp.partition] = (position, ends.get(tp.partition))
        self.agg.observe_backlog(raw_lag, positions)

    def step(self) -> int:
        from kafka.structs import TopicPartition

        s, m = self.settings, self.metrics
        records = self.poll(IDLE_POLL_S, max(s.batch_max_messages, 500))
        now_s = time.monotonic()
        self.update_lag()
        self.observe_backlog(now_s)
        bad: list[DeadLetter] = []
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            try:
                ev, source, kind = to_event(rec.value)
            except (ValueError, EventError) as exc:
                origin = Origin(rec.topic, rec.partition, rec.offset, rec.timestamp)
                bad.append(DeadLetter("invalid_scored_record", f"{origin}: {exc}", rec.value or b"", origin))
                self.agg.pending.setdefault(tp, _Pending()).next_offset = rec.offset + 1
                continue
            # Ordered streams are per (news.scored partition, news.raw partition): this consumer reads
            # its scored partitions in chunks, each interleaving events from every raw partition.
            outcome = self.agg.add(ev, tp, rec.offset, self.source_key(tp, source), now_s, kind)
            if outcome == "late" and kind == "ticker":
                m.ticker_late.inc()
            elif outcome == "late":
                m.late.labels(topic=ev.topic).inc()
            elif outcome == "duplicate":
                m.duplicates.inc()
        # Also on an empty poll: once every stream has been idle past its grace (and has no backlog),
        # the watermark moves to the newest event, so the last windows close even when all input stops.
        closed = self.agg.advance(now_s)
        if not (records or closed):
            return 0
        if self.emit(closed, bad):
            self.store_and_commit()
        return len(records)

    def store_and_commit(self) -> None:
        """Store each partition's restart state (acknowledged), then commit its offsets: a crash in
        between leaves state that is ahead of the commits only by windows it re-emits identically."""
        offsets = self.agg.safe_offsets()
        changed = {}
        for tp in offsets:
            msg = changelog.outgoing(self.settings, tp.topic, tp.partition, self.agg.snapshot(tp))
            if self.stored.get(tp) != msg.value:
                changed[tp] = msg
        if not self.publish(list(changed.values())):
            return
        self.stored.update({part: msg.value for part, msg in changed.items()})
        self.commit(offsets)

    def emit(self, closed: list[TrendRecord], bad: list[DeadLetter]) -> bool:
        s, m = self.settings, self.metrics
        topics = [r for r in closed if r.key_type == "topic"]
        tickers = [r for r in closed if r.key_type == "ticker"]
        out = (
            trend_outgoing(s.trends_topic, topics)
            + trend_outgoing(s.ticker_trends_topic, tickers)
            + dead_outgoing(s.dlq_topic, bad, _now_ms(), s.max_message_bytes)
        )
        if not self.publish(out):
            return False
        if self.alert_feed is not None:
            self.alert_feed.update([r.to_json_dict() for r in closed], _now_ms())
        for r in topics:
            m.trend_records.labels(topic=r.topic).inc()
        m.ticker_trend_records.inc(len(tickers))
        for d in bad:
            m.dlq.labels(reason=d.reason).inc()
        m.set_topic_gauges(self.agg.folder.gauges())
        if tickers:
            m.set_ticker_gauges(self.agg.tickers.gauges(), self.ticker_top_k, len(self.agg.tickers.topics()))
        return True

    def finish(self, flush: bool) -> None:
        """End of run: at the end of a replay close every window; on a signal keep them for a restart."""
        if flush and self.emit(self.agg.flush(), []):
            self.store_and_commit()
