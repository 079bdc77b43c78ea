"""`finsent export`: turn a saved training checkpoint into a validated artifact again.

Useful after changing export settings (opset, fusions) or the runtime, without retraining. The
checkpoint (written by `finsent train --checkpoint-dir`) holds the merged encoder, the tokenizer,
the heads' weights and `checkpoint.json` (labels, config, metrics, the validation rows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError
from training.data import Columns, Dataset, load_dataset
from training.export import ExportOptions


def load_checkpoint(directory: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, metadata) from a checkpoint directory."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from training.model import TwoHeadClassifier

    meta_path = directory / "checkpoint.json"
    if not meta_path.is_file():
        raise ConfigError(
            f"{meta_path}: not a training checkpoint (written by `finsent train --checkpoint-dir`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        encoder = AutoModel.from_pretrained(str(directory / "encoder"))
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"), use_fast=True)
        heads = torch.load(directory / "heads.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{directory}: unreadable checkpoint: {exc}") from exc
    model = TwoHeadClassifier(
        encoder, len(meta["topic_labels"]), len(meta["sentiment_labels"]), float(meta.get("dropout", 0.1))
    )
    model.load_state_dict({**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **heads})
    return model.eval(), tokenizer, meta


def export_checkpoint(
    directory: Path,
    out: Path,
    *,
    valid: str | None = None,
    columns: Columns | None = None,
    options: ExportOptions | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    from training.package import PackageInput, package_artifact
    from training.train import head_reports, predict_probs, tokenize

    columns = columns or Columns()
    options = options or ExportOptions()
    model, tokenizer, meta = load_checkpoint(directory)
    topics = tuple(meta["topic_labels"])
    if valid:
        data = load_dataset(valid, columns=columns, topics=topics)
    else:
        rows = meta["valid"]
        data = Dataset(
            texts=tuple(rows["texts"]),
            topics=np.asarray(rows["topics"], dtype=np.int64),
            sentiments=np.asarray(rows["sentiments"], dtype=np.int64),
            topic_labels=topics,
            source=f"{directory}/checkpoint.json",
        )
    max_length = int(meta["max_length"])
    encoded = tokenize(tokenizer, data.texts, max_length)
    topic_p, sent_p = predict_probs(model, encoded, int(tokenizer.pad_token_id), 128)
    return package_artifact(
        PackageInput(
            model=model,
            tokenizer=tokenizer,
            valid=data,
            reports=head_reports(data, topic_p, sent_p),
            base_model=meta["base_model"],
            data_fingerprint=meta["data_fingerprint"],
            training_config=meta["training_config"],
            max_length=max_length,
            extra={
                "best_epoch": meta.get("best_epoch"),
                "history": meta.get("history", []),
                "exported_from": str(directory),
            },
        ),
        out,
        options=options,
        say=say,
    )
