"""Shadow scoring: a candidate model scores the batches the serving model scored, off the hot path.

The score stage hands each committed batch to `ShadowScorer.offer`, which never blocks: the batch
goes into a small queue, or, when the shadow has fallen that far behind, is skipped and counted
(`finsent_shadow_messages_total{outcome="skipped"}`). A thread of its own scores the queue with the
candidate, compares head by head (`compare`, pure) and samples disagreements, at a bounded rate,
onto the shadow topic. Nothing the shadow does reaches `news.scored` or the commits: a shadow that
is slow, broken or unreachable costs the stream nothing but a log line and a counter.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.kafka_io import Outgoing
from pipeline.rate_limit import TokenBucket
from pipeline.scoring import ScoredRecord

log = logging.getLogger(__name__)

HEADS = ("topic", "sentiment")
QUEUE_BATCHES = 4  # how far (in batches) the shadow may lag before batches are skipped


@dataclass
class Comparison:
    """Per head: predictions both models agree on, and disagreements by (serving, shadow) class."""

    agree: Counter[str] = field(default_factory=Counter)
    flips: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (head, serving, shadow)
    disagreeing: list[int] = field(default_factory=list)  # indexes into the batch


def compare(served: Sequence[ScoredRecord], shadow: Sequence[Any]) -> Comparison:
    """Compare the serving model's records with the shadow's predictions (same order). Pure."""
    out = Comparison()
    for i, (r, p) in enumerate(zip(served, shadow, strict=True)):
        differs = False
        for head, a, b in (("topic", r.topic, p.topic), ("sentiment", r.sentiment, p.sentiment)):
            if a == b:
                out.agree[head] += 1
            else:
                out.flips[(head, a, b)] += 1
                differs = True
        if differs:
            out.disagreeing.append(i)
    return out


def disagreement_record(r: ScoredRecord, p: Any, shadow_version: str) -> dict[str, Any]:
    """What goes to the shadow topic: the text, where it came from, and both models' answers."""
    return {
        "id": r.item.id,
        "text": r.item.text,
        "input": r.item.origin.to_dict(),
        "serving": {
            "model_version": r.model_version,
            "topic": r.topic,
            "topic_confidence": round(r.topic_confidence, 6),
            "sentiment": r.sentiment,
            "sentiment_probs": {k: round(v, 6) for k, v in r.sentiment_probs.items()},
        },
        "shadow": {
            "model_version": shadow_version,
            "topic": p.topic,
            "topic_confidence": round(float(p.topic_confidence), 6),
            "sentiment": p.sentiment,
            "sentiment_probs": {k: round(float(v), 6) for k, v in p.sentiment_probs.items()},
        },
        "disagree": [
            h for h, a, b in (("topic", r.topic, p.topic), ("sentiment", r.sentiment, p.sentiment)) if a != b
        ],
    }


class ShadowScorer:
    def __init__(
        self,
        scorer: Any,
        metrics: Any,
        topic: str,
        publish: Callable[[list[Outgoing]], Any],
        *,
        sample_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        queue_batches: int = QUEUE_BATCHES,
        review: Any = None,
    ) -> None:
        self.scorer = scorer
        self.metrics = metrics
        self.topic = topic
        self.publish = publish
        self.clock = clock
        self.review = review  # pipeline.review.ReviewSampler: disagreements are review candidates too
        self.limiter = TokenBucket(sample_per_s, max(1.0, sample_per_s), clock())
        self._queue: queue.Queue[Sequence[ScoredRecord] | None] = queue.Queue(maxsize=queue_batches)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, scored: Sequence[ScoredRecord]) -> bool:
        """Queue a committed batch for the shadow; never waits. False (counted) when it is behind."""
        if not scored:
            return True
        try:
            self._queue.put_nowait(list(scored))
        except queue.Full:
            self.metrics.shadow_messages.labels(outcome="skipped").inc(len(scored))
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Let the shadow finish what is queued (up to `timeout`), then stop its thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                self.process(batch)
            except Exception:  # the shadow must never take the daemon down
                log.exception("shadow: a batch of %d could not be compared", len(batch))
                self.metrics.shadow_messages.labels(outcome="failed").inc(len(batch))

    def process(self, batch: Sequence[ScoredRecord]) -> Comparison:
        m = self.metrics
        preds = self.scorer.score([r.item.text for r in batch])
        cmp = compare(batch, preds)
        m.shadow_messages.labels(outcome="compared").inc(len(batch))
        for head in HEADS:
            m.shadow_agree.labels(head=head).inc(cmp.agree[head])
        for (head, served, shadow), n in cmp.flips.items():
            m.shadow_flips.labels(head=head, serving=served, shadow=shadow).inc(n)
        out = []
        for i in cmp.disagreeing:
            if not self.limiter.allow(self.clock()):
                break
            rec = disagreement_record(batch[i], preds[i], self.scorer.version)
            out.append(
                Outgoing(self.topic, batch[i].item.id.encode(), json.dumps(rec, ensure_ascii=False).encode())
            )
        review = []
        if self.review is not None:
            pairs = [(batch[i], preds[i]) for i in cmp.disagreeing]
            review = self.review.disagreements(pairs, self.scorer.version)
        if out or review:
            try:
                self.publish(out + review)
                m.shadow_samples.inc(len(out))
                m.review.labels(reason="shadow_disagreement").inc(len(review))
            except Exception as exc:  # a sample lost is a sample; the comparison metrics stand
                log.warning(
                    "shadow: %d disagreement samples not published to %s: %s", len(out), self.topic, exc
                )
        return cmp
