"""PyTorch inference over tokenized texts, and the per-head reports on its output.

Shared by the training loop (validation after each epoch), `finsent export` (scores the
checkpoint's validation rows) and `finsent evaluate`; it imports nothing else from training's
loop, export or packaging, so each of those can import it at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from models.batching import Spans, run_sub_batches
from training.data import MISSING, Dataset
from training.metrics import classification_report


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def bar_interval() -> float:
    """Seconds between progress-bar redraws: live on a terminal; in a log file or CI output, where
    every redraw is a new line's worth of text, one update every 30 s."""
    import sys

    return 0.1 if sys.stderr.isatty() else 30.0


def predict_probs(
    model: Any,
    encoded: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str = "evaluate",
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch probabilities for pre-tokenized texts, length-sorted batches, input order kept."""
    import torch
    from tqdm import tqdm

    if not encoded:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, s = model(torch.from_numpy(ids), torch.from_numpy(mask))
        return torch.softmax(t.float(), dim=-1).numpy(), torch.softmax(s.float(), dim=-1).numpy()

    def bar(spans: Spans) -> Iterable[tuple[int, int]]:
        return tqdm(
            spans, desc=desc, disable=not progress, leave=False, unit="batch", mininterval=bar_interval()
        )

    model.eval()
    with torch.inference_mode():
        # fixed runs of batch_size: the planner's cost per run was measured for ONNX Runtime, not PyTorch
        topic, sentiment = run_sub_batches(encoded, run, pad_id, batch_size, overhead=None, progress=bar)
    return topic, sentiment


# Texts per `Scorer` call when a whole labelled set is scored (`finsent evaluate`, `bench.paired`):
# dynamic int8 depends on the batch, so tools that compare figures score in the same chunks.
EVALUATE_CHUNK = 256


def scorer_probabilities(
    scorer: Any, texts: Sequence[str], progress: Callable[[Iterable[int]], Iterable[int]] = iter
) -> tuple[np.ndarray, np.ndarray]:
    """(topic, sentiment) probabilities of an ONNX `Scorer` over `texts`, in chunks of EVALUATE_CHUNK;
    `progress` wraps the chunk starts (a tqdm bar, say)."""
    topic_parts, sent_parts = [], []
    for start in progress(range(0, len(texts), EVALUATE_CHUNK)):
        t, s = scorer.probabilities(texts[start : start + EVALUATE_CHUNK])
        topic_parts.append(t)
        sent_parts.append(s)
    return np.concatenate(topic_parts), np.concatenate(sent_parts)


def head_reports(data: Dataset, topic_p: np.ndarray, sent_p: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per-head reports, each on the rows labelled for that head (a head with none is left out)."""
    reports = {}
    for head, truth, probs, labels in (
        ("topic", data.topics, topic_p, data.topic_labels),
        ("sentiment", data.sentiments, sent_p, data.sentiment_labels),
    ):
        if (truth != MISSING).any():
            reports[head] = classification_report(truth, probs.argmax(axis=1), labels)
    return reports
