"""`finsent retrain`: training data + reviewed labels -> a candidate -> the gate -> maybe `latest`.

Steps, each a command that exists on its own:
1. `review merge`: the labelled review rows are appended to the training data; rows whose story is in
   the frozen evaluation set are dropped first (training on the exam would pass any gate);
2. `finsent train` (a subprocess: this module stays torch-free) into a scratch root, so `latest`
   is not touched; the candidate is then moved beside the other artifacts under `--root`;
3. `promote`: candidate and current model on the frozen evaluation set, `gate.json` written into
   the candidate, `latest` re-pointed only on a pass. A running daemon swaps to it by itself.
Exit 0: promoted; 1: the gate refused (the candidate stays under --root for inspection).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

from models.errors import DataError, FinsentError
from pipeline.cli import finsent_argv


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="fine-tune on training data + reviewed labels, publish the candidate only if it passes the gate",
        description="review merge -> finsent train (into a scratch root) -> finsent promote.",
    )
    p.add_argument("--data", required=True, metavar="CSV", help="training data (text, topic, sentiment)")
    p.add_argument("--reviewed", nargs="*", default=[], metavar="CSV", help="labelled `review export` files")
    p.add_argument("--eval", required=True, metavar="CSV", help="frozen evaluation set (never trained on)")
    p.add_argument("--root", default="artifacts", help="artifacts directory (default: %(default)s)")
    p.add_argument("--margin", type=float, help="allowed macro-F1 drop per head (default: 0.01)")
    p.add_argument("--work-dir", help="scratch directory (default: <root>/.retrain)")
    p.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="after `--`: arguments for `finsent train` (e.g. -- --base-model DIR --epochs 3 --topics data)",
    )
    p.set_defaults(handler=run)


def drop_eval_stories(rows: list[dict[str, str]], eval_texts: list[str]) -> tuple[list[dict[str, str]], int]:
    """Training rows whose story (text folded as the review queue folds it) is in the eval set. Pure."""
    from pipeline.review import story_key

    held_out = {story_key(t) for t in eval_texts}
    kept = [r for r in rows if story_key(r["text"]) not in held_out]
    return kept, len(rows) - len(kept)


def _read_texts(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [row.get("text") or "" for row in csv.DictReader(fh)]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from models.promote import gate_and_promote
    from pipeline.review_cli import LABEL_COLUMNS, labelled_rows, write_csv

    root = Path(args.root)
    work = Path(args.work_dir) if args.work_dir else root / ".retrain"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731

    # 1. training data + reviewed rows, without the evaluation set's stories
    with open(args.data, newline="", encoding="utf-8") as fh:
        rows = [{c: row.get(c) or "" for c in LABEL_COLUMNS} for row in csv.DictReader(fh)]
    base_n = len(rows)
    for path in args.reviewed:
        rows.extend(labelled_rows(Path(path)))
    rows, dropped = drop_eval_stories(rows, _read_texts(Path(args.eval)))
    merged = work / "train.csv"
    write_csv(merged, rows, LABEL_COLUMNS)
    say(
        f"retrain: {base_n} training rows + {len(rows) + dropped - base_n} reviewed, "
        f"{dropped} dropped as evaluation-set stories -> {merged}"
    )

    # 2. train into the scratch root (its own `latest`), then move the candidate beside the others
    train_args = [a for a in args.train_args if a != "--"]
    cmd = finsent_argv("train", "--data", str(merged), "--out", str(work / "out"))
    result = subprocess.run([*cmd, *train_args], check=False)
    if result.returncode != 0:
        raise FinsentError(f"finsent train failed (exit {result.returncode}); nothing published")
    built = (work / "out" / "latest").resolve()
    candidate = root / built.name
    if candidate.exists():
        raise FinsentError(f"{candidate}: already exists; the candidate stays at {built}")
    root.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(candidate))
    say(f"retrain: candidate {candidate}")

    # 3. the gate
    promoted, _report = gate_and_promote(candidate, root, Path(args.eval), margin=args.margin, say=say)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if promoted else 1
