"""`python -m bench.paired A B DATA`: are two artifacts' accuracies different, or only noise?

Two models scored on the same rows differ only on the rows one gets right and the other wrong; the
exact McNemar test asks whether those two counts are further apart than a fair coin would put them.
A difference of a few tenths of a point on a thousand rows usually is not, and a choice between two
recipes should not rest on it. Scoring is `finsent evaluate`'s: the artifacts' `Scorer`, the deployed
variant, in the same chunks (`training.inference.scorer_probabilities`).

    python -m bench.paired artifacts/A artifacts/B data/dev_feed.csv
    python -m bench.paired artifacts/A artifacts/B "../shared/data/twitter_sentiment_train.csv#topic=-"
"""

from __future__ import annotations

import argparse
import json
import sys
from math import comb
from pathlib import Path
from typing import Any

import numpy as np


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(n, 1/2) tail of the smaller discordant count."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_counts(gold: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Accuracy of each, rows only A gets right, rows only B gets right, and McNemar's p; labelled rows
    only (gold < 0 marks a row without this head's label)."""
    keep = gold >= 0
    a = pred_a[keep] == gold[keep]
    b = pred_b[keep] == gold[keep]
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return {
        "rows": int(keep.sum()),
        "accuracy_a": float(a.mean()) if a.size else 0.0,
        "accuracy_b": float(b.mean()) if b.size else 0.0,
        "only_a": only_a,
        "only_b": only_b,
        "p_value": mcnemar_p(only_a, only_b),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="first artifact")
    p.add_argument("b", type=Path, help="second artifact (same labels)")
    p.add_argument("data", help="labelled source, as for `finsent evaluate` (#topic=- for one head)")
    p.add_argument("--variant", help="ONNX variant (default: the deployed one)")
    args = p.parse_args(argv)

    from models.artifact import load_artifact
    from models.errors import ConfigError, DataError
    from models.runtime import Scorer
    from training.data import load_dataset
    from training.inference import scorer_probabilities

    try:
        first, second = load_artifact(args.a), load_artifact(args.b)
        if (first.topic_labels, first.sentiment_labels) != (second.topic_labels, second.sentiment_labels):
            raise ConfigError(f"{args.a} and {args.b} have different labels: nothing to pair")
        data = load_dataset(args.data, topics=first.topic_labels)
    except (ConfigError, DataError) as exc:
        print(f"bench.paired: {exc}", file=sys.stderr)
        return 2
    preds = []
    for art in (first, second):
        topic, sentiment = scorer_probabilities(Scorer(art, provider="cpu", variant=args.variant), data.texts)
        preds.append((topic.argmax(-1), sentiment.argmax(-1)))
    out: dict[str, Any] = {"a": first.version, "b": second.version, "data": args.data}
    heads = (
        ("topic", data.topics, data.topic_labels, first.topic_labels),
        ("sentiment", data.sentiments, data.sentiment_labels, first.sentiment_labels),
    )
    for i, (head, indices, names, model_names) in enumerate(heads):
        # the data's label indices -> the model's (same names, maybe another order); -1 stays -1
        lookup = np.array([model_names.index(n) for n in names] + [-1])
        gold = lookup[indices]
        if (gold >= 0).any():
            out[head] = counts = paired_counts(gold, preds[0][i], preds[1][i])
            print(
                f"{head}: {counts['rows']:,} rows, accuracy {first.version} {counts['accuracy_a']:.4f}, "
                f"{second.version} {counts['accuracy_b']:.4f}; right only with the first "
                f"{counts['only_a']}, only with the second {counts['only_b']}; McNemar p = {counts['p_value']:.3g}"
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
