"""`python -m bench.run`: every benchmark on the same corpus and the same fine-tuned weights.

    baseline A   transformers.pipeline over the PyTorch model (default, then its best batch size)
    baseline B   the PyTorch model batched by hand (eager, inference_mode, padded batches)
    scoring      finsent's `Scorer.score` alone, per variant (fp32/int8 on CPU, fp16 on a GPU)
    e2e          broker + `finsent replay` + `finsent consume`: throughput, peak RSS, torch check
    pipeline     the same with a tiny model, one daemon and one per core: the daemon's own ceiling
    latency      end-to-end latency percentiles at a fixed offered load below saturation
    ceiling      the model's multiply-adds over ORT's GEMM rate: the fastest any runtime could go here
    profile      cProfile of scoring, ORT's profiler by op type, py-spy of the daemon (not in --quick)

Writes bench/results/bench-<time>.json (+ latest.json) and the results block of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import ceiling, corpus, e2e, report, scoring

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
PARTS = ("baselines", "scoring", "e2e", "pipeline", "latency", "ceiling", "profile")
log = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "artifacts" / "latest", help="artifact directory")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="PyTorch checkpoint of the same weights (default: runs/<artifact version>)",
    )
    p.add_argument("--n", type=int, help="messages in the corpus (default: 4000 CPU, 20000 GPU; QUICK: 300)")
    p.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED, help="corpus seed")
    p.add_argument("--quick", action="store_true", help="short run: small N, fewer sweep points")
    p.add_argument("--only", help=f"comma list of {PARTS} (default: all; QUICK: all but profile)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="with --quick: profile scoring (cProfile) and the daemon (py-spy) too",
    )
    p.add_argument(
        "--batch", type=int, help="texts per Scorer call = daemon micro-batch (default 256; GPU 1024)"
    )
    p.add_argument(
        "--latency-rate", type=float, help="offered load for the latency run (default: half the e2e rate)"
    )
    p.add_argument("--latency-seconds", type=float, help="duration of the latency run (default 20; QUICK: 6)")
    p.add_argument("--threads", type=int, help="torch and ORT threads (default: all cores)")
    p.add_argument(
        "--daemons", type=int,
        help="`finsent consume` processes in one group for the end-to-end row (default 1 on CPU; on a "
        "GPU one per two cores, at most 8: one Python process cannot feed a GPU)",
    )  # fmt: skip
    p.add_argument(
        "--pipeline-model", type=Path,
        help="artifact for the pipeline part (default: a tiny model built once under <results>/run)",
    )  # fmt: skip
    p.add_argument(
        "--pipeline-daemons",
        help="comma list of process counts for the pipeline part (default: 1 and one per core, at most 8; "
        "QUICK: 1)",
    )
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="JSON output folder")
    p.add_argument("--doc", type=Path, default=DOC, help="markdown file whose results block is rewritten")
    p.add_argument("--no-doc", action="store_true", help="do not touch the markdown file")
    return p.parse_args(argv)


def find_checkpoint(artifact: Any, given: Path | None) -> Path | None:
    """The PyTorch checkpoint of the artifact's weights: given, `runs/<version>` (what `finsent train
    --checkpoint-dir runs` writes), or the manifest's `exported_from` (what `finsent export` records)."""
    if given is not None:
        return given
    candidates = [REPO / "runs" / artifact.version]
    if artifact.manifest.get("exported_from"):
        origin = Path(artifact.manifest["exported_from"])
        candidates.append(origin if origin.is_absolute() else REPO / origin)
    return next((c for c in candidates if (c / "checkpoint.json").is_file()), None)


def run_baselines(
    checkpoint: Path, texts: list[str], max_length: int, device: str, quick: bool, threads: int | None
) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """Rows for A (default + best batch) and B, B's probabilities (the fp32 PyTorch reference), sweeps."""
    from bench import baselines

    model, tokenizer, _meta = baselines.load(checkpoint, threads)
    model.to(device)
    pipe = baselines.make_pipeline(model, tokenizer, max_length, device=device)
    rows: list[dict[str, Any]] = []
    n = len(texts)
    # The sweep runs on a slice: at batch size 1 the pipeline does tens of texts a second on 2 cores.
    sweep_texts = texts[: min(n, 128 if quick else 400)]
    baselines.pipeline_probs(pipe, sweep_texts[:16], None)  # warm-up
    sec, _ = baselines.timed(baselines.pipeline_probs, pipe, texts, None)
    rows.append(
        _row("baseline A: transformers.pipeline", "default (batch_size 1)", n, sec, baseline="A-default")
    )
    sweep = []
    for size in (8, 64) if quick else (8, 32, 128):
        s, _ = baselines.timed(baselines.pipeline_probs, pipe, sweep_texts, size)
        sweep.append({"size": size, "msgs_per_s": len(sweep_texts) / s})
    best = max(sweep, key=lambda p: p["msgs_per_s"])["size"]
    sec, _ = baselines.timed(baselines.pipeline_probs, pipe, texts, best)
    rows.append(
        _row("baseline A: transformers.pipeline", f"best batch_size {best}", n, sec, baseline="A-best")
    )
    b_batch = 64
    sec, probs = baselines.timed(baselines.eager_probs, model, tokenizer, texts, b_batch, max_length, device)
    rows.append(
        _row(
            "baseline B: PyTorch eager, batched by hand",
            f"batch {b_batch}, padded, inference_mode",
            n,
            sec,
            baseline="B",
        )
    )
    return rows, probs, {f"baseline A batch_size (on {len(sweep_texts)} texts)": sweep}


def _row(name: str, settings: str, n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": extra.pop("kind", "baseline"), "settings": settings, "n": n,
            "seconds": seconds, "msgs_per_s": n / seconds, **extra}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # read_topic's client is chatty at INFO
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from models.artifact import load_artifact
    from models.runtime import gpu_present

    default = [p for p in PARTS if p != "profile" or args.profile] if args.quick else list(PARTS)
    parts = {p.strip() for p in args.only.split(",") if p.strip()} if args.only else set(default)
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"--only: unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    gpu = gpu_present()
    provider, deployed = ("cuda", "fp16") if gpu else ("cpu", "int8")
    n = args.n or (300 if args.quick else (20000 if gpu else 4000))
    batch = args.batch or (1024 if gpu else 256)
    if args.daemons is None:
        from models.runtime import cpu_cores

        args.daemons = min(8, max(1, cpu_cores() // 2)) if gpu else 1
    if args.daemons < 1:
        raise SystemExit(f"--daemons must be >= 1, got {args.daemons}")
    artifact = load_artifact(args.model)
    checkpoint = find_checkpoint(artifact, args.checkpoint)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "seed": args.seed,
        "deployed": deployed,
        "machine": report.machine(_gpu_name() if gpu else None),
        "model": {
            "path": str(args.model),
            "version": artifact.version,
            "base_model": artifact.manifest.get("base_model"),
            "checkpoint": str(checkpoint) if checkpoint else None,
        },  # fmt: skip
        "rows": [],
        "sweeps": {},
        "agreement": {},
    }
    log.info("corpus: %d messages (seed %d)", n, args.seed)
    messages = corpus.build(n, args.seed)
    texts = [m.text for m in messages]
    lengths = corpus.token_lengths(texts, artifact.tokenizer_path, artifact.max_length)
    results["corpus"] = corpus.describe(messages, lengths)
    reference = None
    probs: dict[str, Any] = {}

    if "baselines" in parts:
        if checkpoint is None:
            log.warning(
                "no PyTorch checkpoint for %s: baselines skipped (train with --checkpoint-dir runs)",
                artifact.version,
            )
        else:
            log.info("baselines A and B on %s (%s)", checkpoint, "cuda" if gpu else "cpu")
            rows, reference, sweeps = run_baselines(
                checkpoint, texts, artifact.max_length, "cuda" if gpu else "cpu", args.quick, args.threads
            )
            results["rows"] += rows
            results["sweeps"].update(sweeps)

    if "scoring" in parts:
        variants = ["fp16", "fp32"] if gpu else ["fp32", "int8"]
        for variant in variants:
            if variant not in artifact.variants:
                continue
            log.info("scoring alone: %s/%s, batch %d", provider, variant, batch)
            row = scoring.bench_variant(artifact, provider, variant, texts, batch, threads=args.threads)
            probs[variant] = row.pop("_preds")
            row["settings"] = f"batch {batch}, sub-batch {row['sub_batch']}" + (
                ", IO binding" if provider == "cuda" else f", {row['parallel_runs']} run(s) at once"
            )
            results["rows"].append(row)
        sizes = (16, 64) if args.quick else ((64, 256, 1024) if gpu else (16, 32, 64, 128))
        m = min(n, 512)
        sweep = scoring.sweep(artifact, provider, deployed, texts[:m], batch, "sub_batch", sizes)
        results["sweeps"][f"Scorer sub-batch, {deployed} (on {m} texts)"] = [
            {"size": p["size"], "msgs_per_s": p["msgs_per_s"]} for p in sweep
        ]
        if not gpu:
            from models.runtime import cpu_cores

            layouts = sorted({1, int(args.threads or cpu_cores())})
            runs = scoring.sweep(artifact, provider, deployed, texts[:m], batch, "parallel_runs", layouts)
            results["sweeps"][f"Scorer runs at once, {deployed} (on {m} texts)"] = [
                {"size": p["size"], "msgs_per_s": p["msgs_per_s"]} for p in runs
            ]
        if reference is not None:
            for variant, got in probs.items():
                results["agreement"][f"{provider}/{variant}"] = scoring.agreement(reference, got)

    work = args.results / "run"
    if "e2e" in parts:
        log.info("end to end: %d messages through broker + daemon (%s/%s)", n, provider, deployed)
        extra = ["--batch-max-messages", str(batch)]
        row = e2e.throughput(
            messages, model=args.model, provider=provider, variant=deployed, workdir=work, extra=extra,
            daemons=args.daemons,
        )  # fmt: skip
        procs = f", {args.daemons} daemons" if args.daemons > 1 else ""
        row["settings"] = (
            f"{provider}/{deployed}, micro-batch ≤ {batch}, {max(3, args.daemons)} partitions{procs}"
        )
        row["notes"] = e2e_notes(row)
        results["rows"].append(row)
        if not args.quick and args.daemons == 1:
            # The same run with one batch at a time: what overlapping scoring with publishing gives.
            log.info("end to end, one batch at a time (--no-overlap)")
            serial = e2e.throughput(
                messages, model=args.model, provider=provider, variant=deployed, workdir=work,
                extra=[*extra, "--no-overlap"],
            )  # fmt: skip
            serial.update(
                name=f"{serial['name']}, one batch at a time",
                kind="e2e-serial",
                settings=f"{row['settings']}, `--no-overlap`",
                notes="the row above, scoring the next batch only after the last one is committed; "
                + e2e_notes(serial),
            )
            results["rows"].append(serial)

    if "pipeline" in parts:
        counts = pipeline_daemons(args.pipeline_daemons, args.quick)
        tiny = args.pipeline_model or pipeline_model(work / "pipeline-model")
        what = f"`{args.pipeline_model}`" if args.pipeline_model else "a 2-layer, 64-wide model"
        for k in counts:
            log.info("end to end with a tiny model (the daemon's own ceiling), %d daemon(s)", k)
            row = e2e.throughput(
                messages, model=tiny, provider="cpu", variant="int8", workdir=work,
                extra=["--batch-max-messages", str(batch)], daemons=k,
            )  # fmt: skip
            row.update(
                name="finsent end to end, pipeline only" + (f" ({k} daemons)" if k > 1 else ""),
                kind="e2e-pipeline",
                settings=f"{what} (cpu/int8), micro-batch ≤ {batch}, {max(3, k)} partitions",
                notes=f"{k} `finsent consume` process{'es' if k > 1 else ''} in one group; " + e2e_notes(row),
            )
            results["rows"].append(row)

    if "latency" in parts:
        e2e_rate = next((r["msgs_per_s"] for r in results["rows"] if r["kind"] == "e2e"), None)
        rate = args.latency_rate or max(10.0, round((e2e_rate or 200.0) * 0.5, -1))
        seconds = args.latency_seconds or (6.0 if args.quick else 20.0)
        count = max(50, int(rate * seconds))
        lat_msgs = corpus.build(count, args.seed + 1)
        log.info("latency: %d messages at %.0f msgs/s", count, rate)
        results["latency"] = e2e.latency(
            lat_msgs, rate=rate, model=args.model, provider=provider, variant=deployed, workdir=work,
            extra=["--batch-max-messages", str(batch)], warmup=min(50, count // 10),
        )  # fmt: skip

    if "ceiling" in parts and provider == "cpu":
        log.info("ceiling: multiply-adds of the model over ORT's GEMM rate on its shapes")
        results["ceiling"] = ceiling.ceiling(
            artifact.variant_path("fp32"), lengths, args.threads, quick=args.quick
        )

    if "profile" in parts:
        from bench import profiling
        from models.runtime import Scorer

        log.info("profile: scoring under cProfile")
        scorer = Scorer(artifact, provider=provider, variant=deployed, threads=args.threads)
        results["profile_scoring"] = profiling.profile_scoring(scorer, texts, batch)
        log.info("profile: ORT operators by type (ORT's profiler)")
        results["profile_ops"] = profiling.profile_ops(scorer, texts, batch)
        log.info("profile: daemon under py-spy")
        out = work / "daemon.pyspy.txt"
        row = e2e.throughput(
            messages, model=args.model, provider=provider, variant=deployed, workdir=work,
            extra=["--batch-max-messages", str(batch)], profile_out=out,
        )  # fmt: skip
        results["profile_daemon"] = {"msgs_per_s_under_pyspy": row["msgs_per_s"], **profiling.read_pyspy(out)}
        if "pipeline" in parts:
            # The same with the tiny model, sampling only the thread that holds the interpreter lock:
            # where one process's own ceiling goes (the default's profile is mostly ORT).
            log.info("profile: the daemon's own work (tiny model, py-spy --gil)")
            out = work / "daemon-gil.pyspy.txt"
            row = e2e.throughput(
                messages, model=tiny, provider="cpu", variant="int8", workdir=work,
                extra=["--batch-max-messages", str(batch)], profile_out=out, profile_gil=True,
            )  # fmt: skip
            results["profile_pipeline"] = {
                "msgs_per_s_under_pyspy": row["msgs_per_s"],
                **profiling.read_pyspy(out),
            }

    results["targets"] = targets(results)
    results["loadavg_end"] = os.getloadavg()
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    path = report.write_json(results, args.results)
    results["json"] = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    log.info("results: %s", path)
    block = report.markdown(results)
    print(block)
    if not args.no_doc:
        report.update_doc(args.doc, block, SKELETON)
        log.info("updated %s", args.doc)
    return 0


def pipeline_daemons(given: str | None, quick: bool = False) -> list[int]:
    """Process counts for the pipeline part: given as "1,4", else 1 and one per core (at most 8;
    QUICK: 1)."""
    from models.runtime import cpu_cores

    if given:
        try:
            counts = sorted({int(x) for x in given.split(",") if x.strip()})
        except ValueError:
            raise SystemExit(f"--pipeline-daemons: expected numbers like 1,2; got {given!r}") from None
        if not counts or counts[0] < 1:
            raise SystemExit(f"--pipeline-daemons: counts must be >= 1; got {given!r}")
        return counts
    return [1] if quick else sorted({1, min(cpu_cores(), 8)})


def pipeline_model(root: Path) -> Path:
    """A tiny model (2 layers of 64, trained for seconds) whose scoring costs next to nothing, so
    the end-to-end rate measures the daemon itself: Kafka client, JSON, records, stories, the
    aggregate stage. Built once per results folder (about 15 s); torch is needed only to build it."""
    done = root / "artifact.txt"
    if done.is_file() and (Path(done.read_text().strip()) / "manifest.json").is_file():
        return Path(done.read_text().strip())
    from tests.support.tiny_models import build_tiny_artifact

    log.info("pipeline: building the tiny model in %s", root)
    path = build_tiny_artifact(root)
    done.write_text(str(path))
    return path


def e2e_notes(row: dict[str, Any]) -> str:
    from models.runtime import cpu_cores

    busy = row.get("daemon_cores_busy")
    who = "the daemons" if row.get("daemons", 1) > 1 else "the daemon"
    cores = f"; {who} kept {busy:.2f} of {cpu_cores()} cores busy" if busy is not None else ""
    return f"first consume → last commit; peak RSS {row['peak_rss_bytes'] / 2**20:,.0f} MiB{cores}"


# The 5x-baseline-A target applies on machines whose arithmetic ceiling is at least this many times
# baseline A (issue 13); a row that does not apply has `met` None.
FIVE_X_NEEDS_CEILING = 10


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results["rows"]
    by = {r.get("baseline") or (r["kind"], r.get("variant")): r for r in rows}
    a = by.get("A-best")
    b = by.get("B")
    e = next((r for r in rows if r["kind"] == "e2e"), None)
    s = by.get(("scoring", results["deployed"]))
    out: list[dict[str, Any]] = []
    if e and a:
        x = e["msgs_per_s"] / a["msgs_per_s"]
        figure = f"{x:.1f}×"
        met: bool | None = x >= 5
        if results.get("ceiling"):
            bound = results["ceiling"]["ceiling_msgs_per_s"] / a["msgs_per_s"]
            isa = report.isa_text(results["machine"].get("isa"))
            figure += f" (this machine's arithmetic ceiling: {bound:.1f}×; {isa})"
            # issue 13: 5x is asked where the machine's ceiling is at least 10x baseline A; below
            # that, 5x may be out of any runtime's reach and the 50%-of-ceiling row is the target
            if bound < FIVE_X_NEEDS_CEILING:
                met = None
        out.append(
            {
                "target": f"end to end ≥ 5× baseline A (best), where the ceiling is ≥ {FIVE_X_NEEDS_CEILING}×",
                "figure": figure,
                "met": met,
            }
        )
    ceil = results.get("ceiling")
    if e and ceil:
        x = e["msgs_per_s"] / ceil["ceiling_msgs_per_s"]
        figure = f"{x:.0%} ({e['msgs_per_s']:,.0f} of {ceil['ceiling_msgs_per_s']:,.0f} msgs/s)"
        out.append(
            {"target": "end to end ≥ 50% of the arithmetic ceiling", "figure": figure, "met": x >= 0.5}
        )
    if e and s:
        x = e["msgs_per_s"] / s["msgs_per_s"]
        out.append({"target": "end to end ≥ 85% of scoring alone", "figure": f"{x:.0%}", "met": x >= 0.85})
    if e:
        rss = e["peak_rss_bytes"] / 2**20
        out.append({"target": "daemon peak RSS ≤ 1 GiB", "figure": f"{rss:,.0f} MiB", "met": rss <= 1024})
        out.append(
            {
                "target": "daemon does not import torch",
                "figure": "torch mapped" if e["torch_loaded"] else "not loaded",
                "met": not e["torch_loaded"],
            }
        )
    if e and b and results["machine"].get("gpu"):
        x = e["msgs_per_s"] / b["msgs_per_s"]
        out.append({"target": "GPU: end to end ≥ 5× baseline B", "figure": f"{x:.1f}×", "met": x >= 5})
        out.append(
            {
                "target": "GPU: end to end ≥ 15,000 msgs/s",
                "figure": f"{e['msgs_per_s']:,.0f}",
                "met": e["msgs_per_s"] >= 15000,
            }
        )
    agr = results["agreement"].get(
        f"{'cuda' if results['machine'].get('gpu') else 'cpu'}/{results['deployed']}"
    )
    if agr:
        worst = min(agr["topic"], agr["sentiment"])
        out.append(
            {
                "target": f"{results['deployed']} agrees with fp32 PyTorch ≥ 99% per head",
                "figure": f"topic {agr['topic']:.2%}, sentiment {agr['sentiment']:.2%}",
                "met": worst >= 0.99,
            }
        )
    return out


def _gpu_name() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "CUDA GPU"


SKELETON = (
    """# Benchmarks

`make bench` (or `make bench QUICK=1`) runs every benchmark below on the same corpus and the same
fine-tuned weights, writes `bench/results/*.json` and rewrites the results block of this file.

"""
    + report.BEGIN
    + "\n"
    + report.END
    + "\n"
)


if __name__ == "__main__":
    sys.exit(main())
