"""The two-headed classifier: one transformer encoder, a topic head and a sentiment head.

Both heads read the same pooled sentence vector. Mean pooling (over real tokens only), the default,
is what the default base model, all-MiniLM-L6-v2, was trained with, so its sentence space is usable
from the first step; the [CLS] vector of that model was never trained to summarise the sentence.
`--pooling attention` (a learned weight per token, starting near the mean) is what `make
train-export` uses for the starter corpus: it transferred better to real tweets, while on real
training data the mean was ahead; `--pooling cls` reads the first token (docs/BENCHMARKS.md,
"Default model on real data" and "Accuracy on real data").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.config import POOLINGS
from training.data import MISSING


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    # clamp: a fully padded row (never produced by the tokenizer) must not divide by zero
    return summed / mask.sum(dim=1).clamp(min=1e-6)


class AttentionPool(nn.Module):
    """A learned score per token, softmax over the real tokens, the weighted mean of their vectors."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, 1)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(hidden).squeeze(-1)
        # the dtype's lowest value rather than -inf: a row of -inf would give NaN through softmax
        scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)
        return (hidden * weights).sum(dim=1)


class TwoHeadClassifier(nn.Module):
    """encoder -> pool (mean by default) -> dropout -> (topic logits, sentiment logits)."""

    def __init__(
        self,
        encoder: nn.Module,
        n_topics: int,
        n_sentiments: int,
        dropout: float = 0.1,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.encoder = encoder
        config: Any = encoder.config  # a Hugging Face encoder's; nn.Module's typing does not declare it
        hidden = int(config.hidden_size)
        self.pooling = pooling
        # only `attention` has weights; saved with the heads (every parameter outside `encoder.`)
        self.attention_pool = AttentionPool(hidden) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, n_topics)
        self.sentiment_head = nn.Linear(hidden, n_sentiments)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # token_type_ids are left to the encoder's default (all zeros): single-sentence inputs only,
        # and the exported graph then needs just the two inputs the daemon feeds.
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = self.dropout(self.pool(out.last_hidden_state, attention_mask))
        return self.topic_head(pooled), self.sentiment_head(pooled)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.attention_pool is not None:
            return self.attention_pool(hidden, attention_mask)
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)


class ProbabilityModel(nn.Module):
    """The graph that gets exported: softmax inside, so ONNX outputs are probabilities."""

    def __init__(self, model: TwoHeadClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        topic, sentiment = self.model(input_ids, attention_mask)
        return torch.softmax(topic, dim=-1), torch.softmax(sentiment, dim=-1)


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the rows that have a label; exactly zero (with a graph) when none has.

    Rows with `targets == MISSING` are dropped before the loss, so they contribute no gradient at
    all (not merely a small one) to this head. `F.cross_entropy` with `ignore_index` would give the
    same value but NaN when a whole batch lacks the label, which poisons the optimiser state.
    """
    keep = targets != MISSING
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], targets[keep], weight=weight)


def class_weights(labels: torch.Tensor, n_classes: int, cap: float = 10.0) -> torch.Tensor:
    """'Balanced' inverse-frequency weights over labelled rows, capped so a 3-row class cannot dominate.

    A class absent from the training data gets weight 1 (it never appears as a target anyway).
    """
    labelled = labels[labels != MISSING]
    counts = torch.bincount(labelled, minlength=n_classes).to(torch.float32)
    total = counts.sum().clamp(min=1.0)
    weights = torch.where(counts > 0, total / (n_classes * counts.clamp(min=1.0)), torch.ones_like(counts))
    return weights.clamp(max=cap)


@dataclass(frozen=True)
class HeadSpec:
    n_topics: int
    n_sentiments: int
    dropout: float = 0.1
    pooling: str = "mean"


def load_encoder(base_model: str | Path) -> nn.Module:
    """A Hugging Face encoder from a local directory, or a hub id resolved from the local cache."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(base_model))


def build_model(base_model: str | Path, spec: HeadSpec) -> TwoHeadClassifier:
    return TwoHeadClassifier(
        load_encoder(base_model), spec.n_topics, spec.n_sentiments, spec.dropout, spec.pooling
    )
