"""Real-news figures for the default model, recorded so that its model card can state them.

The starter corpus is generated, so its validation split says little about real headlines. The default
model is therefore also measured on real, human-labelled sets that it never trains on (a fresh clone
does not have them, so this is a step run by hand, not part of training):

    finsent evaluate artifacts/latest "../shared/data/twitter_topic_train.csv#sentiment=-" --out reports/real-topic
    finsent evaluate artifacts/latest "../shared/data/twitter_sentiment_train.csv#topic=-" --out reports/real-sentiment
    python -m training.corpus.real_eval artifacts/latest reports/real-topic reports/real-sentiment

(`#sentiment=-` tells `finsent evaluate` that the source has no labels for that head.)

The last command writes `data/real_eval.json`: the figures, the data sets they came from, and the
training-data fingerprint and corpus checksum of the model measured. `model_card_section` puts them in
the card of any artifact trained on that same data (same fingerprint) and says plainly when an artifact
was trained on something else, so nobody reads the corpus validation figures as real-news accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "data" / "real_eval.json"
CORPUS = ROOT / "data" / "starter_corpus.csv"
BENCHMARKS_SECTION = 'docs/BENCHMARKS.md, "Default model on real data"'


def file_sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _head_figures(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Accuracy, macro-F1 and row count per head that the evaluated file labels."""
    return {
        head: {
            "accuracy": round(rep["accuracy"], 4),
            "macro_f1": round(rep["macro"]["f1"], 4),
            "rows": rep["n"],
        }
        for head, rep in metrics.get("heads", {}).items()
        if rep.get("n")
    }


def build_record(
    artifact: Path, metrics_dirs: list[Path], corpus: Path = CORPUS, names: list[str] | None = None
) -> dict[str, Any]:
    """The record for one artifact from `finsent evaluate --out` directories (one per real set).

    `names` labels the sets (default: the evaluated file's name), e.g. when a copy with an added
    empty column was evaluated in place of the original file.
    """
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    sets = []
    if names is not None and len(names) != len(metrics_dirs):
        raise ValueError(f"{len(names)} names for {len(metrics_dirs)} evaluations")
    for i, directory in enumerate(metrics_dirs):
        path = directory / "metrics.json" if directory.is_dir() else directory
        metrics = json.loads(path.read_text(encoding="utf-8"))
        figures = _head_figures(metrics)
        if not figures:
            raise ValueError(f"{path}: no head with labelled rows")
        sets.append(
            {
                "data": names[i] if names else Path(metrics.get("data", "?")).name,
                "variant": metrics.get("variant"),
                "heads": figures,
            }
        )
    cfg = manifest.get("training_config", {})
    return {
        "model_version": manifest["version"],
        "data_fingerprint": manifest["data_fingerprint"],
        "corpus_sha256": file_sha256(corpus),
        "base_model": manifest["base_model"],
        "training": {k: cfg.get(k) for k in RECIPE_KEYS if k in cfg},
        "in_corpus_validation": {k: round(v, 4) for k, v in manifest.get("metrics", {}).items()},
        "real_sets": sets,
    }


# What must match, beside the data, for a recorded measurement to describe another artifact's model.
RECIPE_KEYS = (
    "epochs",
    "seed",
    "max_length",
    "lr",
    "class_weighting",
    "strip_urls",
    "feed_prior",
    "bias_fit",
    "bias_fit_heads",
    "rdrop",
    "fgm",
    "pooling",
)


def same_recipe(manifest: dict[str, Any], record: dict[str, Any]) -> bool:
    """The record's training settings equal the manifest's wherever the record has them."""
    cfg = manifest.get("training_config", {})
    return all(cfg.get(k) == v for k, v in record.get("training", {}).items())


def load_record(path: Path = RECORD) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def validation_source(manifest: dict[str, Any]) -> str:
    """Where an artifact's validation figures come from, in words for its card."""
    valid = manifest.get("training_config", {}).get("valid")
    if not valid:
        return "a split of the training data itself"
    return f"`{valid}`, rows written for the project apart from the training data, not real news"


def model_card_section(manifest: dict[str, Any], record: dict[str, Any] | None = None) -> list[str]:
    """Markdown lines for the card: the real-news figures when this artifact's data was measured."""
    record = load_record() if record is None else record
    lines = ["## Accuracy on real news (sets never used in training)", ""]
    if manifest.get("distilled_from"):
        # same training data as the measured model, not the same model: its figures are not this one's
        lines += [
            "Not measured for this model: it is a student distilled from "
            f"`{manifest['distilled_from'].get('teacher')}`, and the recorded figures are for a full-size model.",
            'See docs/BENCHMARKS.md, "Distilled student", for how students measure on real news.',
            "",
        ]
        return lines
    if (
        not record
        or record.get("data_fingerprint") != manifest.get("data_fingerprint")
        or not same_recipe(manifest, record)
    ):
        lines += [
            "Not measured for this training data and recipe. The validation figures above come from "
            + validation_source(manifest)
            + "; on real headlines expect less. See "
            + BENCHMARKS_SECTION
            + ".",
            "",
        ]
        return lines
    lines += [
        f"Measured on model {record['model_version']}, trained on this same data (fingerprint match), scored",
        "through ONNX Runtime as deployed. The validation figures above come from "
        + validation_source(manifest)
        + "; these do not:",
        "",
        "| set | head | rows | accuracy | macro-F1 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for s in record["real_sets"]:
        for head, f in s["heads"].items():
            lines.append(
                f"| `{s['data']}` | {head} | {f['rows']:,} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} |"
            )
    lines += ["", "How these are measured: " + BENCHMARKS_SECTION + ".", ""]
    return lines


SECTION_TITLE = "## Accuracy on real news"


def with_card_section(card: str, section: list[str]) -> str:
    """`card` (a MODEL_CARD.md) with its real-news section replaced by `section`, or with `section`
    appended when it has none. Pure."""
    lines = card.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(SECTION_TITLE)), None)
    if start is None:
        return "\n".join([*lines, "", *section]).rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join([*lines[:start], *section, *lines[end:]]).rstrip("\n") + "\n"


def refresh_card(artifact: Path, record: dict[str, Any]) -> bool:
    """Rewrite the real-news section of `artifact`'s MODEL_CARD.md from `record` (the figures were
    just measured on it, while its card was written at export from the record of then). The card is
    documentation, outside the manifest's checksums. False when the artifact has no card."""
    card = artifact / "MODEL_CARD.md"
    if not card.is_file():
        return False
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    text = card.read_text(encoding="utf-8")
    card.write_text(with_card_section(text, model_card_section(manifest, record)), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.corpus.real_eval", description=__doc__.splitlines()[0]
    )
    parser.add_argument("artifact", type=Path, help="the artifact that was evaluated")
    parser.add_argument("metrics", type=Path, nargs="+", help="`finsent evaluate --out` directories")
    parser.add_argument("--out", type=Path, default=RECORD, help="record to write (default: %(default)s)")
    parser.add_argument("--names", nargs="+", help="one name per evaluation (default: the file evaluated)")
    args = parser.parse_args(argv)
    record = build_record(args.artifact, args.metrics, names=args.names)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    if refresh_card(args.artifact, record):
        print(f"updated {args.artifact / 'MODEL_CARD.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
