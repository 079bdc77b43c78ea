"""Classification metrics in plain numpy: per-class precision/recall/F1, averages, confusion matrix.

Rows whose true label is MISSING (-1) are left out: a head is scored only on rows labelled for it.
Conventions follow the usual ones: a class never predicted has precision 0, a class absent from
the truth has recall 0 and is left out of the macro average (it cannot be measured), and F1 is 0
when precision + recall is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data import MISSING


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = rows of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    keep = y_true != MISSING
    flat = y_true[keep] * n_classes + y_pred[keep]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Per-class and averaged scores for one head, as a JSON-ready dict."""
    n = len(labels)
    cm = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = support.sum()
    present = support > 0
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }

    def average(weights: np.ndarray | None) -> dict[str, float]:
        if not present.any():
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        w = present.astype(np.float64) if weights is None else weights
        return {
            "precision": float(np.average(precision, weights=w)),
            "recall": float(np.average(recall, weights=w)),
            "f1": float(np.average(f1, weights=w)),
        }

    return {
        "labels": list(labels),
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro": average(None),
        "weighted": average(support),
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def format_report(report: dict[str, Any], title: str) -> str:
    """A fixed-width table: one line per class, then macro/weighted averages and accuracy."""
    width = max([len(label) for label in report["labels"]] + [12])
    lines = [
        f"{title}  (n={report['n']})",
        f"{'':<{width}}  precision  recall     f1  support",
    ]
    for label, m in report["per_class"].items():
        lines.append(
            f"{label:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {m['support']:7d}"
        )
    lines.append("")
    for name in ("macro", "weighted"):
        m = report[name]
        lines.append(
            f"{name + ' avg':<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {report['n']:7d}"
        )
    lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {report['accuracy']:5.3f}  {report['n']:7d}")
    return "\n".join(lines)


def save_confusion_png(report: dict[str, Any], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (counts written in the cells) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion"], dtype=np.float64)
    labels = report["labels"]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.45 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} (accuracy {report['accuracy']:.3f}, n={report['n']})", fontsize=10)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color=color)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def summarize(reports: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The few numbers the manifest and early stopping use."""
    out = {}
    for head, rep in reports.items():
        out[f"{head}_accuracy"] = rep["accuracy"]
        out[f"{head}_macro_f1"] = rep["macro"]["f1"]
        out[f"{head}_weighted_f1"] = rep["weighted"]["f1"]
    out["mean_macro_f1"] = float(np.mean([rep["macro"]["f1"] for rep in reports.values()]))
    return out
