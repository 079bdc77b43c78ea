"""The arithmetic ceiling: how fast could any runtime score this corpus on this machine?

A transformer encoder on a CPU is matrix multiplication: every token goes through each layer's
QKV, output, and two feed-forward projections, and each message's tokens attend to each other.
This part counts those multiply-adds from the exported graph (no guessing from the config), times
ONNX Runtime's own GEMM kernels on the same shapes with the Scorer's thread settings, fp32 and
u8s8 int8, and divides. The result is the rate at which the model's arithmetic alone would run,
with no padding, no tokenizer and nothing else: the upper bound for finsent, for baseline A and
for every other runtime that uses these kernels on this machine. The
ratio of that bound to baseline A says how large a speed-up the machine permits at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Rows of one GEMM call in the scorer: a sub-batch of 32 texts x ~27 tokens on the bench corpus.
DEFAULT_ROWS = 864


def graph_work(onnx_path: Path) -> dict[str, Any]:
    """Multiply-adds of the exported fp32 graph: per token (projections) and per attention layer.

    - MatMul / fused Attention nodes with a 2-D weight initializer run once per token: K x N each.
    - Each Attention node also costs 2 x len^2 x hidden per message (scores and weighted sum).
    - Gemm nodes (the two heads on the pooled vector) run once per message.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    dims = {i.name: tuple(int(d) for d in i.dims) for i in model.graph.initializer}
    per_token = 0
    per_message = 0
    attention_hidden: list[int] = []
    shapes: dict[tuple[int, int], int] = {}
    for node in model.graph.node:
        weights = [dims[i] for i in node.input if len(dims.get(i, ())) == 2]
        if not weights:
            continue
        k, n = weights[0]
        if node.op_type in ("MatMul", "Attention"):
            per_token += k * n
            shapes[(k, n)] = shapes.get((k, n), 0) + 1
            if node.op_type == "Attention":
                attention_hidden.append(k)
        elif node.op_type == "Gemm":
            per_message += k * n
    if not attention_hidden:
        raise ValueError(f"{onnx_path}: no fused Attention nodes; export with transformer fusions on")
    return {
        "macs_per_token": per_token,
        "macs_per_message": per_message,
        "attention_layers": len(attention_hidden),
        "hidden": attention_hidden[0],
        "shapes": shapes,
    }


def corpus_macs(work: dict[str, Any], lengths: Sequence[int]) -> float:
    """Total multiply-adds to score texts of these token lengths, with no padding at all."""
    ln = np.asarray(lengths, dtype=np.float64)
    attention = 2.0 * work["attention_layers"] * work["hidden"] * float((ln**2).sum())
    return float(ln.sum()) * work["macs_per_token"] + attention + len(ln) * work["macs_per_message"]


def gemm_rate(
    shapes: dict[tuple[int, int], int],
    rows: int,
    int8: bool,
    threads: int | None,
    seconds: float = 2.0,
    runs: int = 1,
) -> float:
    """Multiply-adds per second of ORT's CPU GEMM on the model's weight shapes, weighted by their
    share of the work. int8 = MatMulInteger u8 activations x s8 weights (what dynamic quantisation
    runs); the quantise/dequantise steps around it are left out, so the int8 figure is generous.

    `runs` GEMMs at once, each on threads // runs threads (the layout `Scorer` may serve with):
    the rate is their multiply-adds over the wall time of the round."""
    from concurrent.futures import ThreadPoolExecutor

    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from models.runtime import cpu_cores, session_options

    cores = int(threads or cpu_cores())
    intra = max(1, cores // runs)
    pool = ThreadPoolExecutor(runs) if runs > 1 else None

    rng = np.random.default_rng(0)
    total_macs = 0.0
    total_s = 0.0
    for (k, n), count in shapes.items():
        feeds: dict[str, np.ndarray[Any, Any]]
        if int8:
            w = numpy_helper.from_array(rng.integers(-100, 100, (k, n), dtype=np.int8), "w")
            zp = numpy_helper.from_array(np.array(0, dtype=np.int8), "wzp")
            node = helper.make_node("MatMulInteger", ["x", "w", "xzp", "wzp"], ["y"])
            inputs = [
                helper.make_tensor_value_info("x", TensorProto.UINT8, [rows, k]),
                helper.make_tensor_value_info("xzp", TensorProto.UINT8, []),
            ]
            out = helper.make_tensor_value_info("y", TensorProto.INT32, None)
            feeds = {
                "x": rng.integers(0, 255, (rows, k), dtype=np.uint8),
                "xzp": np.array(128, dtype=np.uint8),
            }
            inits = [w, zp]
        else:
            node = helper.make_node("MatMul", ["x", "w"], ["y"])
            inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])]
            out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
            feeds = {"x": rng.standard_normal((rows, k), dtype=np.float32)}
            inits = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "w")]
        graph = helper.make_graph([node], "gemm", inputs, [out], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = ort.InferenceSession(
            model.SerializeToString(),
            session_options(ort, "cpu", intra),
            providers=["CPUExecutionProvider"],
        )

        def one_round(session: Any = session, feeds: dict[str, np.ndarray[Any, Any]] = feeds) -> None:
            if pool is None:
                session.run(None, feeds)
            else:
                list(pool.map(lambda _: session.run(None, feeds), range(runs)))

        one_round()
        # The fastest of many rounds: what the kernel can do when nothing else on a shared machine
        # takes the cores (a mean would fold other people's jobs into the bound).
        best, end = float("inf"), time.perf_counter() + seconds / len(shapes)
        while time.perf_counter() < end:
            start = time.perf_counter()
            one_round()
            best = min(best, time.perf_counter() - start)
        # Weight each shape by how often the model uses it: the rate of the model's GEMM mix.
        total_macs += count * runs * rows * k * n
        total_s += count * best
    if pool is not None:
        pool.shutdown()
    return total_macs / total_s


def ceiling(
    onnx_fp32: Path, lengths: Sequence[int], threads: int | None, quick: bool = False
) -> dict[str, Any]:
    work = graph_work(onnx_fp32)
    macs = corpus_macs(work, lengths)
    seconds = 1.0 if quick else 4.0
    from models.runtime import cpu_cores

    # Both layouts the scorer can serve with: one GEMM over all the cores, or one per core side by
    # side. The bound is the faster of the two, so that a layout change cannot lower it.
    cores = int(threads or cpu_cores())
    layouts = sorted({1, cores})
    rates = {
        (runs, q8): gemm_rate(
            work["shapes"], DEFAULT_ROWS, int8=q8, threads=cores, seconds=seconds, runs=runs
        )
        for runs in layouts
        for q8 in (False, True)
    }
    fp32 = max(rates[(runs, False)] for runs in layouts)
    int8 = max(rates[(runs, True)] for runs in layouts)
    n = len(lengths)
    return {
        "gemm_gops_int8_by_runs": {str(runs): 2 * rates[(runs, True)] / 1e9 for runs in layouts},
        "macs_per_token": work["macs_per_token"],
        "macs_per_message_mean": macs / n,
        "gemm_rows": DEFAULT_ROWS,
        "gemm_gflops_fp32": 2 * fp32 / 1e9,
        "gemm_gops_int8": 2 * int8 / 1e9,
        "int8_over_fp32": int8 / fp32,
        "ceiling_msgs_per_s_fp32": fp32 * n / macs,
        "ceiling_msgs_per_s_int8": int8 * n / macs,
        # the bound: whichever kernel is faster here (the deployed variant's choice could follow it)
        "ceiling_msgs_per_s": max(fp32, int8) * n / macs,
    }
