"""A smaller student distilled from a fine-tuned teacher (`finsent distill`).

The student is the teacher with only some of its encoder layers: embeddings, the chosen layers and
both heads start as copies of the teacher's weights, so training starts from a working model
rather than from scratch. It then learns from the teacher's probabilities on every training row
(KL divergence at a temperature, both heads) and from the hard labels where a row has one, in the
loop `finsent train` uses (`training.train.train_epochs`). Export, validation and the artifact
are `finsent train`'s too, so the daemon serves a student with `--model` like any other artifact.

Validation uses the teacher's own validation rows (kept in its checkpoint) unless `valid` is given,
and those rows are removed from the training data: teacher and student are compared on the same
rows, and neither trained on them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import new_version
from models.errors import ConfigError, DataError
from training.checkpoint import checkpoint_validation, load_checkpoint, read_checkpoint_meta
from training.config import TrainConfig, TrainResult
from training.data import Dataset, load_dataset
from training.inference import head_reports, predict_probs, tokenize
from training.metrics import summarize
from training.teacher import check_distillation, distillation_loss, teacher_logits
from training.train import evaluated, publish_result, seed_everything, train_epochs

SELECTIONS = ("first", "spread")


@dataclass
class DistillConfig:
    """What decides a student; `train` holds the loop's knobs (data, epochs, rates, out, seed)."""

    teacher: str  # a checkpoint directory, or an artifact whose checkpoint can be found
    train: TrainConfig
    layers: int = 3
    # first: layers 0..n-1 (the lower layers feed each other as in the teacher);
    # spread: every (L/n)-th layer, 0, 2, 4 of 6 (each keeps the teacher's layer above it in view)
    select: str = "first"
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the teacher's soft targets; 1 - alpha on the hard labels

    def check(self) -> None:
        if self.select not in SELECTIONS:
            raise ConfigError(f"--select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        check_distillation(self.alpha, self.temperature, flags="--")
        if self.train.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.train.epochs}")


def pick_layers(teacher_layers: int, count: int, select: str = "first") -> tuple[int, ...]:
    """Which of the teacher's encoder layers the student keeps, in order."""
    if count < 1:
        raise ConfigError(f"--layers must be at least 1, got {count}")
    if count > teacher_layers:
        raise ConfigError(f"--layers {count}: the teacher has only {teacher_layers} encoder layers")
    if select == "spread":
        return tuple(i * teacher_layers // count for i in range(count))
    return tuple(range(count))


def resolve_teacher(path: Path) -> Path:
    """The teacher's checkpoint directory: `path` itself, or for an artifact the checkpoint it was
    exported from (`exported_from`) or `runs/<version>` beside its artifact root or here."""
    if not path.is_dir():
        raise ConfigError(f"--teacher {path}: no such directory")
    if (path / "checkpoint.json").is_file():
        return path
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(
            f"--teacher {path}: neither a training checkpoint (checkpoint.json) nor an artifact (manifest.json)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--teacher {manifest_path}: unreadable manifest: {exc}") from exc
    version = str(manifest.get("version", path.resolve().name))
    candidates = [Path(manifest["exported_from"])] if manifest.get("exported_from") else []
    candidates += [path.resolve().parent.parent / "runs" / version, Path("runs") / version]
    for candidate in candidates:
        if (candidate / "checkpoint.json").is_file():
            return candidate
    raise ConfigError(
        f"--teacher {path}: no PyTorch checkpoint for artifact {version} (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); distilling needs the teacher's weights: train it with `finsent train --checkpoint-dir runs`"
    )


def teacher_layer_count(checkpoint: Path) -> int:
    """Encoder layers of the checkpoint's model, from its config file (no torch needed)."""
    config_path = checkpoint / "encoder" / "config.json"
    try:
        return int(json.loads(config_path.read_text(encoding="utf-8"))["num_hidden_layers"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{config_path}: cannot read the teacher's layer count: {exc}") from exc


def build_student(teacher: Any, layers: tuple[int, ...]) -> Any:
    """A copy of the teacher (`TwoHeadClassifier`) that keeps only encoder layers `layers`."""
    import copy

    from torch import nn

    student = copy.deepcopy(teacher)
    encoder: Any = student.encoder
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise ConfigError(
            f"teacher encoder {type(encoder).__name__}: layers can only be picked from a BERT-style "
            "encoder (encoder.layer)"
        )
    encoder.encoder.layer = nn.ModuleList([stack[i] for i in layers])
    encoder.config.num_hidden_layers = len(layers)  # saved with the student's checkpoint
    return student


def without_texts(data: Dataset, texts: tuple[str, ...]) -> Dataset:
    """`data` minus the rows whose text is in `texts` (validation rows must not be trained on)."""
    held = set(texts)
    return data.subset(np.asarray([i for i, t in enumerate(data.texts) if t not in held], dtype=np.int64))


def load_rows(config: DistillConfig, checkpoint: Path, meta: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """Training rows (labels in the teacher's output order) and validation rows, disjoint."""
    topics = tuple(meta["topic_labels"])
    cfg = config.train
    train = load_dataset(cfg.data, columns=cfg.columns, topics=topics, label_map=cfg.label_map)
    if cfg.valid:
        valid = load_dataset(cfg.valid, columns=cfg.columns, topics=topics, label_map=cfg.label_map)
    else:
        valid = checkpoint_validation(checkpoint, meta)
    train = without_texts(train, valid.texts)
    if not len(train):
        raise DataError(f"{cfg.data}: no training rows left once the validation rows are held out")
    return train, valid


@dataclass
class Distilled:
    result: TrainResult  # the student, best epoch's weights, eval mode
    config: TrainConfig  # the loop's settings as run (base model and max length: the teacher's)
    info: dict[str, Any]  # teacher, layers, temperature, alpha, the teacher's validation metrics


def distill(config: DistillConfig, say: Callable[[str], None] = print) -> Distilled:
    """Teacher -> student with the chosen layers, trained on the data."""
    started = time.monotonic()
    config.check()
    checkpoint = resolve_teacher(Path(config.teacher))
    meta = read_checkpoint_meta(checkpoint)
    n_teacher = teacher_layer_count(checkpoint)
    layers = pick_layers(n_teacher, config.layers, config.select)
    train, valid = load_rows(config, checkpoint, meta)  # bad flags and data fail before torch loads
    # the student reads text exactly as the teacher does (same tokenizer, same length cap)
    cfg = replace(
        config.train,
        base_model=meta["base_model"],
        max_length=int(meta["max_length"]),
        strip_urls=bool(meta.get("training_config", {}).get("strip_urls", True)),  # in its tokenizer
        pooling=str(meta.get("pooling", "mean")),  # the student is a copy of the teacher, pooling too
    )
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    teacher, tokenizer, meta = load_checkpoint(checkpoint)
    say(
        f"teacher: {checkpoint} ({n_teacher} layers); student: layers {', '.join(map(str, layers))}; "
        f"data: {len(train)} training rows, {len(valid)} validation rows"
    )
    pad_id = int(tokenizer.pad_token_id)
    train_ids = tokenize(tokenizer, train.texts, cfg.max_length)
    valid_ids = tokenize(tokenizer, valid.texts, cfg.max_length)
    soft_t, soft_s = predict_probs(
        teacher, train_ids, pad_id, cfg.eval_batch_size, progress=cfg.progress, desc="teacher"
    )
    teacher_reports = head_reports(valid, *predict_probs(teacher, valid_ids, pad_id, cfg.eval_batch_size))

    seed_everything(cfg.seed)
    student = build_student(teacher, layers)
    del teacher
    if cfg.freeze_embeddings:
        student.encoder.get_input_embeddings().weight.requires_grad_(False)
    t_soft, s_soft = torch.from_numpy(teacher_logits(soft_t)), torch.from_numpy(teacher_logits(soft_s))
    t_all, s_all = torch.from_numpy(train.topics), torch.from_numpy(train.sentiments)
    temperature, alpha = config.temperature, config.alpha

    def soft_and_hard(t_logits: Any, s_logits: Any, idx: np.ndarray) -> tuple[Any, Any]:
        return (
            distillation_loss(t_logits, t_soft[idx], t_all[idx], temperature, alpha),
            distillation_loss(s_logits, s_soft[idx], s_all[idx], temperature, alpha),
        )

    history, best_epoch = train_epochs(student, cfg, train_ids, valid, valid_ids, pad_id, soft_and_hard, say)
    result = evaluated(student, tokenizer, (train, valid), valid_ids, cfg, history, best_epoch, started)
    reports = result.reports
    teacher_summary, student_summary = summarize(teacher_reports), summarize(reports)
    say(
        "validation accuracy, teacher -> student: "
        + ", ".join(
            f"{h} {teacher_summary[f'{h}_accuracy']:.4f} -> {student_summary[f'{h}_accuracy']:.4f}"
            for h in reports
        )
    )
    info = {
        "teacher": str(checkpoint),
        "teacher_layers": n_teacher,
        "layers": list(layers),
        "select": config.select,
        "temperature": temperature,
        "alpha": alpha,
        "teacher_metrics": teacher_summary,
    }
    return Distilled(result, cfg, info)


def distill_and_export(config: DistillConfig, say: Callable[[str], None] = print) -> Path:
    """`finsent distill`: distil -> export -> validate -> write the student's artifact; its path."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    version = new_version()
    done = distill(config, say)
    return publish_result(done.result, done.config, version, say, extra={"distilled_from": done.info})
