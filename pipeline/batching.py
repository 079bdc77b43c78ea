"""Micro-batch assembly: bounded by size and by how long the first message may wait.

A batch starts when the first message arrives and is closed when it holds `max_messages` or when
`max_wait_s` has passed since that first message, whichever comes first. Under load batches fill up
(throughput); on a quiet feed a lone headline waits at most `max_wait_s` (latency). Grouping texts
by length is the Scorer's job; this module only decides which messages go together.

`poll` and `clock` are passed in, so the policy is tested with a scripted feed and a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# poll(timeout_s, max_records) -> the records that arrived, possibly none.
Poll = Callable[[float, int], Sequence[T]]


def collect_batch(
    poll: Poll[T],
    *,
    max_messages: int,
    max_wait_s: float,
    idle_poll_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[T]:
    """One micro-batch; empty when nothing arrived within `idle_poll_s`."""
    batch = list(poll(idle_poll_s, max_messages))
    if not batch:
        return batch
    deadline = clock() + max_wait_s
    while len(batch) < max_messages:
        remaining = deadline - clock()
        if remaining <= 0:
            break
        batch.extend(poll(remaining, max_messages - len(batch)))
    return batch


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Fixed-size batches of an iterable (the `--direct` replay has no wait time to bound)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
