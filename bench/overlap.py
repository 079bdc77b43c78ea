"""`python -m bench.overlap`: do the project's own texts share long word runs with the real sets?

The starter corpus, its hand-written lines and the dev feed are written for the project; the real
sets in `../shared/data` (or `$FINSENT_REAL_DATA`) are third-party text that must never be copied or
paraphrased into the repository. This check lists every project row that shares a run of `--n`
consecutive words (lower-cased, links, cashtags, handles and hashtags dropped, numbers masked) with any real row: nine
by default, since runs of eight occur in boilerplate both sides write independently ("CEO <name> on
Q2 <year> Results - Earnings Call Transcript"), while nine shared words in a row mean a copied
sentence. It
prints the project's rows only, never the real text, and exits 1 when any row matches, so it can
gate a corpus edit. Without the real sets it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.accuracy import DEFAULT_DATA_DIR

OURS = (Path("data/starter_corpus.csv"), Path("data/dev_feed.csv"))
REAL = ("twitter_topic_train.csv", "twitter_sentiment_train.csv")
_DROP = re.compile(r"https?://\S+|\$[A-Za-z]{1,6}\b|[@#]\w+")
_WORD = re.compile(r"[a-z]+|\d[\d,.]*")


def words(text: str) -> list[str]:
    """The words that carry a sentence: no links, cashtags, handles or hashtags; every number the same token."""
    return ["0" if w[0].isdigit() else w for w in _WORD.findall(_DROP.sub(" ", text).lower())]


def runs(text: str, n: int) -> Iterator[tuple[str, ...]]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield tuple(w[i : i + n])


def texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def shared_runs(ours: Iterable[str], theirs: Iterable[str], n: int) -> list[str]:
    """Our texts that share at least one n-word run with any of theirs."""
    seen = {run for text in theirs for run in runs(text, n)}
    return [text for text in ours if any(run in seen for run in runs(text, n))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overlap", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("FINSENT_REAL_DATA", DEFAULT_DATA_DIR))
    )
    p.add_argument("--n", type=int, default=9, help="words in a shared run (default: %(default)s)")
    p.add_argument("files", nargs="*", type=Path, default=list(OURS), help="project CSVs with a text column")
    args = p.parse_args(argv)
    real = [args.data_dir / name for name in REAL if (args.data_dir / name).is_file()]
    if not real:
        print(f"bench-overlap: no real data in {args.data_dir}; nothing checked")
        return 0
    theirs = [text for path in real for text in texts(path)]
    found = 0
    for path in args.files:
        hits = shared_runs(texts(path), theirs, args.n)
        found += len(hits)
        print(f"bench-overlap: {path}: {len(hits)} rows share a {args.n}-word run with the real sets")
        for text in hits[:20]:
            print(f"  {text}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
