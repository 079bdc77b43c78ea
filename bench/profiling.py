"""Where the time goes: the scoring function under cProfile, the ORT graph per operator type
(ONNX Runtime's own profiler), the daemon under py-spy.

Scoring: cProfile over `Scorer.score` on the corpus, read back per function of interest
(tokenizer, padding, the ORT run, the rest of `score`).

Operators: the Scorer's session rebuilt with `enable_profiling`; the trace's per-node kernel times
summed by op type (MatMulInteger, DynamicQuantizeLinear, Attention, ...), beside the tokenizer's and
the rest of `score`'s wall time measured around the same calls.

Daemon: `py-spy record --format raw` samples every thread of the real `finsent consume` process
(native ORT and tokenizer time show up under the Python frame that called them); with `--gil`, on
the pipeline part's tiny model, only the thread holding the interpreter lock: what bounds one
process when the model is fast. Each sampled
stack is put in the first category, in the order of `CATEGORIES`, whose pattern it contains, so a
stack inside the ORT run called from the score stage counts as "session run", not as "score stage".
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (category, substrings of a collapsed stack; any one matches). Order matters: first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "start-up (imports, model load; before the timed window)",
        ("_find_and_load", "load_model", "Scorer.__init__"),
    ),
    ("metrics HTTP endpoint (the bench's own scrapes)", ("socketserver.py", "generate_latest")),
    ("CRC-32C of record batches (kafka-python)", ("calc_crc32c", "_crc32c.py")),
    ("ORT session run", ("(onnxruntime/", "_run (models/runtime.py")),
    ("tokenize (Rust fast tokenizer)", ("encode_batch", "encode (models/runtime.py")),
    ("padding", ("pad (models/batching.py",)),
    ("Prediction objects (Scorer.score)", ("score (models/runtime.py",)),
    ("aggregate stage (fetch, JSON decode, fold, publish)", ("_agg_loop", "AggregateStage")),
    ("consumer fetch + record decode", ("poll_records", "collect_batch", "kafka/consumer/")),
    ("JSON decode + validation (parse_message)", ("parse_message",)),
    ("story index (reprint grouping)", ("pipeline/stories.py",)),
    (
        "scored records: build + JSON encode",
        ("to_bytes", "to_dict (pipeline/scoring.py", "score_batch", "_record"),
    ),
    ("producer send + flush + ack wait", ("publish (pipeline/kafka_io.py",)),
    ("producer I/O thread (kafka-python sender)", ("kafka/producer/sender.py",)),
    ("offset commit", ("commit (pipeline/kafka_io.py", "commit (pipeline/kafka_stage.py")),
    ("metrics (per-message observe/inc)", ("prometheus_client",)),
    ("consumer heartbeat / client I/O threads", ("kafka/coordinator/", "kafka/client_async.py")),
)
# Leaf frames of a thread that waits: a select, a lock, a sleep, or a run-pool worker with no
# sub-batch to run (blocked in its queue's get, which py-spy shows as the worker loop itself).
IDLE = (
    "select (",
    "wait (threading.py",
    "_wait_for_tstate_lock",
    "sleep (",
    "_worker (concurrent/futures/thread.py",
)


def profile_scoring(scorer: Any, texts: Sequence[str], batch: int) -> dict[str, Any]:
    """Seconds per part of `Scorer.score` over the corpus in daemon-sized batches."""
    scorer.score(list(texts[:batch]))
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for i in range(0, len(texts), batch):
        scorer.score(texts[i : i + batch])
    prof.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(prof)
    parts = {"tokenize": 0.0, "padding": 0.0, "session run": 0.0, "score total": 0.0}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "encode_batch" in func:
            parts["tokenize"] += ct
        elif func == "pad" and filename.endswith("models/batching.py"):
            parts["padding"] += ct
        elif func == "run" and "onnxruntime" in filename:
            parts["session run"] += ct
        elif func == "result_iterator" and "concurrent/futures" in filename:
            # runs side by side (`Scorer.parallel_runs` > 1) happen in pool threads, which cProfile
            # does not see: the score thread's wait for them stands for their pad + ORT time
            parts["session run"] += ct
        elif func == "score" and filename.endswith("models/runtime.py"):
            parts["score total"] += ct
    other = parts["score total"] - parts["tokenize"] - parts["padding"] - parts["session run"]
    total = parts.pop("score total") or wall
    parts["Python rest (sorting, Prediction objects)"] = max(other, 0.0)
    return {
        "wall_seconds": wall,
        "n": len(texts),
        "shares": {k: v / total for k, v in parts.items()},
        "seconds": parts,
    }


def categorize(stack: str) -> str:
    for name, patterns in CATEGORIES:
        if any(p in stack for p in patterns):
            return name
    return "other Python (loops, logging, interpreter)"


def read_pyspy(path: Path) -> dict[str, Any]:
    """Samples per category from a py-spy raw (collapsed) profile; idle samples counted apart."""
    counts: dict[str, int] = {}
    idle = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if any(p in leaf for p in IDLE):
            idle += int(n)
            continue
        cat = categorize(stack)
        counts[cat] = counts.get(cat, 0) + int(n)
    # Start-up and the bench's own scrapes are not part of the pipeline's work per message.
    outside = {k: counts.pop(k) for k in list(counts) if k.startswith(("start-up", "metrics HTTP"))}
    busy = sum(counts.values())
    return {
        "busy_samples": busy,
        "idle_samples": idle,
        "excluded_samples": outside,
        "shares": {k: v / busy for k, v in sorted(counts.items(), key=lambda kv: -kv[1])} if busy else {},
    }


def op_seconds(events: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Kernel seconds per op type from an ORT profile trace (Chrome trace events).

    ORT writes three events per node run (`<node>_fence_before`, `<node>_kernel_time`,
    `<node>_fence_after`); only the kernel time is the op's work. Session-level events (model
    load, `SequentialExecutor::Execute`) have another category and are left out.
    """
    out: dict[str, float] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        out[op] = out.get(op, 0.0) + float(ev.get("dur", 0)) / 1e6
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def profile_ops(scorer: Any, texts: Sequence[str], batch: int) -> dict[str, Any]:
    """Time per op type inside ORT, and the tokenizer's and the rest's share of `Scorer.score`'s
    work, over the corpus in daemon-sized batches.

    The op shares are of ORT's summed kernel time (the profiler's own cost is outside it); the
    parts of `score` are of its wall time, profiler included, so read them as approximate.
    """
    import tempfile

    import onnxruntime as ort

    from models.runtime import session_kwargs, session_options

    # The scorer's own session options and file, with the profiler on: same graph, same threads.
    opts = session_options(ort, "cpu", scorer.session.get_session_options().intra_op_num_threads)
    opts.enable_profiling = True
    opts.log_severity_level = 3
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="finsent-ortprof-")) / "ort")
    path = str(scorer.artifact.variant_path(scorer.variant))
    scorer.session = ort.InferenceSession(
        path, sess_options=opts, providers=["CPUExecutionProvider"], **session_kwargs("cpu")
    )
    scorer.score(list(texts[:batch]))  # warm-up runs count in the trace too; small next to N
    spent = {"tokenize": 0.0, "run": 0.0}

    def timed(part: str, fn: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[part] += time.perf_counter() - t0

        return wrapper

    # Instance attributes shadow the methods `score` calls, so one pass times all three parts.
    scorer.encode = timed("tokenize", scorer.encode)
    scorer.encoded_probabilities = timed("run", scorer.encoded_probabilities)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        scorer.score(texts[i : i + batch])
    wall = time.perf_counter() - start
    del scorer.encode, scorer.encoded_probabilities
    trace = Path(scorer.session.end_profiling())
    ops = op_seconds(json.loads(trace.read_text()))
    trace.unlink(missing_ok=True)
    trace.parent.rmdir()
    kernel = sum(ops.values()) or 1.0
    tok, run = spent["tokenize"], spent["run"]
    return {
        "n": len(texts),
        "variant": scorer.variant,
        "wall_seconds": wall,
        "op_seconds": ops,
        "op_shares": {k: v / kernel for k, v in ops.items()},
        "shares_of_score": {
            "tokenize": tok / wall,
            "sub-batches: sort, pad, ORT run": run / wall,
            "Prediction objects": max(wall - tok - run, 0.0) / wall,
        },
    }


def op_table(prof: dict[str, Any], top: int = 8) -> str:
    """Markdown table of an op profile: the `top` op types by kernel time, the rest summed."""
    shares = list(prof["op_shares"].items())
    rows = shares[:top]
    if len(shares) > top:
        rows.append((f"{len(shares) - top} other op types", sum(v for _, v in shares[top:])))
    lines = ["| op type | share of ORT kernel time |", "| --- | ---: |"]
    lines += [f"| {op} | {v:.1%} |" for op, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.profiling`: the op-type profile of one variant on the bench corpus."""
    import argparse

    from bench import corpus
    from models.artifact import load_artifact
    from models.runtime import Scorer

    p = argparse.ArgumentParser(prog="python -m bench.profiling", description=main.__doc__)
    p.add_argument("--model", type=Path, default=Path("artifacts/latest"))
    p.add_argument("--variant", default="int8")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    texts = [m.text for m in corpus.build(args.n, corpus.DEFAULT_SEED)]
    scorer = Scorer(load_artifact(args.model), provider="cpu", variant=args.variant, threads=args.threads)
    prof = profile_ops(scorer, texts, args.batch)
    print(f"{args.variant}, N = {args.n}, batch {args.batch}, sub-batch {scorer.sub_batch}:")
    print(op_table(prof, top=12))
    kernel_ms = 1e3 * sum(prof["op_seconds"].values()) / args.n
    print(
        f"ORT kernel time {kernel_ms:.2f} ms per message, score wall {1e3 * prof['wall_seconds'] / args.n:.2f} ms"
    )
    print(", ".join(f"{k} {v:.1%}" for k, v in prof["shares_of_score"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
