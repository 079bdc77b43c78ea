"""finsent's scoring function alone (`Scorer.score`: tokenize + ONNX Runtime), per variant.

Texts are fed in the daemon's micro-batch size, in corpus order, so the figure is what the score
stage could do if Kafka, JSON and aggregation cost nothing: the ceiling the end-to-end run is
compared against. One warm-up batch first (ORT allocates and picks kernels on the first runs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.artifact import Artifact
from models.runtime import Scorer


def make_scorer(artifact: Artifact, provider: str, variant: str, **kwargs: Any) -> Scorer:
    return Scorer(artifact, provider=provider, variant=variant, **kwargs)


def run_scorer(
    scorer: Scorer, texts: Sequence[str], batch: int
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """(seconds for `score` over all texts in batches of `batch`, the probabilities in input order)."""
    scorer.score(list(texts[:batch]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        scorer.score(texts[i : i + batch])
    seconds = time.perf_counter() - start
    # Probabilities for the agreement check, outside the timed loop.
    return seconds, scorer.probabilities(texts)


def bench_variant(
    artifact: Artifact, provider: str, variant: str, texts: Sequence[str], batch: int, **kwargs: Any
) -> dict[str, Any]:
    scorer = make_scorer(artifact, provider, variant, **kwargs)
    seconds, probs = run_scorer(scorer, texts, batch)
    return {
        "name": f"finsent score {scorer.provider}/{scorer.variant}",
        "kind": "scoring",
        "provider": scorer.provider,
        "variant": scorer.variant,
        "batch": batch,
        "sub_batch": scorer.sub_batch,
        "n": len(texts),
        "seconds": seconds,
        "msgs_per_s": len(texts) / seconds,
        "_probs": probs,
    }


def sweep_sub_batch(
    artifact: Artifact, provider: str, variant: str, texts: Sequence[str], batch: int, sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """msgs/s per sub-batch size: the length-sorted chunk ORT runs at once."""
    out = []
    for size in sizes:
        scorer = make_scorer(artifact, provider, variant, sub_batch=size)
        seconds, _ = run_scorer(scorer, texts, batch)
        out.append({"sub_batch": size, "msgs_per_s": len(texts) / seconds})
    return out


def agreement(
    reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Share of texts whose argmax label is the same, per head; plus the largest probability gap."""
    (rt, rs), (ot, os_) = reference, other
    return {
        "topic": float((rt.argmax(1) == ot.argmax(1)).mean()),
        "sentiment": float((rs.argmax(1) == os_.argmax(1)).mean()),
        "max_abs_prob_diff": float(max(np.abs(rt - ot).max(), np.abs(rs - os_).max())),
    }
