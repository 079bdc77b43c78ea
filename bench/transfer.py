"""`python -m bench.transfer [-- finsent train flags]`: how a recipe trained on the starter corpus
transfers to real news, epoch by epoch, for comparing recipes quickly (issue 10, part 3).

Trains in-process exactly as `finsent train` would with the given flags (default data: the
starter corpus; no export), and after every epoch scores a fixed random sample of each real
tweet set (`twitter_topic_train.csv`, `twitter_sentiment_train.csv` in `../shared/data` or
`$FINSENT_REAL_DATA`; the default model never trains on them) with that epoch's PyTorch weights:
accuracy per head as trained, and after the feed-prior shift (`training/prior.py`, strength 1) that
`make train-export` applies to the default model, and with each head's bias fitted on the
`--bias-fit` rows (default `data/dev_feed.csv`; `training/prior.fit_bias_shift`, which the default
applies to sentiment only; recorded as `*_calibrated`). Without the sets it says so and exits 0. The
texts stay where they are: nothing of them is written anywhere.

`finsent evaluate` on the exported artifact (docs/BENCHMARKS.md, "Default model on real data") is
the figure of record for a model; this is for choosing between recipes: same sample, same seed,
one line per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.accuracy import DEFAULT_DATA_DIR, machine

TOPIC_FILE, SENTIMENT_FILE = "twitter_topic_train.csv", "twitter_sentiment_train.csv"
RESULTS = Path("bench/results")


def sample(path: Path, column: str, n: int, rng: np.random.RandomState) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(path)
    index = rng.permutation(len(frame))[:n]
    return list(frame.text.iloc[index]), frame[column].iloc[index].to_numpy()


def accuracy(
    probs: np.ndarray, labels: tuple[str, ...], truth: np.ndarray, shift: np.ndarray | None
) -> float:
    logits = np.log(probs + 1e-12) + (0.0 if shift is None else shift)
    return float(np.mean(np.asarray(labels)[logits.argmax(1)] == truth))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    ours, train_flags = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("FINSENT_REAL_DATA", DEFAULT_DATA_DIR))
    )
    p.add_argument(
        "--n", type=int, default=2500, help="rows sampled from each real set (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--prior", default="data/feed_prior.json", help="feed prior for the shifted figures")
    p.add_argument("--label", default="", help="a name for this recipe in the output")
    p.add_argument(
        "--bias-fit",
        default="data/dev_feed.csv",
        help="labelled project rows to fit each head's bias shift on (training/prior.fit_bias_shift), "
        "reported beside the feed prior; '' to skip (default: %(default)s)",
    )
    args = p.parse_args(ours)
    if not (args.data_dir / TOPIC_FILE).is_file() or not (args.data_dir / SENTIMENT_FILE).is_file():
        print(
            f"bench-transfer: no real data in {args.data_dir} ({TOPIC_FILE}, {SENTIMENT_FILE}); nothing measured"
        )
        return 0

    from pipeline.cli import build_parser
    from training.commands import train_config
    from training.inference import predict_probs, tokenize
    from training.prior import fit_bias_shift
    from training.text import strip_urls
    from training.train import build_tokenizer, feed_prior_shifts, fit, prepare_data

    flags = train_config(
        build_parser().parse_args(["train", "--data", "data/starter_corpus.csv", *train_flags])
    )
    # the flags may name --data themselves: argparse's append then holds both; keep the user's
    config = flags if len(flags.data) == 1 else dataclasses.replace(flags, data=flags.data[1:])
    train, _ = prepare_data(config)
    topics, sentiments = train.topic_labels, train.sentiment_labels
    shifts = feed_prior_shifts(train, args.prior)  # what `finsent train --feed-prior` would add
    tokenizer = build_tokenizer(config.resolved_base_model())
    if config.strip_urls:
        strip_urls(tokenizer)
    rng = np.random.RandomState(args.seed)  # one stream: the topic sample, then the sentiment sample
    t_texts, t_truth = sample(args.data_dir / TOPIC_FILE, "topic", args.n, rng)
    s_texts, s_truth = sample(args.data_dir / SENTIMENT_FILE, "sentiment", args.n, rng)
    t_ids, s_ids = (
        tokenize(tokenizer, t_texts, config.max_length),
        tokenize(tokenizer, s_texts, config.max_length),
    )
    pad_id = int(tokenizer.pad_token_id)
    epochs: list[dict[str, Any]] = []
    dev_ids: list[list[int]] = []
    if args.bias_fit:
        import pandas as pd

        dev = pd.read_csv(args.bias_fit)
        dev_ids = tokenize(tokenizer, list(dev.text), config.max_length)
        dev_truth = {
            "topic": np.array([topics.index(t) if t in topics else -1 for t in dev.topic]),
            "sentiment": np.array([sentiments.index(s) if s in sentiments else -1 for s in dev.sentiment]),
        }

    def on_epoch(epoch: int, model: Any) -> None:
        model.eval()
        t_probs, _ = predict_probs(model, t_ids, pad_id, config.eval_batch_size)
        _, s_probs = predict_probs(model, s_ids, pad_id, config.eval_batch_size)
        row = {
            "epoch": epoch,
            "topic": accuracy(t_probs, topics, t_truth, None),
            "sentiment": accuracy(s_probs, sentiments, s_truth, None),
            "topic_shifted": accuracy(t_probs, topics, t_truth, shifts.get("topic")),
            "sentiment_shifted": accuracy(s_probs, sentiments, s_truth, shifts.get("sentiment")),
            "predicted_neutral": float(np.mean(s_probs.argmax(1) == sentiments.index("neutral"))),
        }
        if dev_ids:
            d_topic, d_sent = predict_probs(model, dev_ids, pad_id, config.eval_batch_size)
            fitted = {
                "topic": fit_bias_shift(np.log(d_topic + 1e-12), dev_truth["topic"]),
                "sentiment": fit_bias_shift(np.log(d_sent + 1e-12), dev_truth["sentiment"]),
            }
            row["topic_calibrated"] = accuracy(t_probs, topics, t_truth, fitted["topic"])
            row["sentiment_calibrated"] = accuracy(s_probs, sentiments, s_truth, fitted["sentiment"])
            row["sentiment_shift"] = [round(float(x), 3) for x in fitted["sentiment"]]
        epochs.append(row)
        print(
            f"bench-transfer: epoch {epoch}: real topic {row['topic']:.3f} sentiment {row['sentiment']:.3f}; "
            f"with the feed prior {row['topic_shifted']:.3f} / {row['sentiment_shifted']:.3f}"
            + (
                f"; bias fitted on {args.bias_fit} {row['topic_calibrated']:.3f} / "
                f"{row['sentiment_calibrated']:.3f}"
                if dev_ids
                else ""
            ),
            flush=True,
        )

    started = time.monotonic()
    result = fit(config, say=lambda line: print(line, flush=True), on_epoch=on_epoch)
    record = {
        "label": args.label,
        "train_flags": train_flags,
        "sample": {"rows_per_set": args.n, "seed": args.seed, "data": str(args.data_dir)},
        "best_epoch": result.best_epoch,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "machine": machine(),
        "epochs": epochs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"transfer-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    best = epochs[result.best_epoch - 1]
    print(
        f"bench-transfer: best epoch {result.best_epoch} (in-corpus validation): real topic {best['topic']:.3f} "
        f"sentiment {best['sentiment']:.3f}; with the feed prior {best['topic_shifted']:.3f} / "
        f"{best['sentiment_shifted']:.3f}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
