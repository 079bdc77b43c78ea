"""The daemon's wiring: load the model, serve metrics, create topics, run the stages, decide when to stop.

SIGTERM/SIGINT set a stop event: an in-flight batch finishes if its publish succeeds, or is abandoned
uncommitted, and the process exits 0. Stop conditions for tests and backfills: `run(count=N)` (input
messages), `run(timeout=S)`, and `exit_when_idle_s`; those three end a replay, so the aggregate stage
then flushes its open windows. A signal does not flush: open windows are re-built from the
uncommitted events on restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry

from pipeline import kafka_io, model_lifecycle
from pipeline.alert_feed import AlertFeed
from pipeline.broker_health import BrokerHealth, BrokerProbe
from pipeline.kafka_io import Backoff
from pipeline.kafka_stage import KafkaStage
from pipeline.metrics import Metrics
from pipeline.scoring import ScorerLike
from pipeline.settings import Settings
from pipeline.stages import AggregateStage, ScoreStage

log = logging.getLogger(__name__)

DRAIN_IDLE_S = 2.0  # after run(count=) ends the score stage: how long the aggregate stage waits for more


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
        self.shadow_scorer: Any = None  # --shadow-model, loaded with the serving model
        self.lifecycle: Any = None  # pipeline.model_lifecycle.ModelLifecycle: swaps, drift, review, shadow
        self._reload_requested = False
        self.health = BrokerHealth()
        self.alert_feed = AlertFeed()  # active spikes with their headlines, served on /spikes

    def load_model(self) -> None:
        if self.scorer is not None or self.settings.stage == "aggregate":
            return
        from models.runtime import load_scorer

        s = self.settings
        self.scorer = cast(
            ScorerLike,
            load_scorer(s.model, **s.scorer_options()),
        )
        self.shadow_scorer = model_lifecycle.load_shadow(s)

    def taxonomy(self) -> tuple[str, ...]:
        """The topics the aggregate stage opens at start: the serving model's topic labels (from the
        artifact's manifest when this process does not score), or none when there is no model to read."""
        labels = getattr(self.scorer, "topic_labels", None)
        if labels:
            return tuple(labels)
        try:
            from models.artifact import load_artifact

            return tuple(load_artifact(self.settings.model, checksums=False).topic_labels)
        except Exception as exc:  # the aggregate stage works without it: topics then open on first event
            log.warning(
                "no topic taxonomy from %s (%s): topics start at their first message",
                self.settings.model,
                exc,
            )
            return ()

    def run(self, count: int | None = None, timeout: float | None = None) -> int:
        """Run until stopped, `count` input messages, `timeout` seconds or the idle limit. Exit code."""
        s = self.settings
        self.load_model()
        server = None
        if s.metrics_port:
            from pipeline.metrics import serve

            server = serve(self.registry, s.metrics_host, s.metrics_port, self.alert_feed)
        # Before topic creation, so finsent_broker_up tells the truth while that is retried too.
        probe_stop = threading.Event()
        probe = BrokerProbe(s, self.health, self.metrics, probe_stop).start()
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
                topics += [s.scored_tickers_topic, s.ticker_trends_topic]
                topics += model_lifecycle.extra_topics(s, self.shadow_scorer)
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
                self.lifecycle = model_lifecycle.ModelLifecycle(
                    s, self.metrics, self.scorer, self.shadow_scorer, provider_fallback
                )
                self.lifecycle.attach(self.score_stage)
                if self._reload_requested:
                    self.lifecycle.request_reload()
                self.score_stage.health = self.health
                threads.append(threading.Thread(target=self._score_loop, args=(count,), name="score"))
            if s.stage in ("all", "aggregate"):
                assert self.trend is not None
                self.agg_stage = AggregateStage(s, self.metrics, self.stop, self.trend, self.taxonomy())
                self.agg_stage.health = self.health
                self.agg_stage.alert_feed = self.alert_feed
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
            if self.lifecycle is not None:
                self.lifecycle.close()
            probe_stop.set()
            probe.join()
            if server is not None:
                server.shutdown()
                server.server_close()
        return 1 if self.errors else 0

    def request_reload(self) -> None:
        """SIGHUP: re-read --model at the next batch boundary (or once the score stage is up)."""
        if self.lifecycle is not None:
            self.lifecycle.request_reload()
        else:
            self._reload_requested = True

    def _guard(self, stage: KafkaStage, body: Callable[[], None]) -> None:
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
                    break
                if self._idle_expired(stage):
                    log.info("score stage: idle for %.1fs; done", self.settings.exit_when_idle_s)
                    self._ended_by_limit.set()
                    break
            # A batch still scoring (the next one's, or the one a signal interrupted) is published
            # and committed if the broker acknowledges it; otherwise it stays uncommitted.
            stage.consumed += stage.drain()

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

    def _idle_expired(self, stage: KafkaStage) -> bool:
        limit = self.settings.exit_when_idle_s
        if limit is None:
            return False
        idle = stage.idle_for()
        return idle is not None and idle >= limit
