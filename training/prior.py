"""Label-shift correction: make a model trained on one label mix predict for another.

A classifier trained with cross-entropy estimates p(label | text) under its training mix. When the
text given a label reads the same but the labels come in other proportions (the starter corpus is
balanced over topics and 46% neutral; real feeds are a fifth company news and about two thirds
neutral), Bayes' rule gives the corrected posterior by adding log(feed share / training share) to
each label's logit (Saerens, Latinne & Decaestecker, 2002; "logit adjustment", Menon et al., 2021).
The shift is constant per label, so it is folded into the head's output bias: the exported graph,
the int8 plan and the daemon are unchanged.

The feed mix is a JSON file, one object of label -> share per head (shares are renormalised over the
model's labels); `data/feed_prior.json` is the default's, with its sources.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError

HEADS = ("topic", "sentiment")


def read_feed_prior(path: str | Path) -> dict[str, dict[str, float]]:
    """{head: {label: share}} from `path`; keys starting with '_' (comments, sources) are skipped."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: feed prior not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable feed prior: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a feed prior is an object of head -> {{label: share}}")
    out: dict[str, dict[str, float]] = {}
    for head, shares in raw.items():
        if head.startswith("_"):
            continue
        if head not in HEADS:
            raise ConfigError(f"{path}: unknown head {head!r} (expected {' or '.join(HEADS)})")
        if not isinstance(shares, dict) or not shares:
            raise ConfigError(f"{path}: {head}: expected an object of label -> share")
        for label, share in shares.items():
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not share > 0:
                raise ConfigError(
                    f"{path}: {head}: share of {label!r} must be a positive number, got {share!r}"
                )
        out[head] = {str(k): float(v) for k, v in shares.items()}
    return out


def prior_shift(
    labels: Sequence[str],
    train_counts: Mapping[str, int],
    feed: Mapping[str, float],
    *,
    strength: float = 1.0,
    where: str = "feed prior",
) -> np.ndarray:
    """Per label, `strength` * log(feed share / training share), both over `labels` only.

    A label the training data never had gets 0 (the model never learnt it; no ratio to take). Every
    label must have a feed share: a silent default would hide a typo in the file.
    """
    missing = [label for label in labels if label not in feed]
    if missing:
        raise ConfigError(f"{where}: no share for {', '.join(repr(m) for m in missing)}")
    feed_total = sum(feed[label] for label in labels)
    train_total = sum(train_counts.get(label, 0) for label in labels)
    shift = np.zeros(len(labels), dtype=np.float64)
    if train_total == 0:
        return shift
    for i, label in enumerate(labels):
        count = train_counts.get(label, 0)
        if count > 0:
            shift[i] = strength * math.log((feed[label] / feed_total) / (count / train_total))
    return shift


def shift_head_bias(head: Any, shift: np.ndarray) -> None:
    """Add `shift` to an `nn.Linear` head's bias in place (the logits move by exactly `shift`)."""
    import torch

    with torch.no_grad():
        head.bias.add_(torch.as_tensor(shift, dtype=head.bias.dtype))


def fit_bias_shift(
    log_probs: np.ndarray, truth: np.ndarray, *, l2: float = 0.01, steps: int = 500
) -> np.ndarray:
    """The per-label logit shift that best fits labelled rows (mean cross-entropy + `l2`·|shift|²).

    Where `prior_shift` corrects only a change of label mix, with shares known in advance, this
    learns the shift from a realistic labelled sample: it also absorbs a model's habit of calling a
    class too often on text unlike its training rows (the corpus-trained default calls real neutral
    posts positive or negative). The problem is convex in the shift; plain gradient descent on the
    softmax converges with a step of one over the curvature's bound (1/2 + 2·l2). A label no row carries is held back
    only by the L2 term, so it drifts down, which is the evidence: keep `l2` to stop it drifting far.
    `truth` holds label indices; rows with -1 (no label) are ignored.
    """
    rows = truth >= 0
    logits, y = np.asarray(log_probs, dtype=np.float64)[rows], truth[rows]
    if len(y) == 0:
        return np.zeros(log_probs.shape[1])
    onehot = np.eye(logits.shape[1])[y]
    shift = np.zeros(logits.shape[1])
    rate = 1.0 / (0.5 + 2 * l2)  # 1 / (a bound on the curvature): descent that cannot overshoot
    for _ in range(steps):
        z = logits + shift
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot).mean(0) + 2 * l2 * shift
        shift -= rate * grad
    return shift - shift.mean()  # softmax ignores a common offset; centred reads better
