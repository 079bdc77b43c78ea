"""`python -m bench.int8_plans --model old=DIR --model new=DIR`: two or more artifacts' int8 graphs
side by side on the benchmark corpus, for comparing export plans of the same model.

Per artifact: agreement of its int8 argmax with its own fp32 graph (per head), then interleaved
scoring rounds (`Scorer.score`, the daemon's micro-batch, a fixed sub-batch so only the graph
differs) with the best wall and process-CPU milliseconds per message. Interleaving matters on a
shared machine: a burst of other work slows one round of every model, not one model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.corpus import DEFAULT_SEED, build
from models.artifact import load_artifact
from models.cpu import cpu_flags, isa_features
from models.runtime import Scorer


def agreement(artifact: Path, texts: Sequence[str], sub_batch: int) -> dict[str, float]:
    art = load_artifact(artifact)
    ref = Scorer(art, provider="cpu", variant="fp32", sub_batch=sub_batch).probabilities(texts)
    got = Scorer(art, provider="cpu", variant="int8", sub_batch=sub_batch).probabilities(texts)
    return {
        head: float(np.mean(a.argmax(1) == b.argmax(1)))
        for head, a, b in zip(("topic", "sentiment"), ref, got, strict=True)
    }


def refused(scorer: Scorer) -> Scorer:
    """`scorer` with its session rebuilt the way ONNX Runtime builds it by default, which fuses the
    plain Add + LayerNormalization and Add + Gelu of the CPU graphs back into SkipLayerNormalization
    and BiasGelu (training/fusions.py): same file, same int8 plan, only those kernels differ."""
    import onnxruntime as ort

    from models.runtime import session_options

    opts = session_options(ort, "cpu", scorer.session.get_session_options().intra_op_num_threads)
    path = str(scorer.artifact.variant_path(scorer.variant))
    scorer.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    return scorer


def interleaved_ms(
    artifacts: dict[str, Path],
    texts: Sequence[str],
    batch: int,
    sub_batch: int,
    rounds: int,
    with_fused: bool = False,
) -> dict[str, dict[str, float]]:
    scorers = {
        label: Scorer(load_artifact(path), provider="cpu", variant="int8", sub_batch=sub_batch)
        for label, path in artifacts.items()
    }
    if with_fused:
        for label, path in artifacts.items():
            plain = Scorer(load_artifact(path), provider="cpu", variant="int8", sub_batch=sub_batch)
            scorers[f"{label}, fused at load"] = refused(plain)
    for scorer in scorers.values():
        scorer.score(list(texts[:batch]))  # warm-up: kernels chosen, buffers allocated
    best = {label: {"wall_ms": float("inf"), "cpu_ms": float("inf")} for label in scorers}
    for _ in range(rounds):
        for label, scorer in scorers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(texts), batch):
                scorer.score(list(texts[i : i + batch]))
            best[label]["wall_ms"] = min(
                best[label]["wall_ms"], (time.perf_counter() - wall) * 1e3 / len(texts)
            )
            best[label]["cpu_ms"] = min(best[label]["cpu_ms"], (time.process_time() - cpu) * 1e3 / len(texts))
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.int8_plans", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=ARTIFACT")
    p.add_argument("--n", type=int, default=1500, help="benchmark-corpus messages (default: %(default)s)")
    p.add_argument("--agreement-n", type=int, default=2000, help="texts for agreement (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="texts per Scorer call (default: %(default)s)")
    p.add_argument("--sub-batch", type=int, default=32, help="texts per ORT run (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default: %(default)s)")
    p.add_argument(
        "--fused",
        action="store_true",
        help="also time each graph with ONNX Runtime's CPU fusions of SkipLayerNorm and BiasGelu on",
    )
    args = p.parse_args(argv)
    artifacts: dict[str, Path] = {}
    for spec in args.model:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            p.error(f"--model expects LABEL=ARTIFACT, got {spec!r}")
        artifacts[label] = Path(path)
    texts = [m.text for m in build(max(args.n, args.agreement_n), seed=DEFAULT_SEED)]
    print(f"ISA: {' '.join(isa_features(cpu_flags()))}")
    for label, path in artifacts.items():
        plan = load_artifact(path).manifest.get("export_validation", {}).get("int8_plan", {})
        rates = agreement(path, texts[: args.agreement_n], args.sub_batch)
        print(
            f"{label}: {path} plan fp32_layers={plan.get('fp32_layers')} also_fp32={plan.get('also_fp32', [])} "
            f"smooth_alpha={plan.get('smooth_alpha')}; int8 vs fp32 on {args.agreement_n} texts: "
            + ", ".join(f"{h} {r:.2%}" for h, r in rates.items())
        )
    speed = interleaved_ms(artifacts, texts[: args.n], args.batch, args.sub_batch, args.rounds, args.fused)
    for label, ms in speed.items():
        print(
            f"{label}: best of {args.rounds} rounds: {ms['wall_ms']:.2f} ms wall, {ms['cpu_ms']:.2f} ms CPU per message"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
