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


def run_scorer(scorer: Scorer, texts: Sequence[str], batch: int) -> tuple[float, list[Any]]:
    """(seconds for `score` over all texts in batches of `batch`, the predictions in input order)."""
    scorer.score(list(texts[:batch]))  # warm-up
    preds: list[Any] = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        preds.extend(scorer.score(texts[i : i + batch]))
    return time.perf_counter() - start, preds


def bench_variant(
    artifact: Artifact, provider: str, variant: str, texts: Sequence[str], batch: int, **kwargs: Any
) -> dict[str, Any]:
    scorer = make_scorer(artifact, provider, variant, **kwargs)
    seconds, preds = run_scorer(scorer, texts, batch)
    return {
        "name": f"finsent score {scorer.provider}/{scorer.variant}",
        "kind": "scoring",
        "provider": scorer.provider,
        "variant": scorer.variant,
        "batch": batch,
        "sub_batch": scorer.sub_batch,
        "parallel_runs": scorer.parallel_runs,
        "n": len(texts),
        "seconds": seconds,
        "msgs_per_s": len(texts) / seconds,
        "_preds": (preds, scorer.topic_labels, scorer.sentiment_labels),
    }


def sweep(
    artifact: Artifact,
    provider: str,
    variant: str,
    texts: Sequence[str],
    batch: int,
    setting: str,
    values: Sequence[int],
) -> list[dict[str, Any]]:
    """msgs/s of `Scorer.score` per value of one of its settings (`sub_batch`: the length-sorted
    chunk ORT runs at once; `parallel_runs`: runs side by side), a new scorer for each value."""
    out = []
    for value in values:
        scorer = make_scorer(artifact, provider, variant, **{setting: value})
        seconds, _ = run_scorer(scorer, texts, batch)
        out.append({"size": value, "sub_batch": scorer.sub_batch, "msgs_per_s": len(texts) / seconds})
    return out


def agreement(
    reference: tuple[np.ndarray, np.ndarray], scored: tuple[list[Any], Sequence[str], Sequence[str]]
) -> dict[str, float]:
    """Share of texts whose label is the same as the reference's argmax, per head, and the largest
    sentiment-probability gap (the predictions of the timed run are compared: no second pass)."""
    (rt, rs), (preds, topics, sentiments) = reference, scored
    topic = np.array([topics.index(p.topic) for p in preds])
    sent = np.array([sentiments.index(p.sentiment) for p in preds])
    probs = np.array([[p.sentiment_probs[s] for s in sentiments] for p in preds])
    return {
        "topic": float((rt.argmax(1) == topic).mean()),
        "sentiment": float((rs.argmax(1) == sent).mean()),
        "max_abs_prob_diff": float(np.abs(rs - probs).max()),
    }
