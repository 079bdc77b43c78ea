"""`finsent score`: score headlines from the command line or stdin with a model artifact."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score headlines with a model artifact (one JSON object per text)",
        description="Score texts given as arguments, or one per line on stdin when none are given.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT", help="headlines to score (default: read stdin)")
    p.add_argument("--model", default="artifacts/latest", help="artifact directory (default: %(default)s)")
    p.add_argument("--provider", default="auto", choices=("auto", "cuda", "cpu"), help="default: %(default)s")
    p.add_argument("--variant", default=None, choices=("fp32", "fp16", "int8"), help="default: per provider")
    p.add_argument(
        "--batch-size", type=int, default=256, help="texts per scoring call (default: %(default)s)"
    )
    p.set_defaults(handler=run)


def _texts(args: argparse.Namespace) -> Iterator[str]:
    if args.texts:
        yield from args.texts
        return
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.strip():
            yield line


def run(args: argparse.Namespace) -> int:
    from models.runtime import load_scorer

    scorer = load_scorer(args.model, provider=args.provider, variant=args.variant)
    batch: list[str] = []

    def flush() -> None:
        for text, pred in zip(batch, scorer.score(batch), strict=True):
            row = {"text": text, **pred.to_dict(), "model_version": scorer.version}
            print(json.dumps(row, ensure_ascii=False))
        batch.clear()

    for text in _texts(args):
        batch.append(text)
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()
    sys.stdout.flush()
    return 0
