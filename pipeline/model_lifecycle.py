"""The model's life in the running daemon, wired to the score stage in one place: swaps
(`model_reload`), confidence and drift (`model_monitor`), the review queue (`review`) and the shadow
(`shadow`). `pipeline.app` creates one of these and attaches it; each part stays a module of its own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pipeline import kafka_io
from pipeline.metrics import Metrics
from pipeline.model_monitor import ModelMonitor
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def load_shadow(settings: Settings) -> Any:
    """The --shadow-model Scorer (at start, so a bad artifact is a plain CLI error), or None."""
    path = settings.shadow_model
    if not path:
        return None
    from models.runtime import load_scorer

    # One intra-op thread: the shadow may take one core from the serving model, not all of them.
    return load_scorer(path, **{**settings.scorer_options(), "threads": 1, "parallel_runs": 1})


def extra_topics(settings: Settings, shadow_scorer: Any) -> list[str]:
    """Topics the life-cycle parts publish to, for creation at start."""
    s = settings
    topics = [s.shadow_topic] if shadow_scorer is not None else []
    if s.review_per_s > 0 and s.stage in ("all", "score"):
        topics.append(s.review_topic)
    return topics


class ModelLifecycle:
    def __init__(
        self, settings: Settings, metrics: Metrics, scorer: Any, shadow_scorer: Any, fallback: Any
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fallback = fallback  # (settings, scorer) -> bool: pipeline.app.provider_fallback
        self.monitor = ModelMonitor(metrics, settings.drift_window_messages, scorer)
        self.reloader = self._reloader(scorer)
        self.review = self._review()
        self._producer: list[Any] = []  # the shadow's producer, once it has published
        self.shadow = self._shadow(shadow_scorer)

    def attach(self, stage: Any) -> None:
        """Hand the parts to the score stage, which calls them between and after batches."""
        stage.reloader = self.reloader
        stage.monitor = self.monitor
        stage.review = self.review
        stage.shadow = self.shadow

    def request_reload(self) -> None:
        if self.reloader is not None:
            self.reloader.request()

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        for producer in self._producer:
            producer.close()

    def _reloader(self, scorer: Any) -> Any:
        """A swapper for the score stage; none for a scorer that is not from an artifact (tests)."""
        if getattr(scorer, "artifact", None) is None:
            return None
        from pipeline.model_reload import ModelReloader

        s = self.settings

        def make_scorer(path: Any) -> Any:
            from models.runtime import load_scorer

            return load_scorer(path, **s.scorer_options())

        def on_outcome(outcome: str, new: Any) -> None:
            self.metrics.model_swaps.labels(outcome=outcome).inc()
            if new is not None:
                self.metrics.set_model(new.version, new.provider, new.variant, self.fallback(s, new))
                self.monitor.set_model(new)

        return ModelReloader(
            s.model,
            scorer,
            make_scorer=make_scorer,
            interval_s=s.model_check_interval_s,
            allow_label_change=s.allow_label_change,
            on_outcome=on_outcome,
        )

    def _review(self) -> Any:
        s = self.settings
        if s.review_per_s <= 0:
            return None
        from pipeline.review import ReviewSampler

        return ReviewSampler(s.review_topic, min_confidence=s.review_min_confidence, per_s=s.review_per_s)

    def _shadow(self, sc: Any) -> Any:
        """The shadow worker, with a producer of its own for the samples."""
        if sc is None:
            return None
        from pipeline.shadow import ShadowScorer

        s = self.settings

        def publish(out: list[kafka_io.Outgoing]) -> None:
            if not self._producer:  # created on first use: a broker down at start must not stop the daemon
                self._producer.append(kafka_io.make_producer(s, f"finsent-shadow-{os.getpid()}"))
            kafka_io.publish(self._producer[0], out, timeout_s=10.0)

        self.metrics.shadow_info.info({"version": sc.version, "provider": sc.provider, "variant": sc.variant})
        log.info("shadow model %s: provider=%s variant=%s", sc.version, sc.provider, sc.variant)
        shadow = ShadowScorer(
            sc, self.metrics, s.shadow_topic, publish, sample_per_s=s.shadow_sample_per_s, review=self.review
        )
        shadow.start()
        return shadow
