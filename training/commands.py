"""`finsent train`, `finsent distill`, `finsent export`, `finsent evaluate`, `finsent fetch-base`.

Only argparse here at import time: torch, transformers and onnxruntime load inside the handlers,
so `finsent --help` stays instant and the streaming commands never pay for them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from training.config import TrainConfig

STUDENTS_ROOT = "artifacts/students"  # `finsent distill --out`: serve one with --model .../latest
DEFAULTS: dict[str, Any] = {}  # filled lazily from TrainConfig so help texts show the real defaults


def _train_defaults() -> dict[str, Any]:
    if not DEFAULTS:
        from dataclasses import fields

        from training.config import TrainConfig

        DEFAULTS.update({f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)})
    return DEFAULTS


def _add_column_args(p: argparse.ArgumentParser, label_map: bool = True) -> None:
    if label_map:
        p.add_argument(
            "--label-map",
            help='JSON file mapping stored label values (e.g. class ids) to names: {"topic": [...] or {...}, '
            '"sentiment": ...}; default: the dataset\'s own ClassLabel names',
        )
    p.add_argument("--text-column", default="text", help="column holding the text (default: %(default)s)")
    p.add_argument("--topic-column", default="topic", help="column holding the topic (default: %(default)s)")
    p.add_argument(
        "--sentiment-column", default="sentiment", help="column holding the sentiment (default: %(default)s)"
    )


def _heads(text: str) -> tuple[str, ...]:
    heads = tuple(h.strip() for h in text.split(",") if h.strip())
    unknown = [h for h in heads if h not in ("topic", "sentiment")]
    if not heads or unknown:
        raise argparse.ArgumentTypeError(f"expected topic and/or sentiment, comma-separated; got {text!r}")
    return heads


def _head_weights(text: str) -> tuple[float, float]:
    """`--head-weights 1,2` -> (1.0, 2.0); argparse turns the ValueError into a usage error (exit 2)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected TOPIC,SENTIMENT (two numbers), got {text!r}")
    try:
        weights = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers, got {text!r}") from None
    if min(weights) < 0 or max(weights) == 0:
        raise argparse.ArgumentTypeError(f"weights must be >= 0 and not both 0, got {text!r}")
    return weights


def _add_loop_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """The training loop's flags, shared by `train` and `distill` (training.train.train_epochs)."""
    p.add_argument("--epochs", type=int, default=d["epochs"], help="maximum epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="default: %(default)s")
    p.add_argument(
        "--lr", type=float, default=d["lr"], help="encoder peak learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--head-lr", type=float, default=d["head_lr"], help="heads' learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=d["patience"],
        help="early-stopping patience in epochs (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d["seed"], help="default: %(default)s")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (per-epoch lines remain)")


def register(sub: argparse._SubParsersAction) -> None:
    from training.config import POOLINGS

    d = _train_defaults()
    p = sub.add_parser(
        "train",
        help="fine-tune the topic+sentiment model, export it to ONNX, validate, write an artifact",
        description="train -> evaluate -> export (fp32, fp16, int8) -> validate -> artifacts/<version>.",
    )
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="labelled source, repeatable or comma-separated: a CSV/JSONL/Parquet file, a `save_to_disk` "
        "directory or hf:OWNER/NAME[:SPLIT[:CONFIG]]; append #text=COL, #topic=COL|-, #sentiment=COL|- "
        "for that source's own columns ('-': it has no such labels)",
    )
    p.add_argument("--valid", help="validation source(s), same forms (default: a stratified split of --data)")
    p.add_argument("--out", default=d["out"], help="artifact root (default: %(default)s)")
    p.add_argument("--base-model", help="Hugging Face id or local dir (default: bundled all-MiniLM-L6-v2)")
    p.add_argument(
        "--topics",
        default=d["topics"],
        help="topic taxonomy: 'default' (20 finance topics), 'data' (labels found in the data), "
        "a file with one topic per line, or a comma-separated list (default: %(default)s)",
    )
    _add_column_args(p)
    _add_loop_args(p, d)
    p.add_argument(
        "--max-length", type=int, default=d["max_length"], help="tokens per text (default: %(default)s)"
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=d["valid_fraction"],
        help="split share without --valid (default: %(default)s)",
    )
    p.add_argument(
        "--class-weights",
        action=argparse.BooleanOptionalAction,
        default=d["class_weighting"],
        help="weight each head's loss by inverse class frequency (default: %(default)s)",
    )
    p.add_argument(
        "--keep-urls",
        action="store_true",
        help="tokenize links too (default: links are dropped, training/text.py)",
    )
    p.add_argument("--train-embeddings", action="store_true", help="also fine-tune the word-embedding table")
    p.add_argument(
        "--lora",
        action="store_true",
        help="train LoRA adapters instead of the full encoder (merged before export)",
    )
    p.add_argument("--lora-r", type=int, default=d["lora_r"], help="LoRA rank (default: %(default)s)")
    p.add_argument(
        "--feed-prior",
        metavar="FILE",
        help="JSON of head -> {label: share}: the label mix the model will meet; the heads are shifted "
        "from the training mix to it after training (training/prior.py; make train-export passes "
        "data/feed_prior.json for the starter corpus). Default: no shift",
    )
    p.add_argument(
        "--bias-fit",
        metavar="FILE",
        help="labelled rows in the register the model will meet (same columns as --data): after training "
        "and the feed prior, the bias of each head in --bias-fit-heads is fitted on them "
        "(training/prior.py; make train-export passes data/dev_feed.csv for the starter corpus). "
        "Default: none",
    )
    p.add_argument(
        "--bias-fit-heads",
        type=_heads,
        default=d["bias_fit_heads"],
        metavar="HEADS",
        help="comma-separated heads --bias-fit fits: topic, sentiment (default: sentiment)",
    )
    p.add_argument(
        "--rdrop",
        type=float,
        default=d["rdrop"],
        help="R-Drop: weight of the KL between two dropout passes; 0 is off, 1-5 usual; doubles step cost "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--fgm",
        type=float,
        default=d["fgm"],
        help="FGM adversarial training: L2 radius on the embedding output; 0 is off, ~1 usual; doubles "
        "step cost (default: %(default)s)",
    )
    p.add_argument(
        "--weight-average",
        type=float,
        default=d["weight_average"],
        metavar="DECAY",
        help="keep an exponential moving average of the weights (e.g. 0.998) and validate and export it; "
        "0 is off (default: %(default)s)",
    )
    p.add_argument(
        "--token-mask",
        type=float,
        default=d["token_mask"],
        metavar="RATE",
        help="augmentation: replace this share of each training row's word pieces by the mask token, "
        "anew each step (e.g. 0.1); 0 is off (default: %(default)s)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=d["pooling"],
        help="how the heads read the token vectors: their mean, the first token's, or a learned weighting "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--head-weights",
        type=_head_weights,
        default=d["head_weights"],
        metavar="TOPIC,SENTIMENT",
        help="weights of the two heads' losses (default: 1,1)",
    )
    p.add_argument(
        "--teacher",
        metavar="ARTIFACT",
        help="distil from this artifact (any base, e.g. one trained on .cache/bases/all-mpnet-base-v2): its "
        "probabilities on the training texts are soft targets for both heads on every row",
    )
    p.add_argument(
        "--teacher-alpha",
        type=float,
        default=d["teacher_alpha"],
        help="with --teacher: weight of the soft targets, 1-alpha on the labels (default: %(default)s)",
    )
    p.add_argument(
        "--teacher-temperature",
        type=float,
        default=d["teacher_temperature"],
        help="with --teacher: softening of both models' logits (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-dir", help="also save the PyTorch weights under DIR/<version> (for `finsent export`)"
    )
    _add_int8_args(p)
    p.set_defaults(handler=run_train)

    p = sub.add_parser(
        "export",
        help="re-export a training checkpoint (from `train --checkpoint-dir`) to a validated artifact",
    )
    p.add_argument("checkpoint", help="checkpoint directory, e.g. runs/<version>")
    p.add_argument("--out", default="artifacts", help="artifact root (default: %(default)s)")
    p.add_argument(
        "--valid", help="labelled file to validate and score on (default: the checkpoint's validation rows)"
    )
    _add_column_args(p, label_map=False)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default: %(default)s)")
    p.add_argument(
        "--no-optimize", action="store_true", help="skip the transformer fusions (optimum's ORTOptimizer)"
    )
    _add_int8_args(p)
    p.set_defaults(handler=run_export)

    p = sub.add_parser(
        "distill",
        help="train a smaller student from a fine-tuned teacher's checkpoint, export and validate it",
        description="teacher checkpoint -> student with some of its layers -> distil (teacher's soft "
        "targets + hard labels) -> export (fp32, fp16, int8) -> validate -> artifacts/students/<version>.",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="the teacher: a checkpoint directory (runs/<version>, from `finsent train --checkpoint-dir`) "
        "or an artifact whose checkpoint is its `exported_from` or runs/<version>",
    )
    p.add_argument(
        "--layers", type=int, default=3, help="encoder layers the student keeps (default: %(default)s)"
    )
    p.add_argument(
        "--select",
        choices=("first", "spread"),
        default="first",
        help="which teacher layers: the lowest N, or spread evenly (0,2,4 of 6) (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        action="append",
        help="training source(s), as for `finsent train --data` (default: data/starter_corpus.csv)",
    )
    p.add_argument("--valid", help="validation source(s) (default: the teacher's own validation rows)")
    p.add_argument(
        "--out",
        default=STUDENTS_ROOT,
        help="artifact root; its own, so artifacts/latest (the default model) stays the teacher "
        "(default: %(default)s)",
    )
    _add_column_args(p)
    _add_loop_args(p, d)
    p.add_argument(
        "--temperature",
        type=float,
        default=2.0,
        help="softening of both models' logits (default: %(default)s)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="weight of the teacher's soft targets; 1-alpha on the hard labels (default: %(default)s)",
    )
    p.add_argument("--checkpoint-dir", help="also save the student's PyTorch weights under DIR/<version>")
    p.set_defaults(handler=run_distill)

    p = sub.add_parser(
        "evaluate",
        help="evaluate an artifact on a labelled file through ONNX Runtime",
        description="Scores DATA with the artifact exactly as the daemon would, prints per-head tables.",
    )
    p.add_argument("artifact", help="artifact directory, e.g. artifacts/latest")
    p.add_argument("data", help="labelled source(s), as for `finsent train --data`")
    _add_column_args(p)
    p.add_argument("--out", help="write metrics.json and confusion PNGs here")
    p.add_argument("--provider", default="cpu", choices=("auto", "cuda", "cpu"), help="default: %(default)s")
    p.add_argument(
        "--variant", choices=("fp32", "fp16", "int8"), help="default: the provider's (int8 on CPU)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_evaluate)

    from training.bases import BASES, DEFAULT_ROOT

    p = sub.add_parser(
        "fetch-base",
        help="download a larger base encoder from the package registry into .cache/bases/NAME",
        description="Downloads the base's part wheels with pip, joins and checks them, unpacks the model "
        "folder; then train with --base-model .cache/bases/NAME. Known: "
        + "; ".join(f"{s.name} ({s.about})" for s in BASES.values()),
    )
    p.add_argument("name", choices=sorted(BASES), help="which base")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where bases go (default: %(default)s)")
    p.add_argument(
        "--find-links", type=Path, help="read the part wheels from this folder instead of the index"
    )
    p.add_argument("--force", action="store_true", help="fetch again even when the folder is complete")
    p.set_defaults(handler=run_fetch_base)


def _add_int8_args(p: argparse.ArgumentParser) -> None:
    from models.cpu import INT8_TARGETS
    from training.export import INT8_MODES, ExportOptions
    from training.int8_static import CALIBRATION_METHODS

    d = ExportOptions()
    p.add_argument(
        "--int8",
        choices=INT8_MODES,
        default=d.int8,
        help="int8 quantisation: dynamic (activation scales per batch) or static (QDQ, ranges calibrated "
        "on training texts); default %(default)s, the faster one where measured (docs/BENCHMARKS.md)",
    )
    p.add_argument(
        "--calibration",
        choices=CALIBRATION_METHODS,
        default=d.calibration,
        help="static int8: how activation ranges are chosen from the calibration texts (default: %(default)s)",
    )
    p.add_argument(
        "--int8-isa",
        choices=("auto", *INT8_TARGETS),
        default=d.int8_isa,
        help="the CPU the int8 graph is made for: optimum's AutoQuantizationConfig for it sets the weight "
        "and activation types (auto: this machine's); default %(default)s, u8s8, which CPUs without VNNI "
        "run as fast as their own u8u8",
    )


def _columns(args: argparse.Namespace) -> Any:
    from training.data import Columns

    return Columns(text=args.text_column, topic=args.topic_column, sentiment=args.sentiment_column)


def run_train(args: argparse.Namespace) -> int:
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared machine, spinning threads steal the
    # cores the working ones need (measured: 2 spinning threads ran 2.7x slower than 1 thread).
    # Must be set before torch loads libgomp.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from training.train import train_and_export

    train_and_export(train_config(args))
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed `finsent train` flags (also used by bench.transfer)."""
    from training.config import TrainConfig

    return TrainConfig(
        data=args.data,
        valid=args.valid,
        out=args.out,
        base_model=args.base_model,
        columns=_columns(args),
        label_map=args.label_map,
        topics=args.topics,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr=args.head_lr,
        max_length=args.max_length,
        valid_fraction=args.valid_fraction,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        class_weighting=args.class_weights,
        strip_urls=not args.keep_urls,
        freeze_embeddings=not args.train_embeddings,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        feed_prior=args.feed_prior,
        bias_fit=args.bias_fit,
        bias_fit_heads=args.bias_fit_heads,
        rdrop=args.rdrop,
        fgm=args.fgm,
        weight_average=args.weight_average,
        token_mask=args.token_mask,
        pooling=args.pooling,
        head_weights=args.head_weights,
        teacher=args.teacher,
        teacher_alpha=args.teacher_alpha,
        teacher_temperature=args.teacher_temperature,
        checkpoint_dir=args.checkpoint_dir,
        progress=not args.no_progress,
        int8=args.int8,
        calibration=args.calibration,
        int8_isa=args.int8_isa,
    )


def run_distill(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run_train: before torch loads libgomp
    from training.config import TrainConfig
    from training.distill import DistillConfig, distill_and_export

    train = TrainConfig(
        data=args.data or ["data/starter_corpus.csv"],
        valid=args.valid,
        out=args.out,
        columns=_columns(args),
        label_map=args.label_map,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr=args.head_lr,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        checkpoint_dir=args.checkpoint_dir,
        progress=not args.no_progress,
        rdrop=0.0,  # the teacher's soft targets already regularise; the students were measured without
    )
    config = DistillConfig(
        teacher=args.teacher,
        train=train,
        layers=args.layers,
        select=args.select,
        temperature=args.temperature,
        alpha=args.alpha,
    )
    distill_and_export(config)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from training.checkpoint import export_checkpoint
    from training.export import ExportOptions

    options = ExportOptions(
        opset=args.opset, optimize=not args.no_optimize, int8=args.int8, calibration=args.calibration,
        int8_isa=args.int8_isa,
    )  # fmt: skip
    export_checkpoint(
        Path(args.checkpoint), Path(args.out), valid=args.valid, columns=_columns(args), options=options
    )
    return 0


def run_fetch_base(args: argparse.Namespace) -> int:
    from training.bases import fetch

    fetch(args.name, root=args.root, find_links=args.find_links, force=args.force)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.artifact import load_artifact
    from models.runtime import Scorer
    from training.data import load_dataset
    from training.inference import bar_interval, head_reports, scorer_probabilities
    from training.metrics import format_report
    from training.package import write_reports

    artifact = load_artifact(args.artifact)
    data = load_dataset(
        args.data, columns=_columns(args), topics=artifact.topic_labels, label_map=args.label_map
    )
    scorer = Scorer(artifact, provider=args.provider, variant=args.variant)

    def bar(starts: Iterable[int]) -> Iterable[int]:
        return tqdm(
            starts, desc="evaluate", unit="batch", disable=args.no_progress, mininterval=bar_interval()
        )

    reports = head_reports(data, *scorer_probabilities(scorer, data.texts, progress=bar))
    for head, rep in reports.items():
        print(
            format_report(
                rep, f"{artifact.version} on {args.data}: {head} head ({scorer.variant}, {scorer.provider})"
            )
        )
        print()
    if args.out:
        extra = {
            "artifact": str(artifact.path),
            "version": artifact.version,
            "data": str(args.data),
            "variant": scorer.variant,
            "provider": scorer.provider,
        }
        write_reports(reports, Path(args.out), extra)
        print(f"wrote {Path(args.out) / 'metrics.json'} and confusion PNGs")
    summary = {f"{h}_accuracy": r["accuracy"] for h, r in reports.items()}
    summary.update({f"{h}_macro_f1": r["macro"]["f1"] for h, r in reports.items()})
    print(json.dumps(summary))
    return 0
