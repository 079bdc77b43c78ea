"""Where the time goes: the scoring function under cProfile, the daemon under py-spy.

Scoring: cProfile over `Scorer.score` on the corpus, read back per function of interest
(tokenizer, padding, the ORT run, the rest of `score`).

Daemon: `py-spy record --format raw` samples every thread of the real `finsent consume` process
(native ORT and tokenizer time show up under the Python frame that called them). Each sampled
stack is put in the first category, in the order of `CATEGORIES`, whose pattern it contains, so a
stack inside the ORT run called from the score stage counts as "session run", not as "score stage".
"""

from __future__ import annotations

import cProfile
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
IDLE = ("select (", "wait (threading.py", "_wait_for_tstate_lock", "sleep (")


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
