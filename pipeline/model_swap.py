"""May a new artifact replace the running one? Pure: labels and probe outputs in, a verdict out.

The aggregator's state (windows, baselines, spike hysteresis) is keyed by topic name, so a model
with another topic set would silently orphan some of that state and start new series for others:
it is refused unless the operator allows it. A model that loads but answers nonsense (wrong
shapes, NaN, rows that are not probabilities) is refused too, before it scores a single message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Outcomes of a reload, the values of finsent_model_swaps_total{outcome}.
SWAPPED = "swapped"
REFUSED_LABELS = "refused_labels"
REFUSED_INVALID = "refused_invalid"
OUTCOMES = (SWAPPED, REFUSED_LABELS, REFUSED_INVALID)

# Scored once by every candidate before it goes live: short and long, plain and odd input.
PROBE_TEXTS = (
    "Shares rise after quarterly profit beats forecasts",
    "Oil falls as inventories build",
    "x",
    "Central bank holds rates steady; markets " + "wait " * 40,
)
# Rows of a softmax output sum to 1 up to float32 (and fp16) rounding.
PROBE_SUM_TOLERANCE = 1e-2


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # one of OUTCOMES
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == SWAPPED


def label_verdict(current: Sequence[str], candidate: Sequence[str], *, allow_change: bool) -> Verdict:
    """Refuse a different topic set unless allowed; a mere reordering is harmless (the scorer maps
    columns to names with its own labels, and the aggregator only sees names)."""
    added = sorted(set(candidate) - set(current))
    removed = sorted(set(current) - set(candidate))
    if not added and not removed:
        return Verdict(SWAPPED)
    what = "; ".join(
        part
        for part in (
            f"new topics {', '.join(added)}" if added else "",
            f"missing topics {', '.join(removed)}" if removed else "",
        )
        if part
    )
    if allow_change:
        return Verdict(SWAPPED, f"topic labels change ({what}); allowed by allow_label_change")
    return Verdict(
        REFUSED_LABELS,
        f"topic labels differ from the running model's ({what}); the aggregator's state is keyed by "
        "topic: set allow_label_change (--allow-label-change) to accept",
    )


def probe_verdict(topic_p: np.ndarray, sent_p: np.ndarray, n_texts: int, n_topics: int) -> Verdict:
    """Check the candidate's answers to PROBE_TEXTS: shapes, finiteness, rows summing to 1."""
    for head, probs, width in (("topic", topic_p, n_topics), ("sentiment", sent_p, 3)):
        if probs.shape != (n_texts, width):
            return Verdict(
                REFUSED_INVALID,
                f"probe batch: {head} output shape {probs.shape}, expected {(n_texts, width)}",
            )
        if not np.isfinite(probs).all():
            return Verdict(REFUSED_INVALID, f"probe batch: {head} output has NaN or infinite values")
        sums = probs.sum(axis=1)
        worst = float(np.abs(sums - 1.0).max())
        if worst > PROBE_SUM_TOLERANCE or float(probs.min()) < 0.0:
            return Verdict(
                REFUSED_INVALID,
                f"probe batch: {head} rows are not probabilities (|sum - 1| up to {worst:.3g})",
            )
    return Verdict(SWAPPED)
