"""PyTorch inference over tokenized texts, and the per-head reports on its output.

Shared by the training loop (validation after each epoch), `finsent export` (scores the
checkpoint's validation rows) and `finsent evaluate`; it imports nothing else from training's
loop, export or packaging, so each of those can import it at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.data import MISSING, Dataset
from training.metrics import classification_report


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def bar_interval() -> float:
    """Seconds between progress-bar redraws: live on a terminal; in a log file or CI output, where
    every redraw is a new line's worth of text, one update every 30 s."""
    import sys

    return 0.1 if sys.stderr.isatty() else 30.0


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(max((len(s) for s in seqs), default=1), 1)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


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

    model.eval()
    order = np.argsort([len(s) for s in encoded], kind="stable")
    topic: list[np.ndarray] = [np.empty(0)] * len(encoded)
    sent: list[np.ndarray] = [np.empty(0)] * len(encoded)
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(order), batch_size),
            desc=desc,
            disable=not progress,
            leave=False,
            unit="batch",
            mininterval=bar_interval(),
        ):
            idx = order[start : start + batch_size]
            ids, mask = pad_batch([encoded[i] for i in idx], pad_id)
            t, s = model(torch.from_numpy(ids), torch.from_numpy(mask))
            t_p = torch.softmax(t.float(), dim=-1).numpy()
            s_p = torch.softmax(s.float(), dim=-1).numpy()
            for row, i in enumerate(idx):
                topic[i] = t_p[row]
                sent[i] = s_p[row]
    if not encoded:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.stack(topic), np.stack(sent)


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
