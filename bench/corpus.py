"""The benchmark corpus: headlines and short articles from the project's own phrase grammar.

Real feeds mix one-line flashes with short stories, and the mix decides the cost: a transformer's
work grows with the padded token count, so a benchmark of headlines alone would flatter every
variant. Each message is a topic x sentiment cell drawn at random; `P_ARTICLE` of them get a body of
1-3 sentences from the same cell, filled with the headline's entities and figures (what an
article's lead does: say more about the same story). Entities come from the `holdout` pool,
which the starter corpus never saw.

No sentence appears twice in a corpus (headlines and body sentences alike, compared
case-insensitively), so no cache or dedup anywhere can make a run look faster than it is. One
`random.Random(seed)` drives everything: the same (n, seed) gives the same messages.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from training.corpus.build import headlines
from training.corpus.grammar import fill
from training.corpus.labels import SENTIMENTS, TOPICS
from training.corpus.phrases import all_phrases
from training.corpus.vocab import POOLS

DEFAULT_SEED = 5
P_ARTICLE = 0.4
BODY_SENTENCES = (1, 2, 3)
SOURCES = ("wire", "newsroom", "social", "filings-desk", "markets-blog")
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    headline: str
    body: str | None
    topic: str  # the cell it was drawn from (not sent: the daemon must not see labels)
    sentiment: str
    tickers: tuple[str, ...]
    source: str

    @property
    def text(self) -> str:
        """What the daemon scores: `records._text_of` joins headline and body with a newline."""
        return self.headline if not self.body else f"{self.headline}\n{self.body}"

    def to_json(self, published_at: datetime) -> bytes:
        obj: dict[str, Any] = {"id": self.id, "headline": self.headline}
        if self.body:
            obj["body"] = self.body
        obj["published_at"] = published_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        obj["source"] = self.source
        obj["tickers"] = list(self.tickers)
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _key(sentence: str) -> str:
    # A headline and the same words as a body sentence (with a full stop) count as one sentence.
    return " ".join(sentence.lower().split()).rstrip(".!?")


def _as_sentence(text: str) -> str:
    text = text.strip().rstrip(",;:")
    return text if text.endswith((".", "!", "?")) else text + "."


def build(n: int, seed: int = DEFAULT_SEED) -> list[Message]:
    """n messages, every sentence new; topic x sentiment cells drawn uniformly."""
    if n < 1:
        raise ValueError(f"corpus size must be >= 1, got {n}")
    table = all_phrases()
    pool = POOLS["holdout"]
    rng = random.Random(seed)
    cells = [(t, s) for t in TOPICS for s in SENTIMENTS]
    # The same per-cell headline streams (templates, tails, wire-style decoration) as the corpus build.
    streams = {(t, s): headlines(table[t][s], rng, pool, t, s) for t, s in cells}
    seen: set[str] = set()

    def fresh(text: str) -> bool:
        key = _key(text)
        if key in seen:
            return False
        seen.add(key)
        return True

    out: list[Message] = []
    misses = 0
    while len(out) < n:
        topic, sentiment = rng.choice(cells)
        headline, slots = next(streams[(topic, sentiment)])
        if not fresh(headline):
            misses += 1
            if misses > 200 * n:
                raise RuntimeError(f"only {len(out)} distinct headlines of {n}: the grammar is exhausted")
            continue
        body = None
        if rng.random() < P_ARTICLE:
            # An article's lead says more about the same story: the cell's other templates, filled
            # with the headline's own entities and figures (wire/social shapes excluded).
            templates = [t for t in table[topic][sentiment] if not t.startswith(("$", "BREAKING", "UPDATE"))]
            sentences = []
            for _ in range(rng.choice(BODY_SENTENCES)):
                for _try in range(20):
                    sentence = _as_sentence(fill(rng.choice(templates), slots))
                    if fresh(sentence):
                        sentences.append(sentence)
                        break
            body = " ".join(sentences) or None
        out.append(
            Message(
                id=f"bench-{seed}-{len(out):06d}",
                headline=headline,
                body=body,
                topic=topic,
                sentiment=sentiment,
                tickers=tuple(dict.fromkeys(c.ticker for c in slots.companies)),
                source=rng.choice(SOURCES),
            )
        )
    return out


def write_feed(
    messages: Sequence[Message], path: Path, *, interval_s: float, start: datetime = START
) -> Path:
    """A JSONL feed whose `published_at` advance by `interval_s` per message (`replay --speed 1` paces it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for i, m in enumerate(messages):
            fh.write(m.to_json(start + timedelta(seconds=i * interval_s)) + b"\n")
    return path


def token_lengths(texts: Sequence[str], tokenizer_path: Path, max_length: int) -> np.ndarray:
    """Token counts as the Scorer sees them (special tokens included, truncated at max_length)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return np.array([len(e.ids) for e in tok.encode_batch(list(texts))], dtype=np.int64)


def describe(messages: Sequence[Message], lengths: np.ndarray) -> dict[str, Any]:
    """The length distribution reported next to every figure."""
    articles = np.array([m.body is not None for m in messages])
    words = np.array([len(m.text.split()) for m in messages])

    def pct(a: np.ndarray) -> dict[str, float]:
        if a.size == 0:
            return {}
        return {
            "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)),
            "max": int(a.max()),
            "mean": round(float(a.mean()), 1),
        }

    return {
        "messages": len(messages),
        "articles": int(articles.sum()),
        "headlines_only": int((~articles).sum()),
        "tokens": pct(lengths),
        "tokens_headlines": pct(lengths[~articles]),
        "tokens_articles": pct(lengths[articles]),
        "words": pct(words),
        "distinct_texts": len({m.text for m in messages}),
    }
