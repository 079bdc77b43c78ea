"""Is the live prediction mix drifting from what the model saw in training? Pure.

The reference is the artifact manifest's `label_distribution` (written by `training/package.py`,
read by `models.artifact.label_distribution`):
per head, the share of each class among the model's own predictions on its held-out validation
split — data drawn like the training data. Comparing predictions with predictions means a model
that over-predicts a class does not look drifted from its first message. The live side is the mix
of the last `window` predictions (a count, not a time span, so the comparison rests on the same
sample size whatever the feed's rate; reported from MIN_MESSAGES on, while the window fills). The distance is the population stability index,
PSI = sum over classes of (live - ref) * ln(live / ref).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping

HEADS = ("topic", "sentiment")
# The usual reading of PSI: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a significant one.
# ModelDriftSuspected (deploy/prometheus/rules/model-alerts.yml) fires above this; a test keeps the two equal.
PSI_ALERT = 0.25
# Live counts get this much added per class (additive smoothing) so a class absent from the window
# has a small share instead of log(0); reference shares are floored at REF_FLOOR for the same reason.
SMOOTHING = 0.5
REF_FLOOR = 1e-4
# PSI is reported once the window holds this many predictions (or is full, if smaller): a mix that
# has not changed at all still shows a PSI of about (classes - 1) / n from sampling alone, 0.04 for
# 20 topics at 500, far enough under PSI_ALERT; fewer would let noise approach the mark.
MIN_MESSAGES = 500


def psi(reference: Mapping[str, float], counts: Mapping[str, int]) -> float:
    """PSI between reference shares and live counts, over the reference's classes plus any new ones."""
    labels = sorted(set(reference) | set(counts))
    total = sum(counts.values()) + SMOOTHING * len(labels)
    ref_total = sum(max(float(reference.get(label, 0.0)), REF_FLOOR) for label in labels)
    out = 0.0
    for label in labels:
        live = (counts.get(label, 0) + SMOOTHING) / total
        ref = max(float(reference.get(label, 0.0)), REF_FLOOR) / ref_total
        out += (live - ref) * math.log(live / ref)
    return out


class SlidingMix:
    """Class counts of the last `window` predictions of each head."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._recent: deque[tuple[str, str]] = deque()
        self.counts: dict[str, Counter[str]] = {head: Counter() for head in HEADS}

    def __len__(self) -> int:
        return len(self._recent)

    def add(self, predictions: Iterable[tuple[str, str]]) -> None:
        """Add (topic, sentiment) pairs, forgetting the oldest beyond the window."""
        for pair in predictions:
            self._recent.append(pair)
            for head, label in zip(HEADS, pair, strict=True):
                self.counts[head][label] += 1
            if len(self._recent) > self.window:
                for head, label in zip(HEADS, self._recent.popleft(), strict=True):
                    self.counts[head][label] -= 1
                    if not self.counts[head][label]:
                        del self.counts[head][label]

    def full(self) -> bool:
        return len(self._recent) >= self.window


def drift(
    reference: Mapping[str, Mapping[str, float]] | None, mix: SlidingMix, min_messages: int = MIN_MESSAGES
) -> dict[str, float] | None:
    """PSI per head once the window holds `min_messages` (or is full); None while it cannot be judged."""
    if reference is None or len(mix) < min(min_messages, mix.window):
        return None
    return {head: psi(reference[head], mix.counts[head]) for head in HEADS}
