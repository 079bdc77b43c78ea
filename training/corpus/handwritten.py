"""Hand-written lines of the starter corpus (`training/corpus/written/*.csv`).

The templates give every topic x sentiment cell many sentence shapes, but all of them come from one
grammar, and a model trained on them alone reads too much direction into plain finance posts. These
files hold lines written one by one for this project, in the registers real feeds carry (wire posts
with cashtags and links, headlines, commentary, sentences from report bodies), with invented companies
and people. `build` adds them to the template rows unchanged: they are already in register.

Each file is a CSV with `text,topic,sentiment`, both labels set. A bad row stops the build with the
file and line named.
"""

from __future__ import annotations

import csv
from pathlib import Path

from training.corpus.labels import SENTIMENTS, TOPICS

WRITTEN_DIR = Path(__file__).resolve().parent / "written"
COLUMNS = ["text", "topic", "sentiment"]


class WrittenRowError(ValueError):
    """A hand-written row the corpus cannot use, with its file and line."""


def read_file(path: Path) -> list[tuple[str, str, str]]:
    """(text, topic, sentiment) for every row of one file, checked."""
    rows: list[tuple[str, str, str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != COLUMNS:
            raise WrittenRowError(f"{path}: header must be {','.join(COLUMNS)}, found {header}")
        for line, fields in enumerate(reader, start=2):
            if len(fields) != 3:
                raise WrittenRowError(f"{path}:{line}: expected 3 fields, found {len(fields)}")
            text, topic, sentiment = (f.strip() for f in fields)
            if not text:
                raise WrittenRowError(f"{path}:{line}: empty text")
            if topic not in TOPICS:
                raise WrittenRowError(f"{path}:{line}: unknown topic {topic!r}")
            if sentiment not in SENTIMENTS:
                raise WrittenRowError(f"{path}:{line}: unknown sentiment {sentiment!r}")
            rows.append((" ".join(text.split()), topic, sentiment))
    return rows


def read_all(directory: Path = WRITTEN_DIR) -> list[tuple[str, str, str]]:
    """Every file's rows, files in name order so the corpus build stays reproducible."""
    out: list[tuple[str, str, str]] = []
    for path in sorted(directory.glob("*.csv")):
        out.extend(read_file(path))
    return out
