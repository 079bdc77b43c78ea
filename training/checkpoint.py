"""Training checkpoints: write one (`finsent train --checkpoint-dir`), read one back, and turn one
into a validated artifact again (`finsent export`).

Re-exporting is useful after changing export settings (opset, fusions) or the runtime, without
retraining. A checkpoint holds the merged encoder, the tokenizer, the heads' weights and
`checkpoint.json` (labels, config, metrics, the validation rows); `save_checkpoint` and
`load_checkpoint` are the two halves of that format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError
from training.config import TrainConfig, TrainResult
from training.data import Columns, Dataset, load_dataset
from training.export import ExportOptions
from training.inference import head_reports, predict_probs, tokenize
from training.package import PackageInput, package_artifact


def save_checkpoint(result: TrainResult, config: TrainConfig, directory: Path) -> Path:
    """PyTorch weights + tokenizer + metadata, enough for `finsent export` to re-export later."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    result.model.encoder.save_pretrained(directory / "encoder")
    result.tokenizer.save_pretrained(directory / "tokenizer")
    heads = {k: v for k, v in result.model.state_dict().items() if not k.startswith("encoder.")}
    torch.save(heads, directory / "heads.pt")
    valid = result.valid
    meta = {
        "topic_labels": list(valid.topic_labels),
        "sentiment_labels": list(valid.sentiment_labels),
        "dropout": config.dropout,
        "pooling": config.pooling,
        "max_length": config.max_length,
        "base_model": config.resolved_base_model(),
        "data_fingerprint": result.train.fingerprint(),
        "training_config": config.to_json(),
        "best_epoch": result.best_epoch,
        "history": [asdict(h) for h in result.history],
        "reports": result.reports,
        "valid": {
            "texts": list(valid.texts),
            "topics": valid.topics.tolist(),
            "sentiments": valid.sentiments.tolist(),
        },
    }
    (directory / "checkpoint.json").write_text(
        json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8"
    )
    return directory


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    """`checkpoint.json` alone (no torch): labels, config, the validation rows."""
    meta_path = directory / "checkpoint.json"
    if not meta_path.is_file():
        raise ConfigError(
            f"{meta_path}: not a training checkpoint (written by `finsent train --checkpoint-dir`)"
        )
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{meta_path}: unreadable checkpoint metadata: {exc}") from exc


def checkpoint_validation(directory: Path, meta: dict[str, Any]) -> Dataset:
    """The validation rows the checkpoint's model was selected on, as a Dataset."""
    rows = meta["valid"]
    return Dataset(
        texts=tuple(rows["texts"]),
        topics=np.asarray(rows["topics"], dtype=np.int64),
        sentiments=np.asarray(rows["sentiments"], dtype=np.int64),
        topic_labels=tuple(meta["topic_labels"]),
        source=f"{directory}/checkpoint.json",
    )


def load_checkpoint(directory: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, metadata) from a checkpoint directory."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from training.model import TwoHeadClassifier

    meta = read_checkpoint_meta(directory)
    try:
        encoder = AutoModel.from_pretrained(str(directory / "encoder"))
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"), use_fast=True)
        heads = torch.load(directory / "heads.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{directory}: unreadable checkpoint: {exc}") from exc
    model = TwoHeadClassifier(
        encoder,
        len(meta["topic_labels"]),
        len(meta["sentiment_labels"]),
        float(meta.get("dropout", 0.1)),
        str(meta.get("pooling", "mean")),  # checkpoints from before the option pooled by mean
    )
    model.load_state_dict({**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **heads})
    return model.eval(), tokenizer, meta


def _training_texts(meta: dict[str, Any], columns: Columns, exclude: set[str]) -> tuple[str, ...]:
    """The checkpoint's training texts, re-read from the data it names, less the validation rows:
    int8 measures its smoothing and static ranges on them."""
    spec = (meta.get("training_config") or {}).get("data")
    try:
        if not spec:
            raise ValueError("the checkpoint names no training data")
        data = load_dataset(spec, columns=columns, topics=tuple(meta["topic_labels"]))
    except Exception as exc:  # any reader error: say which file and why int8 needs it
        raise ConfigError(
            f"int8 smoothing and static ranges are measured on the training texts, but the checkpoint's "
            f"training data {spec!r} cannot be read ({exc})"
        ) from exc
    return tuple(t for t in data.texts if t not in exclude)


def export_checkpoint(
    directory: Path,
    out: Path,
    *,
    valid: str | None = None,
    columns: Columns | None = None,
    options: ExportOptions | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    columns = columns or Columns()
    options = options or ExportOptions()
    model, tokenizer, meta = load_checkpoint(directory)
    topics = tuple(meta["topic_labels"])
    if valid:
        data = load_dataset(valid, columns=columns, topics=topics)
    else:
        data = checkpoint_validation(directory, meta)
    max_length = int(meta["max_length"])
    calibration: tuple[str, ...] = ()
    if "int8" in options.variants:
        try:
            calibration = _training_texts(meta, columns, exclude=set(data.texts))
        except ConfigError as exc:
            if options.int8 == "static":
                raise
            say(f"int8 without smoothing: {exc}")
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
            calibration_texts=calibration,
        ),
        out,
        options=options,
        say=say,
    )
