"""`python -m bench.frontier`: accuracy against int8 scoring speed for a teacher and its students.

Speed: `Scorer.score` (tokenizer + ONNX Runtime, int8 on the CPU) over the benchmark corpus in the
daemon's micro-batch size, the models taking turns batch by batch, `--repeats` rounds, so a
neighbour's load on a shared machine falls on all of them alike. Accuracy: in-corpus validation
(the manifest's, PyTorch before export, on the teacher's validation rows) and the two real
human-labelled tweet sets (`../shared/data`, or FINSENT_REAL_DATA), scored through ONNX Runtime
int8 as deployed, as `finsent evaluate` scores them. Writes bench/results/frontier-<time>.json and
docs/accuracy_speed.png; `--from-json FILE` redraws the picture from a recorded run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PNG = REPO / "docs" / "accuracy_speed.png"
REAL_SETS = {
    "topic": "twitter_topic_train.csv#sentiment=-",
    "sentiment": "twitter_sentiment_train.csv#topic=-",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.accuracy import DEFAULT_DATA_DIR
    from bench.corpus import DEFAULT_SEED

    p = argparse.ArgumentParser(prog="python -m bench.frontier", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=ARTIFACT",
        help="a model to place on the frontier, repeatable (e.g. teacher=artifacts/latest)",
    )
    p.add_argument("--n", type=int, default=2000, help="benchmark-corpus messages per speed run")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="benchmark-corpus seed")
    p.add_argument("--batch", type=int, default=256, help="texts per Scorer call (the daemon's micro-batch)")
    p.add_argument("--repeats", type=int, default=2, help="speed rounds, models alternating")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("FINSENT_REAL_DATA", DEFAULT_DATA_DIR)),
        help="folder with the real tweet sets (default: $FINSENT_REAL_DATA or ../shared/data)",
    )
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="JSON output folder")
    p.add_argument("--png", type=Path, default=PNG, help="picture to write (default: %(default)s)")
    p.add_argument("--from-json", type=Path, help="redraw the picture from this recorded run only")
    p.add_argument(
        "--accuracy-from",
        type=Path,
        help="take the real-set accuracy from this recorded run (same labels, same artifacts) and "
        "measure speed only: more rounds for the noisy figure without re-scoring 26,533 tweets",
    )
    return p.parse_args(argv)


def parse_models(specs: list[str]) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"bench.frontier: --model {spec!r}: expected LABEL=ARTIFACT")
        if not (Path(path) / "manifest.json").is_file():
            raise SystemExit(f"bench.frontier: --model {spec!r}: {path} is not a model artifact")
        out.append((label, Path(path).resolve()))
    if not out:
        raise SystemExit("bench.frontier: give at least one --model LABEL=ARTIFACT")
    return out


def describe(label: str, path: Path) -> dict[str, Any]:
    """What the manifest says: version, encoder layers kept, in-corpus validation metrics."""
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    student = manifest.get("distilled_from") or {}
    return {
        "label": label,
        "artifact": str(path),
        "version": manifest["version"],
        "layers": student.get("layers"),
        "teacher_layers": student.get("teacher_layers"),
        "in_corpus_pytorch": {k: round(v, 4) for k, v in manifest.get("metrics", {}).items()},
        "int8_fp32_layers": (manifest.get("export_validation", {}).get("int8_plan") or {}).get("fp32_layers"),
    }


def interleaved_speed(scorers: list[Any], texts: list[str], batch: int) -> list[float]:
    """msgs/s of each scorer over `texts` in batches of `batch`, the scorers taking turns batch by
    batch (the order rotating), so a neighbour's load on a shared machine falls on all alike; timed
    as whole runs one after another, one graph measured 242 and 147 msgs/s in two rounds here."""
    for scorer in scorers:
        scorer.score(list(texts[:batch]))  # warm-up: ORT allocates and picks kernels on first runs
    seconds = [0.0] * len(scorers)
    for n, start in enumerate(range(0, len(texts), batch)):
        chunk = list(texts[start : start + batch])
        for k in [(n + i) % len(scorers) for i in range(len(scorers))]:
            t0 = time.perf_counter()
            scorers[k].score(chunk)
            seconds[k] += time.perf_counter() - t0
    return [len(texts) / s for s in seconds]


def measure_speed(
    models: list[tuple[str, Path]], rows: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    """int8 msgs/s per model, `--repeats` interleaved rounds (`msgs_per_s`: one figure per round)."""
    from bench import corpus, scoring
    from models.artifact import load_artifact

    texts = [m.text for m in corpus.build(args.n, args.seed)]
    scorers = [scoring.make_scorer(load_artifact(path), "cpu", "int8") for _label, path in models]
    for row, scorer in zip(rows, scorers, strict=True):
        row["msgs_per_s"], row["sub_batch"] = [], scorer.sub_batch
    for round_ in range(args.repeats):
        got = interleaved_speed(scorers, texts, args.batch)
        for (label, _path), row, rate in zip(models, rows, got, strict=True):
            row["msgs_per_s"].append(round(rate, 1))
            print(f"speed round {round_ + 1}: {label} {rate:.1f} msgs/s", flush=True)


def measure_real(models: list[tuple[str, Path]], rows: list[dict[str, Any]], data_dir: Path) -> None:
    """Accuracy and macro-F1 per head on the real tweet sets, int8 through ONNX Runtime."""
    from bench.accuracy import evaluate
    from models.artifact import load_artifact
    from training.data import load_dataset

    for (label, path), row in zip(models, rows, strict=True):
        topics = load_artifact(path).topic_labels
        row["real_int8"] = {}
        for head, spec in REAL_SETS.items():
            data = load_dataset(str(data_dir / spec), topics=topics)
            rep = evaluate(path, data, "int8")[head]
            row["real_int8"][head] = {
                "data": spec.split("#")[0],
                "rows": rep["n"],
                "accuracy": round(rep["accuracy"], 4),
                "macro_f1": round(rep["macro"]["f1"], 4),
            }
            print(f"real {head}: {label} accuracy {rep['accuracy']:.4f}", flush=True)


def reuse_real(rows: list[dict[str, Any]], recorded: Path) -> None:
    """Real-set figures from an earlier run of the same artifacts (matched by label and version)."""
    before = {r["label"]: r for r in json.loads(recorded.read_text(encoding="utf-8"))["models"]}
    for row in rows:
        old = before.get(row["label"])
        if old is None or old["version"] != row["version"]:
            raise SystemExit(f"bench.frontier: {recorded} has no run of {row['label']} ({row['version']})")
        row["real_int8"] = old["real_int8"]


def speed(row: dict[str, Any]) -> float:
    """The figure a model is placed at: the mean of its rounds (each round interleaved, so the
    models shared its conditions)."""
    return sum(row["msgs_per_s"]) / len(row["msgs_per_s"])


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both speed and accuracy, fastest last."""
    best = [p for p in points if not any(q != p and q[0] >= p[0] and q[1] >= p[1] for q in points)]
    return sorted(best)


def plot(results: dict[str, Any], png: Path) -> None:
    """One panel per measure; a marker per model (legend), the frontier dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results["models"], key=speed)
    panels = (
        ("topic, real tweets (int8)", lambda r: r["real_int8"]["topic"]["accuracy"]),
        ("sentiment, real tweets (int8)", lambda r: r["real_int8"]["sentiment"]["accuracy"]),
        (
            "in-corpus validation, mean of heads (PyTorch)",
            lambda r: (
                (r["in_corpus_pytorch"]["topic_accuracy"] + r["in_corpus_pytorch"]["sentiment_accuracy"]) / 2
            ),
        ),
    )
    markers = "osD^vP*X"
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 4.2), sharex=True)
    for ax, (title, value) in zip(axes, panels, strict=True):
        points = [(speed(r), value(r)) for r in rows]
        for i, (r, (x, y)) in enumerate(zip(rows, points, strict=True)):
            ax.plot([x], [y], marker=markers[i % len(markers)], linestyle="", markersize=8, label=r["label"])
        front = pareto(points)
        ax.plot([x for x, _ in front], [y for _, y in front], "k--", linewidth=0.8, alpha=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"int8 scoring, msgs/s (mean of {results['repeats']} interleaved rounds)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(f"finsent accuracy vs speed (dashed: the frontier) on {results['machine']}", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        plot(json.loads(args.from_json.read_text(encoding="utf-8")), args.png)
        print(f"wrote {args.png}")
        return 0
    from bench.accuracy import SOURCES, machine

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    models = parse_models(args.model)
    missing = [n for n in SOURCES if not (args.data_dir / n).is_file()]
    if missing and not args.accuracy_from:
        raise SystemExit(f"bench.frontier: no real data at {args.data_dir} (missing {', '.join(missing)})")
    rows = [describe(label, path) for label, path in models]
    started = time.time()
    results: dict[str, Any] = {
        "command": shlex.join(
            ["python", "-m", "bench.frontier", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "loadavg_start": os.getloadavg(),
        "n": args.n,
        "batch": args.batch,
        "repeats": args.repeats,
        "models": rows,
    }
    measure_speed(models, rows, args)
    if args.accuracy_from:
        reuse_real(rows, args.accuracy_from)
        results["real_int8_from"] = str(args.accuracy_from)
    else:
        measure_real(models, rows, args.data_dir)
    results["loadavg_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - started, 1)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"frontier-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, args.png)
    print(f"wrote {out} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
