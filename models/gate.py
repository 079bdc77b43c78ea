"""The promotion gate: a candidate replaces the current model only if, on one frozen evaluation set,
it is not worse on either head by more than a stated margin. Torch-free: both models are scored
with ONNX Runtime, exactly as the daemon would run them.

The measure per head is macro-F1 over the classes present in the evaluation set (a model that gets
better at the big topics by giving up a small one should not pass), computed on the rows labelled
for that head. `evaluate` does the scoring; `judge` is pure.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DataError

HEADS = ("topic", "sentiment")
DEFAULT_MARGIN = 0.01  # one point of macro-F1: below what re-training on the same data moves by chance


@dataclass(frozen=True)
class EvalSet:
    path: Path
    texts: tuple[str, ...]
    labels: Mapping[str, tuple[str, ...]]  # head -> one label per text, "" when unlabelled


def read_eval_set(path: str | os.PathLike[str]) -> EvalSet:
    """A CSV with `text` and `topic` and/or `sentiment` columns (blank: not labelled for that head)."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or ())
            if "text" not in fields or not fields & set(HEADS):
                raise DataError(f"{p}: needs a 'text' column and a 'topic' and/or 'sentiment' column")
            texts: list[str] = []
            labels: dict[str, list[str]] = {h: [] for h in HEADS}
            for row_no, row in enumerate(reader, start=2):
                text = (row.get("text") or "").strip()
                if not text:
                    raise DataError(f"{p}: row {row_no}: empty text")
                texts.append(text)
                for h in HEADS:
                    labels[h].append((row.get(h) or "").strip())
    except OSError as exc:
        raise DataError(f"{p}: cannot read the evaluation set: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8: {exc}") from None
    if not texts:
        raise DataError(f"{p}: the evaluation set has no rows")
    return EvalSet(p, tuple(texts), {h: tuple(v) for h, v in labels.items()})


def macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float | None:
    """Macro-F1 over the classes present in `truth`, on rows with a label; None when none has one."""
    pairs = [(t, p) for t, p in zip(truth, pred, strict=True) if t]
    if not pairs:
        return None
    scores = []
    for cls in sorted({t for t, _ in pairs}):
        tp = sum(1 for t, p in pairs if t == cls and p == cls)
        fp = sum(1 for t, p in pairs if t != cls and p == cls)
        fn = sum(1 for t, p in pairs if t == cls and p != cls)
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def evaluate(scorer: Any, data: EvalSet, batch_size: int = 256) -> dict[str, float | None]:
    """Macro-F1 per head of `scorer` on `data`."""
    preds = []
    for i in range(0, len(data.texts), batch_size):
        preds.extend(scorer.score(list(data.texts[i : i + batch_size])))
    return {
        "topic": macro_f1(data.labels["topic"], [p.topic for p in preds]),
        "sentiment": macro_f1(data.labels["sentiment"], [p.sentiment for p in preds]),
    }


def judge(
    current: Mapping[str, float | None] | None, candidate: Mapping[str, float | None], margin: float
) -> tuple[bool, list[str]]:
    """Pass unless the candidate is more than `margin` below the current model on a head. Pure."""
    if current is None:
        return True, ["no current model: nothing to regress from"]
    passed, lines = True, []
    for head in HEADS:
        cur, cand = current.get(head), candidate.get(head)
        if cur is None or cand is None:
            lines.append(f"{head}: not measured (no rows labelled for it)")
            continue
        ok = cand >= cur - margin
        passed &= ok
        lines.append(
            f"{head}: macro-F1 {cand:.4f} vs current {cur:.4f} ({cand - cur:+.4f}; allowed -{margin:.4f}): "
            + ("ok" if ok else "REGRESSION")
        )
    return passed, lines


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
