"""The one batching helper (models/batching.py) and the code paths that share it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.batching import choose_sub_batch, fixed_sub_batches, pad, plan_sub_batches, run_sub_batches


def test_pad_right_pads_to_the_longest_and_masks_real_tokens() -> None:
    ids, mask = pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == np.int64
    empty_ids, empty_mask = pad([], pad_id=3)
    assert empty_ids.shape == empty_mask.shape == (0, 1)  # one column, as the model needs a width


def _echo(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row's first token and the width of the sub-batch it was padded to."""
    return ids[:, :1].astype(np.float32), np.full((len(ids), 1), ids.shape[1], dtype=np.int64)


def test_run_sub_batches_keeps_input_order_and_pads_each_run_to_its_own_longest() -> None:
    lengths = [30, 2, 3, 31, 2, 29, 4, 3]
    encoded = [[100 + i] + [1] * (n - 1) for i, n in enumerate(lengths)]
    first, width = run_sub_batches(encoded, _echo, pad_id=0, max_rows=4)
    assert first[:, 0].tolist() == [100 + i for i in range(len(lengths))]
    # the planner keeps the short rows apart from the long ones: none is padded past 4 tokens
    assert all(n <= w for n, w in zip(lengths, width[:, 0], strict=True))
    assert [int(w) for n, w in zip(lengths, width[:, 0], strict=True) if n < 29] == [2, 4, 2, 4, 4]
    assert {int(w) for n, w in zip(lengths, width[:, 0], strict=True) if n >= 29} == {31}
    assert width.dtype == np.int64


def test_run_sub_batches_fixed_runs_and_progress_wrapper() -> None:
    encoded = [[1] * n for n in (5, 1, 4, 2, 3)]
    seen: list[list[tuple[int, int]]] = []

    def progress(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        seen.append(spans)
        return spans

    _, width = run_sub_batches(encoded, _echo, 0, 2, overhead=None, progress=progress)
    assert seen == [fixed_sub_batches(5, 2)] == [[(0, 2), (2, 4), (4, 5)]]
    # sorted 1,2 | 3,4 | 5 -> each row's run width
    assert width[:, 0].tolist() == [5, 2, 4, 2, 4]
    with pytest.raises(ValueError, match="at least one"):
        run_sub_batches([], _echo, 0, 2)


def test_plan_respects_max_rows() -> None:
    spans = plan_sub_batches(np.array([3] * 10), 4)
    assert spans[0][0] == 0 and spans[-1][1] == 10
    assert all(0 < end - start <= 4 for start, end in spans)


def test_export_validation_runs_what_the_daemon_runs(tiny_artifact: Path) -> None:
    """The export checks score through the Scorer's own session code: for the same token ids they
    give exactly the daemon's probabilities (int8's dynamic quantisation depends on how rows are
    batched, so a different batching would validate numbers the daemon never produces)."""
    from models.artifact import load_artifact
    from models.runtime import Scorer
    from tests.support.tiny_models import TinyVocabulary
    from training.data import DEFAULT_TOPICS
    from training.export import run_onnx

    art = load_artifact(tiny_artifact)
    rows = TinyVocabulary(DEFAULT_TOPICS).rows(per_topic=4, seed=5)
    for variant in ("fp32", "int8"):
        scorer = Scorer(art, provider="cpu", variant=variant)
        texts = [r["text"] for r in rows]
        encoded = scorer.encode(texts)
        daemon = scorer.probabilities(texts)
        validated = run_onnx(art.variant_path(variant), encoded, scorer.pad_id, scorer.sub_batch)
        for d, v in zip(daemon, validated, strict=True):
            np.testing.assert_array_equal(d, v)


def test_choose_sub_batch_takes_the_fastest_or_a_smaller_size_within_tolerance() -> None:
    # seconds per row measured at each size
    assert choose_sub_batch({8: 4.2e-3, 16: 4.6e-3, 32: 5.3e-3, 64: 6.6e-3}) == 8
    assert choose_sub_batch({8: 6.0e-3, 16: 4.0e-3, 32: 3.0e-3, 64: 3.1e-3}) == 32
    # 16 is within 5% of the fastest (64): the smaller one is taken
    assert choose_sub_batch({8: 6.0e-3, 16: 3.1e-3, 32: 3.05e-3, 64: 3.0e-3}) == 16
    assert choose_sub_batch({8: 6.0e-3, 16: 3.1e-3, 64: 3.0e-3}, tolerance=0.0) == 64
    assert choose_sub_batch({32: 1.0}) == 32
    with pytest.raises(ValueError):
        choose_sub_batch({})


def test_measure_sub_batch_times_each_size_on_a_news_like_batch() -> None:
    from models.runtime import measure_sub_batch, synthetic_lengths

    lengths = synthetic_lengths(100)
    assert min(lengths) == 10 and max(lengths) == 64 and 15 <= sorted(lengths)[50] <= 30  # p50 ~ 20
    calls: list[tuple[int, ...]] = []

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray]:
        calls.append(ids.shape)
        return (np.zeros((len(ids), 1), dtype=np.float32),)

    got = measure_sub_batch(run, pad_id=0, candidates=(16, 8), rows=40)
    assert list(got) == [8, 16] and all(v > 0 for v in got.values())
    assert max(shape[0] for shape in calls) <= 16 and sum(shape[0] for shape in calls) % 40 == 0
    # a spent budget: the smallest size warmed up and timed once, no more; start-up is never held up
    calls.clear()
    assert list(measure_sub_batch(run, 0, candidates=(8, 16, 32), rows=40, budget_s=0.0)) == [8]
    assert sum(shape[0] for shape in calls) == 2 * 40 and max(shape[0] for shape in calls) <= 8


def test_scorer_measures_its_sub_batch_unless_given(tiny_artifact: Path) -> None:
    from models.artifact import load_artifact
    from models.batching import SUB_BATCH_CANDIDATES
    from models.runtime import Scorer

    art = load_artifact(tiny_artifact)
    measured = Scorer(art, provider="cpu", variant="int8", threads=1)
    assert measured.sub_batch in SUB_BATCH_CANDIDATES and measured.sub_batch_measured
    assert measured.sub_batch == choose_sub_batch(measured.sub_batch_measured)
    fixed = Scorer(art, provider="cpu", variant="int8", threads=1, sub_batch=48)
    assert fixed.sub_batch == 48 and not fixed.sub_batch_measured


def test_run_sub_batches_in_a_pool_runs_longest_first_and_keeps_input_order() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lengths = [30, 2, 3, 31, 2, 29, 4, 3, 17, 16]
    encoded = [[100 + i] + [1] * (n - 1) for i, n in enumerate(lengths)]
    widths: list[int] = []
    threads: set[str] = set()
    barrier = threading.Barrier(2, timeout=5)
    lock = threading.Lock()

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            widths.append(ids.shape[1])
            threads.add(threading.current_thread().name)
            first_two = len(widths) <= 2
        if first_two:
            barrier.wait()  # the first two runs must be in flight at once, or this times out
        return _echo(ids, mask)

    serial = run_sub_batches(encoded, _echo, 0, 4)
    with ThreadPoolExecutor(2, "test-run") as pool:
        pooled = run_sub_batches(encoded, run, 0, 4, pool=pool)
    assert [p.tolist() for p in pooled] == [s.tolist() for s in serial]
    assert len(threads) == 2
    assert widths[0] == max(lengths)  # the longest run was handed out first


def test_run_layout_gives_each_core_its_own_run_on_cpu_and_one_run_on_gpu() -> None:
    from models.runtime import run_layout

    assert run_layout("cpu", 2, None) == (2, 1)
    assert run_layout("cpu", 8, 2) == (2, 4)
    assert run_layout("cpu", 2, 1) == (1, 2)
    assert run_layout("cpu", 1, 4) == (1, 1)  # never more runs than cores
    assert run_layout("cuda", None, None) == (1, None)
    assert run_layout("cuda", 4, 3) == (1, 4)


def test_scorer_with_runs_side_by_side_scores_exactly_as_one_run(tiny_artifact: Path) -> None:
    from models.artifact import load_artifact
    from models.runtime import Scorer

    art = load_artifact(tiny_artifact)
    texts = [f"Harbin Foods {'shares ' * (i % 7)}item {i} falls after the report" for i in range(40)]
    one = Scorer(art, provider="cpu", variant="int8", threads=2, parallel_runs=1, sub_batch=4)
    two = Scorer(art, provider="cpu", variant="int8", threads=2, parallel_runs=2, sub_batch=4)
    assert (one.parallel_runs, two.parallel_runs) == (1, 2)
    for a, b in zip(one.probabilities(texts), two.probabilities(texts), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
