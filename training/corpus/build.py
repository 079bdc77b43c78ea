"""Build the starter corpus: `python -m training.corpus.build --out data/starter_corpus.csv`.

Every topic x sentiment cell gets a fixed number of headlines, drawn by cycling through that cell's
templates in a shuffled order (so every sentence shape is used, none dominates), rendered with
the `train` entity pool, decorated in wire style, and kept only if new, 4-35 words long; then it is
dressed as a social feed would carry it (links, hashtags, cashtag leads, `style.register`). The
hand-written lines of `training/corpus/written/` (`handwritten`) join them as they are, less any
that repeat a row already taken. Then a slice of rows loses one label, as in real partially labelled data, and the rows are shuffled. One
`random.Random(seed)` drives all of it, so the same seed gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from training.corpus import handwritten, style, tails
from training.corpus.grammar import Slots, fill, render
from training.corpus.labels import SENTIMENTS, TOPICS
from training.corpus.phrases import Table, all_phrases
from training.corpus.vocab import POOLS, Pool

DEFAULT_SEED = 20260302
DEFAULT_OUT = Path("data/starter_corpus.csv")
# Headlines per topic for each sentiment. Most real finance news is neutral (announcements, schedules,
# explainers; about two thirds of a labelled social feed), so neutral is the largest share here too,
# short of a majority so both directional classes keep enough variety to learn from.
PER_TOPIC = {"negative": 60, "neutral": 100, "positive": 64}
# General and political news is mostly neutral for markets (a storm, a campaign, a protest); its
# negative and positive cells hold only what moves prices, so they are smaller.
PER_TOPIC_OVERRIDES = {
    "General News | Opinion": {"negative": 52, "neutral": 120, "positive": 52},
    "Politics": {"negative": 52, "neutral": 120, "positive": 52},
}
P_ROUNDUP = 0.05
P_TAIL = 0.16
P_TOPIC_ONLY = 0.08
P_SENTIMENT_ONLY = 0.08
MIN_WORDS, MAX_WORDS = 4, 35
COLUMNS = ("text", "topic", "sentiment")


@dataclass(frozen=True)
class Row:
    text: str
    topic: str  # "" when unlabelled
    sentiment: str  # "" when unlabelled


def check_table(table: Table) -> None:
    """The phrase tables cover exactly the label sets."""
    if sorted(table) != sorted(TOPICS):
        missing, extra = set(TOPICS) - set(table), set(table) - set(TOPICS)
        raise ValueError(f"phrase tables: missing topics {sorted(missing)}, unknown topics {sorted(extra)}")
    for topic, cells in table.items():
        if sorted(cells) != sorted(SENTIMENTS):
            raise ValueError(f"phrase tables: topic {topic!r} has sentiments {sorted(cells)}")


def one_headline(
    template: str, rng: random.Random, pool: Pool, topic: str, sentiment: str
) -> tuple[str, Slots]:
    """One rendered headline, sometimes with a second clause that suits its topic and sentiment."""
    text, slots = render(template, rng, pool)
    if rng.random() < P_TAIL:
        choices = tails.options(topic, sentiment, bool(slots.companies))
        tail = rng.choice(choices) if choices else ""
        if tail and tails.fits(tail, text, topic):
            slots.values["whose"] = tails.whose(text, slots)
            text += fill(tail, slots, clause=True)
    return text, slots


def headlines(
    templates: list[str], rng: random.Random, pool: Pool, topic: str, sentiment: str
) -> Iterator[tuple[str, Slots]]:
    """Endless decorated headlines for one cell, cycling through its templates in shuffled rounds."""
    while True:
        order = list(templates)
        rng.shuffle(order)
        for template in order:
            text, slots = one_headline(template, rng, pool, topic, sentiment)
            if rng.random() < P_ROUNDUP:
                second, more = one_headline(rng.choice(templates), rng, pool, topic, sentiment)
                text = style.roundup(text, second)
                slots.companies.extend(more.companies)
            yield style.decorate(text, slots, rng), slots


def take_unique(
    source: Iterator[tuple[str, Slots]], n: int, seen: set[str], where: str, max_tries: int = 200
) -> list[tuple[str, Slots]]:
    """The next `n` headlines that are new (case-insensitively) and of acceptable length."""
    out: list[tuple[str, Slots]] = []
    misses = 0
    while len(out) < n:
        text, slots = next(source)
        key = " ".join(text.lower().split())
        if key in seen or not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            misses += 1
            if misses > max_tries * n:
                raise RuntimeError(f"{where}: only {len(out)} of {n} distinct headlines; add templates")
            continue
        seen.add(key)
        out.append((text, slots))
    return out


def build_rows(
    seed: int = DEFAULT_SEED,
    pool: str = "train",
    per_topic: dict[str, int] | None = None,
    written: list[tuple[str, str, str]] | None = None,
) -> list[Row]:
    """The corpus: template rows for every cell, then the hand-written rows (`handwritten.read_all()`
    unless `written` is given; pass [] for templates only)."""
    table = all_phrases()
    check_table(table)
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[Row] = []
    for topic in TOPICS:
        for sentiment in SENTIMENTS:
            source = headlines(table[topic][sentiment], rng, POOLS[pool], topic, sentiment)
            n = (per_topic or PER_TOPIC_OVERRIDES.get(topic, PER_TOPIC))[sentiment]
            for text, slots in take_unique(source, n, seen, f"{topic}/{sentiment}"):
                rows.append(Row(style.register(text, slots, rng), topic, sentiment))
    for text, topic, sentiment in handwritten.read_all() if written is None else written:
        key = " ".join(text.lower().split())
        if key not in seen and MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            seen.add(key)
            rows.append(Row(text, topic, sentiment))
    rows = blank_some_labels(rows, rng)
    rng.shuffle(rows)
    return rows


def blank_some_labels(rows: list[Row], rng: random.Random) -> list[Row]:
    """About 8% of rows keep only the topic, about 8% only the sentiment."""
    out = []
    for row in rows:
        u = rng.random()
        if u < P_TOPIC_ONLY:
            out.append(Row(row.text, row.topic, ""))
        elif u < P_TOPIC_ONLY + P_SENTIMENT_ONLY:
            out.append(Row(row.text, "", row.sentiment))
        else:
            out.append(row)
    return out


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow((row.text, row.topic, row.sentiment))
    return buf.getvalue()


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_csv(rows), encoding="utf-8")
    tmp.replace(path)  # atomic, so a reader never sees half a corpus


def distribution(rows: list[Row], table: Table | None = None) -> str:
    """The README's description of the corpus, computed (tests check the README quotes it)."""
    table = table or all_phrases()
    per_cell = [len(table[t][s]) for t in TOPICS for s in SENTIMENTS]
    topics = Counter(r.topic for r in rows if r.topic)
    sentiments = Counter(r.sentiment for r in rows if r.sentiment)
    cells = Counter((r.topic, r.sentiment) for r in rows if r.topic and r.sentiment)
    topic_only = sum(1 for r in rows if r.topic and not r.sentiment)
    sentiment_only = sum(1 for r in rows if r.sentiment and not r.topic)
    texts = {" ".join(r.text.lower().split()) for r in rows}
    written = sum(1 for text, _, _ in handwritten.read_all() if " ".join(text.lower().split()) in texts)
    return (
        f"{sum(per_cell):,} headline templates ({min(per_cell)}–{max(per_cell)} per topic×sentiment cell) "
        f"and {written:,} hand-written lines. "
        f"Distribution: {len(rows):,} rows; {len(topics)} topics with {min(topics.values())}–"
        f"{max(topics.values())} rows each; sentiment {sentiments['negative']:,} negative, "
        f"{sentiments['neutral']:,} neutral, {sentiments['positive']:,} positive; {topic_only} rows carry "
        f"only a topic and {sentiment_only} only a sentiment. Every fully labelled topic×sentiment cell "
        f"holds {min(cells.values())}–{max(cells.values())} rows."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.corpus.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="generator seed (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        rows = build_rows(args.seed)
    except handwritten.WrittenRowError as err:
        print(f"corpus: {err}", file=sys.stderr)
        return 2
    write_csv(rows, args.out)
    both = sum(1 for r in rows if r.topic and r.sentiment)
    print(f"wrote {len(rows)} rows ({both} fully labelled) to {args.out}", file=sys.stderr)
    print(distribution(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
