"""A teacher's soft targets and the distillation loss, shared by `finsent train --teacher` (any
base, the teacher read from its ONNX artifact) and `finsent distill` (a student cut from the
teacher's own layers, the teacher read from its PyTorch checkpoint).

Kept free of the training loop's module so that both can import it: training/train.py and
training/distill.py each use it, and distill already imports train.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError
from training.data import Dataset


def distillation_loss(
    student_logits: Any, teacher_logits: Any, targets: Any, temperature: float, alpha: float
) -> Any:
    """alpha * T^2 * KL(teacher || student) at temperature T, plus (1 - alpha) * cross-entropy on
    the rows with a label. Every row has the teacher's soft targets, so a row labelled for one head
    only still teaches the other. T^2 keeps the soft term's gradients on the hard term's scale."""
    from torch.nn import functional as F

    from training.model import masked_cross_entropy

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = masked_cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def teacher_logits(probs: np.ndarray) -> np.ndarray:
    """Logits from the teacher's probabilities: log p is the logits minus their log-sum-exp, and
    softmax ignores a shift, so softmax(log p / T) is exactly the teacher's softmax at T."""
    return np.log(np.maximum(probs, 1e-30)).astype(np.float32)


def check_distillation(alpha: float, temperature: float, flags: str = "--teacher-") -> None:
    """`flags`: the prefix of the two options' names in the command that set them."""
    if not temperature > 0:
        raise ConfigError(f"{flags}temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"{flags}alpha must be within [0, 1], got {alpha}")


def label_columns(teacher: tuple[str, ...], student: tuple[str, ...], head: str, where: str) -> list[int]:
    """For each of the student's labels, the teacher's output column that holds it. The student
    may use fewer topics than the teacher (its data's); a label the teacher lacks is an error."""
    missing = [label for label in student if label not in teacher]
    if missing:
        raise ConfigError(
            f"--teacher {where}: its {head} head has no {', '.join(repr(m) for m in missing)} "
            f"(it has {', '.join(teacher)})"
        )
    return [teacher.index(label) for label in student]


def load_teacher_artifact(path: str | Path) -> Any:
    """The teacher's artifact (checked now, so a bad --teacher stops the run before training)."""
    from models.artifact import load_artifact
    from models.errors import ArtifactError

    try:
        return load_artifact(Path(path))
    except ArtifactError as exc:
        raise ConfigError(f"--teacher {path}: {exc}") from exc


def artifact_soft_targets(
    artifact: Any,
    data: Dataset,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher artifact's (topic, sentiment) logits on `data`'s texts, in `data`'s label order.

    Scored through ONNX Runtime as the daemon scores (its tokenizer, its length cap, the CPU's
    variant: int8, which the export checked against fp32), so the teacher may be of any base,
    and no PyTorch checkpoint of it is needed."""
    from models.runtime import Scorer
    from training.inference import scorer_probabilities

    where = str(artifact.path)
    t_cols = label_columns(tuple(artifact.topic_labels), tuple(data.topic_labels), "topic", where)
    s_cols = label_columns(tuple(artifact.sentiment_labels), tuple(data.sentiment_labels), "sentiment", where)
    scorer = Scorer(artifact, provider="cpu")
    topic_p, sent_p = scorer_probabilities(scorer, list(data.texts), progress)
    # columns the student lacks are dropped; log_softmax in the loss renormalises what is left
    return teacher_logits(topic_p[:, t_cols]), teacher_logits(sent_p[:, s_cols])
