"""Running a model over many token sequences: sort by length, cut into sub-batches, pad each to its
own longest row, run, and put the outputs back in input order. numpy only.

One helper for every place that does it: the daemon's `Scorer` (ONNX Runtime), training's
validation pass (PyTorch) and the export checks. News mixes 6-word flashes with 60-word leads, and
padding every flash to the longest lead would multiply the work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor

import numpy as np

# On the CPU, one session run costs about as much as this many more tokens of work (its fixed part:
# ~60 kernel calls and thread-pool hand-offs), measured on the 2-core bench machine with MiniLM.
RUN_OVERHEAD_TOKENS = 8.0

Spans = list[tuple[int, int]]
# (input_ids, attention_mask) -> one array per output, first axis = rows of the sub-batch
RunFn = Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]]


def plan_sub_batches(
    sorted_lengths: np.ndarray, max_rows: int, overhead: float = RUN_OVERHEAD_TOKENS
) -> Spans:
    """Cut length-sorted texts into contiguous runs of at most `max_rows`, minimising the padded
    tokens computed plus `overhead` per run (dynamic programming over the cut points).

    Fixed-size chunks are only right for large batches, where each chunk spans a narrow band of
    lengths. A small micro-batch (a quiet minute: 35 texts of 5 to 64 tokens) in one chunk pads
    every flash to the longest lead and does twice the work; here it becomes a few runs of
    similar length.
    """
    n = len(sorted_lengths)
    widths = np.maximum(np.asarray(sorted_lengths, dtype=np.float64), 1.0)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        lo = max(0, j - max_rows)
        # a run [i, j) is padded to its longest text, widths[j - 1] (sorted ascending)
        cost = best[lo:j] + overhead + (j - np.arange(lo, j)) * widths[j - 1]
        k = int(np.argmin(cost))
        best[j] = cost[k]
        cut[j] = lo + k
    spans: Spans = []
    j = n
    while j > 0:
        spans.append((int(cut[j]), j))
        j = int(cut[j])
    return spans[::-1]


def fixed_sub_batches(n: int, max_rows: int) -> Spans:
    """Consecutive runs of `max_rows` (the last one shorter)."""
    return [(i, min(i + max_rows, n)) for i in range(0, n, max_rows)]


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 (input_ids, attention_mask) to the longest of `seqs` (at least one
    column), without a per-row loop.

    The mask is a broadcast comparison and the ids are scattered through it in one assignment:
    row-major order of the True cells is exactly the concatenation of the sequences.
    """
    if lengths is None:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    width = max(int(lengths.max(initial=0)), 1)
    mask = np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]
    input_ids = np.full(mask.shape, pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter(
        itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum())
    )
    return input_ids, mask.astype(np.int64)


def run_sub_batches(
    encoded: Sequence[Sequence[int]],
    run: RunFn,
    pad_id: int,
    max_rows: int,
    *,
    overhead: float | None = RUN_OVERHEAD_TOKENS,
    progress: Callable[[Spans], Iterable[tuple[int, int]]] | None = None,
    pool: Executor | None = None,
) -> tuple[np.ndarray, ...]:
    """`run` over `encoded` in length-sorted, individually padded sub-batches of at most `max_rows`;
    its outputs stacked with one row per sequence, in input order.

    `overhead` (tokens per run) plans the cuts with `plan_sub_batches`; None cuts fixed runs of
    `max_rows` (a GPU, where the fixed cost of a run dwarfs padding, or PyTorch). `progress` may
    wrap the list of spans (a progress bar). `pool` runs the sub-batches concurrently (ONNX Runtime
    releases the GIL inside a run), longest first so that the last one to finish is a short one.
    Needs at least one sequence: the output widths come from the first run.
    """
    n = len(encoded)
    if n == 0:
        raise ValueError("run_sub_batches needs at least one sequence")
    lengths = np.fromiter((len(x) for x in encoded), dtype=np.int64, count=n)
    order = np.argsort(lengths, kind="stable")
    if overhead is None:
        spans = fixed_sub_batches(n, max_rows)
    else:
        spans = plan_sub_batches(lengths[order], max_rows, overhead)

    def one(span: tuple[int, int]) -> tuple[np.ndarray, Sequence[np.ndarray]]:
        idx = order[span[0] : span[1]]
        return idx, run(*pad([encoded[i] for i in idx], pad_id, lengths[idx]))

    if pool is not None and len(spans) > 1:
        parts: Iterable[tuple[np.ndarray, Sequence[np.ndarray]]] = pool.map(one, spans[::-1])
    else:
        parts = map(one, progress(spans) if progress else spans)
    results: list[np.ndarray] = []
    for idx, outs in parts:
        if not results:
            results = [np.empty((n, *out.shape[1:]), dtype=out.dtype) for out in outs]
        for whole, part in zip(results, outs, strict=True):
            whole[idx] = part
    return tuple(results)


# Sub-batch sizes tried at CPU start-up (`models.runtime.measure_sub_batch`), smallest first.
SUB_BATCH_CANDIDATES = (8, 16, 32, 64)


def choose_sub_batch(seconds_per_row: dict[int, float], tolerance: float = 0.05) -> int:
    """The sub-batch size to run with, from measured seconds per row at each candidate size.

    The fastest size wins, except that a smaller size within `tolerance` of the fastest is taken
    instead: a shared machine's timing noise is a few percent, and a smaller run pads less on the
    daemon's mixed-length batches and holds a quiet minute's few texts for less time.
    """
    if not seconds_per_row:
        raise ValueError("choose_sub_batch needs at least one measured size")
    best = min(seconds_per_row.values())
    return min(size for size, t in seconds_per_row.items() if t <= best * (1.0 + tolerance))
