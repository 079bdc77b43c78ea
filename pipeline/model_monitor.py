"""What the serving model is doing, as metrics: how sure it is, and whether its prediction mix is
drifting from the one it had on its validation split (`pipeline/drift.py`). A thin shell over the
pure drift functions: the score stage hands it each committed batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pipeline.drift import HEADS, SlidingMix, drift
from pipeline.metrics import Metrics
from pipeline.scoring import ScoredRecord

log = logging.getLogger(__name__)


class ModelMonitor:
    def __init__(self, metrics: Metrics, window: int, scorer: Any = None) -> None:
        self.metrics = metrics
        self.window = window
        self.set_model(scorer)

    def set_model(self, scorer: Any) -> None:
        """A new model: a new reference and an empty window (the old model's mix says nothing)."""
        artifact = getattr(scorer, "artifact", None)
        self.reference = None if artifact is None else artifact.label_distribution
        self.mix = SlidingMix(self.window)
        self.metrics.drift_psi.clear()
        self.metrics.drift_reference.set(0 if self.reference is None else 1)
        if artifact is not None and self.reference is None:
            log.warning(
                "model %s: manifest has no label_distribution (an older artifact): drift unavailable",
                artifact.version,
            )

    def observe(self, scored: Sequence[ScoredRecord]) -> None:
        conf = self.metrics.confidence
        topic_h, sent_h = conf.labels(head="topic"), conf.labels(head="sentiment")  # one lookup a batch
        for r in scored:
            topic_h.observe(r.topic_confidence)
            sent_h.observe(max(r.sentiment_probs.values()))
        self.mix.add((r.topic, r.sentiment) for r in scored)
        psi = drift(self.reference, self.mix)
        if psi is not None:
            for head in HEADS:
                self.metrics.drift_psi.labels(head=head).set(psi[head])
