"""The review queue: messages the model is unsure of, for a person to label and a retrain to learn.

A scored message is a review candidate when its top-class probability on either head is below
`review_min_confidence`, or when a shadow model disagrees with it. Candidates go to the review topic
at most `review_per_s` per second (a token bucket) and at most once per story: the same headline
syndicated by ten outlets, or re-delivered after a crash, is one labelling job. A story is the text
with case, punctuation and spacing folded away; the last `REVIEW_STORY_MEMORY` stories are remembered.

The score stage publishes its candidates with the batch they belong to (same publish, before the
commit), so they are as durable as the scored records; the shadow publishes its own. Both go
through one `ReviewSampler`, whose state is shared under a lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.kafka_io import Outgoing
from pipeline.rate_limit import TokenBucket
from pipeline.scoring import ScoredRecord

REVIEW_STORY_MEMORY = 100_000  # stories remembered for de-duplication (~10 MB of keys)
_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def story_key(text: str) -> str:
    """The same story however it is cased, punctuated or spaced. Pure."""
    folded = _FOLD.sub(" ", text.casefold()).strip()
    return hashlib.sha1(folded.encode("utf-8")).hexdigest()[:20]


def low_confidence(r: ScoredRecord, min_confidence: float) -> list[str]:
    """The heads whose top-class probability is below `min_confidence`. Pure."""
    heads = []
    if r.topic_confidence < min_confidence:
        heads.append("topic")
    if max(r.sentiment_probs.values()) < min_confidence:
        heads.append("sentiment")
    return heads


class RecentStories:
    """A bounded memory of story keys, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """True when `key` is new (and now remembered)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True


def review_record(r: ScoredRecord, reason: str, heads: Sequence[str], shadow: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.item.id,
        "story": story_key(r.item.text),
        "text": r.item.text,
        "reason": reason,  # low_confidence | shadow_disagreement
        "heads": list(heads),
        "model_version": r.model_version,
        "topic": r.topic,
        "topic_confidence": round(r.topic_confidence, 6),
        "sentiment": r.sentiment,
        "sentiment_confidence": round(max(r.sentiment_probs.values()), 6),
        "input": r.item.origin.to_dict(),
    }
    if shadow is not None:
        out["shadow"] = {
            "model_version": shadow[0],
            "topic": shadow[1].topic,
            "sentiment": shadow[1].sentiment,
        }
    return out


class ReviewSampler:
    def __init__(
        self,
        topic: str,
        *,
        min_confidence: float,
        per_s: float,
        clock: Callable[[], float] = time.monotonic,
        memory: int = REVIEW_STORY_MEMORY,
    ) -> None:
        self.topic = topic
        self.min_confidence = min_confidence
        self.clock = clock
        self.bucket = TokenBucket(per_s, max(1.0, per_s), clock())
        self.stories = RecentStories(memory)
        self._lock = threading.Lock()

    def _take(self, text: str) -> bool:
        """A new story and a token for it (a repeated story costs no token)."""
        with self._lock:
            key = story_key(text)
            if key in self.stories:
                return False
            if not self.bucket.allow(self.clock()):
                return False
            return self.stories.add(key)

    def _out(self, rec: dict[str, Any]) -> Outgoing:
        return Outgoing(
            self.topic, rec["story"].encode(), json.dumps(rec, ensure_ascii=False).encode("utf-8")
        )

    def low_confidence(self, scored: Sequence[ScoredRecord]) -> list[Outgoing]:
        """Review records for the unsure messages of a batch (bounded, de-duplicated)."""
        out = []
        for r in scored:
            heads = low_confidence(r, self.min_confidence)
            if heads and self._take(r.item.text):
                out.append(self._out(review_record(r, "low_confidence", heads)))
        return out

    def disagreements(self, pairs: Sequence[tuple[ScoredRecord, Any]], shadow_version: str) -> list[Outgoing]:
        """Review records for messages a shadow model classed differently."""
        out = []
        for r, p in pairs:
            heads = [
                h
                for h, a, b in (("topic", r.topic, p.topic), ("sentiment", r.sentiment, p.sentiment))
                if a != b
            ]
            if heads and self._take(r.item.text):
                out.append(self._out(review_record(r, "shadow_disagreement", heads, (shadow_version, p))))
        return out
