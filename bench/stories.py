"""`python -m bench.stories` (`make bench-stories`): how well `StoryIndex` groups reprints.

On tests/feeds/reprints.jsonl (known stories in `truth_story`, see bench/reprint_feed.py) it feeds
every message to one index in time order and counts, over all pairs of messages, how many the index
put in one story (predicted) and how many are one story (true):

    precision = pairs grouped correctly / pairs grouped      recall = pairs grouped correctly / true pairs

plus the story count and how many messages were marked first of their story, for a sweep of the
similarity threshold (the default marked). Then the cost: microseconds per message (in the daemon's
batches, and one at a time) and retained
bytes per remembered text on a larger feed (default tests/feeds/calm_day.jsonl, which has no planted
reprints: what it groups is either a paraphrase the generator made or a false merge).
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from pipeline.records import parse_published_at
from pipeline.stories import JACCARD_MIN, StoryIndex

REPO = Path(__file__).resolve().parents[1]
FEED = REPO / "tests" / "feeds" / "reprints.jsonl"
COST_FEED = REPO / "tests" / "feeds" / "calm_day.jsonl"
SWEEP = (0.3, 0.4, JACCARD_MIN, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class Grouping:
    messages: int
    true_stories: int
    stories: int
    firsts: int
    precision: float
    recall: float


def read_feed(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pairwise(truth: list[str], predicted: list[str]) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping against the truth (1.0 when nothing to count)."""
    both = grouped = same = 0
    for i, j in combinations(range(len(truth)), 2):
        t, p = truth[i] == truth[j], predicted[i] == predicted[j]
        both += t and p
        grouped += p
        same += t
    return (both / grouped if grouped else 1.0), (both / same if same else 1.0)


def measure(rows: list[dict], min_similarity: float = JACCARD_MIN) -> Grouping:
    index = StoryIndex(min_similarity=min_similarity)
    got = [index.assign(r["text"], parse_published_at(r["published_at"]), r["id"]) for r in rows]
    truth = [r["truth_story"] for r in rows]
    precision, recall = pairwise(truth, [g.story for g in got])
    return Grouping(
        messages=len(rows),
        true_stories=len(set(truth)),
        stories=len({g.story for g in got}),
        firsts=sum(g.first for g in got),
        precision=precision,
        recall=recall,
    )


BATCH = 256  # the daemon's default micro-batch: the score stage assigns a batch's stories at once


def cost(rows: list[dict]) -> tuple[float, float, float, int]:
    """(microseconds per message assigned in batches of BATCH as the daemon does, the same one at a
    time, retained bytes per remembered text, texts grouped as reprints) over `rows` in one index."""
    items = [
        (r.get("text") or r.get("headline") or "", parse_published_at(r["published_at"]), f"c{i}")
        for i, r in enumerate(rows)
    ]
    index = StoryIndex()
    t0 = time.perf_counter()
    got = [a for i in range(0, len(items), BATCH) for a in index.assign_many(items[i : i + BATCH])]
    batched_us = (time.perf_counter() - t0) / len(items) * 1e6
    index = StoryIndex()
    t0 = time.perf_counter()
    for item in items:
        index.assign(*item)
    single_us = (time.perf_counter() - t0) / len(items) * 1e6
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    index = StoryIndex(horizon_ms=10**12)  # keeps every text: dicts do not shrink after evictions
    for i in range(0, len(items), BATCH):
        index.assign_many(items[i : i + BATCH])
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return batched_us, single_us, retained / max(1, len(index)), sum(not a.first for a in got)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stories", description=__doc__.splitlines()[0])
    p.add_argument("--feed", type=Path, default=FEED, help="JSONL with text, published_at, truth_story")
    p.add_argument("--cost-feed", type=Path, default=COST_FEED, help="feed timed for the cost figures")
    args = p.parse_args(argv)
    rows = read_feed(args.feed)
    print(f"{args.feed.name}: pairwise grouping against truth_story")
    print("| threshold | precision | recall | stories (true) | first of story |")
    print("| --- | --- | --- | --- | --- |")
    for thr in SWEEP:
        g = measure(rows, thr)
        mark = " (default)" if thr == JACCARD_MIN else ""
        print(
            f"| {thr:.1f}{mark} | {g.precision:.3f} | {g.recall:.3f} | {g.stories} ({g.true_stories}) "
            f"| {g.firsts} of {g.messages} |"
        )
    sizes = Counter(Counter(r["truth_story"] for r in rows).values())
    print("copies per true story:", dict(sorted(sizes.items())))
    cost_rows = read_feed(args.cost_feed)
    batched, single, per_entry, reprints = cost(cost_rows)
    print(
        f"{args.cost_feed.name}: {batched:.0f} us per message in batches of {BATCH} ({single:.0f} one at a "
        f"time), {per_entry:.0f} bytes per remembered text, {reprints} of {len(cost_rows)} grouped as reprints"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
