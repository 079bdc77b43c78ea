"""The two baselines, on the fine-tuned PyTorch weights (a `finsent train --checkpoint-dir` checkpoint).

A: the Hugging Face `transformers.pipeline` a user would reach for first. Our model has two heads
   (topic + sentiment) over one mean-pooled encoder, so no stock task pipeline can run it:
   `text-classification` expects a `...ForSequenceClassification` with one logits tensor. The
   honest equivalent is a small `Pipeline` subclass whose preprocess / _forward / postprocess run
   our `TwoHeadClassifier`; everything else (per-text preprocessing, the DataLoader, padding
   collation, unbatching) is the library's own machinery, which is exactly what we measure.
B: the same model batched by hand: fixed-size chunks in input order, each padded to its longest
   text by the tokenizer, under `torch.inference_mode()`.
Both return (topic_probs, sentiment_probs) as numpy arrays in input order, like `Scorer.probabilities`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def load(checkpoint: Path, threads: int | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(TwoHeadClassifier in eval mode, HF fast tokenizer, checkpoint metadata)."""
    import torch

    from training.checkpoint import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    return load_checkpoint(Path(checkpoint))


def _pipeline_class() -> type:
    """Defined lazily: subclassing `transformers.Pipeline` imports torch and transformers."""
    import torch
    from torch import nn
    from transformers import Pipeline

    class ModelView(nn.Module):
        """What `Pipeline.__init__` reads from a model (config, device) around our two-headed one."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.inner = model
            self.config = model.encoder.config

        @property
        def device(self) -> torch.device:
            return next(self.inner.parameters()).device

        def can_generate(self) -> bool:
            return False

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            return self.inner(input_ids, attention_mask)

    class TwoHeadPipeline(Pipeline):
        """text -> {"topic", "topic_score", "sentiment", "sentiment_score"}, via our two heads."""

        def __init__(self, model: nn.Module, tokenizer: Any, max_length: int, **kwargs: Any) -> None:
            self.max_length = max_length
            super().__init__(model=ModelView(model), tokenizer=tokenizer, framework="pt", **kwargs)

        def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
            return {}, {}, {}

        def preprocess(self, text: str, **_: Any) -> dict[str, Any]:
            return self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt")

        def _forward(self, inputs: dict[str, Any], **_: Any) -> dict[str, Any]:
            topic, sentiment = self.model(inputs["input_ids"], inputs["attention_mask"])
            return {"topic": topic.softmax(-1), "sentiment": sentiment.softmax(-1)}

        def postprocess(self, outputs: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {
                "topic": outputs["topic"][0].float().numpy(),
                "sentiment": outputs["sentiment"][0].float().numpy(),
            }

    return TwoHeadPipeline


def make_pipeline(model: Any, tokenizer: Any, max_length: int, device: str = "cpu") -> Any:
    return _pipeline_class()(model, tokenizer, max_length, device=device)


def pipeline_probs(pipe: Any, texts: Sequence[str], batch_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Baseline A: the pipeline over the list of texts (batch_size None = the library default)."""
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    rows = pipe(list(texts), **kwargs)
    return np.stack([r["topic"] for r in rows]), np.stack([r["sentiment"] for r in rows])


def eager_probs(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline B: padded fixed-size batches in input order, `torch.inference_mode()`."""
    import torch

    topic, sentiment = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            t, s = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            topic.append(t.softmax(-1).float().cpu().numpy())
            sentiment.append(s.softmax(-1).float().cpu().numpy())
    return np.concatenate(topic), np.concatenate(sentiment)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of one call, after a GPU sync when torch has one in use."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result
