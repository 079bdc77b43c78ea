"""Assemble a model artifact: export + validate the variants, then write everything else and publish.

All files are written into a hidden staging directory beside the artifacts; only after the export
has passed validation and the manifest is written is it moved to `<root>/<version>` and `latest`
re-pointed (`models.artifact.publish`). A failed export therefore leaves no half-written artifact.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.artifact import new_version, publish, write_labels, write_manifest
from training.corpus.real_eval import model_card_section
from training.data import Dataset
from training.export import ExportOptions, validate_variants, write_variants
from training.inference import tokenize
from training.metrics import format_report, save_confusion_png, summarize


@dataclass
class PackageInput:
    model: Any  # TwoHeadClassifier in eval mode (LoRA already merged)
    tokenizer: Any  # transformers fast tokenizer
    valid: Dataset  # validation rows, labels in the model's output order
    reports: dict[str, dict[str, Any]]  # validation reports per head (PyTorch)
    base_model: str
    data_fingerprint: str
    training_config: dict[str, Any]
    max_length: int
    extra: dict[str, Any] = field(default_factory=dict)
    # training texts int8 measures smoothing and static ranges on (never the validation rows the gate checks)
    calibration_texts: Sequence[str] = ()


def _free_version(root: Path, version: str) -> str:
    """Two artifacts published in the same second (tests, scripts) get -2, -3 ... suffixes."""
    candidate, n = version, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{version}-{n}"
    return candidate


def calibration_sample(texts: Sequence[str], rows: int) -> list[str]:
    """`rows` texts spread evenly over `texts` (a file is often grouped by source or label)."""
    step = max(1, len(texts) // max(rows, 1))
    return list(texts[::step][:rows])


def write_reports(reports: dict[str, dict[str, Any]], directory: Path, extra: dict[str, Any]) -> None:
    """metrics.json and one confusion-matrix PNG per head."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {"summary": summarize(reports) if reports else {}, "heads": reports, **extra}
    (directory / "metrics.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    for head, rep in reports.items():
        save_confusion_png(rep, directory / f"confusion_{head}.png", f"{head} head")


def label_distribution(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per head, the share of each class among the model's predictions on the validation split
    (confusion-matrix column sums): the daemon's reference for drift (`pipeline/drift.py`)."""
    out = {}
    for head, rep in reports.items():
        cols = [sum(col) for col in zip(*rep["confusion"], strict=True)]
        total = sum(cols) or 1
        out[head] = {label: n / total for label, n in zip(rep["labels"], cols, strict=True)}
    return out


def int8_card_lines(manifest: dict[str, Any]) -> list[str]:
    """How model.int8.onnx was made and how closely it follows fp32 (from the manifest)."""
    plan = (manifest.get("export_validation") or {}).get("int8_plan")
    if not plan:
        return []
    if plan.get("mode") == "static":
        how = (
            f"static (QDQ) quantisation, activation ranges calibrated ({plan.get('calibration')}) on "
            f"{plan.get('calibration_rows')} training texts for {plan.get('isa')}"
        )
    else:
        how = "dynamic quantisation (activation scales computed per batch)" + (
            f" for {plan['isa']}" if plan.get("isa") else ""
        )
    if plan.get("smooth_alpha") is not None:
        how += (
            f", after smoothing (alpha {plan['smooth_alpha']}: activation outliers moved into the weights, "
            f"measured on {plan.get('calibration_rows')} training texts)"
        )
    lines = [
        "## int8 variant",
        "",
        f"`model.int8.onnx`: {how}; weights {plan.get('weights', 'int8')} per channel, the two heads fp32; "
        f"{plan.get('fp32_layers', 0)} of {plan.get('of_layers', '?')} encoder layers kept fp32 by the "
        "agreement gate (the lowest ones)"
        + (
            f", and of the next one only `{'`, `'.join(plan['also_fp32'])}`."
            if plan.get("also_fp32")
            else "."
        ),
    ]
    agr = plan.get("agreement")
    if agr:
        lines.append(
            "Agreement with fp32 on the validation rows: "
            + ", ".join(f"{head} {rate:.2%}" for head, rate in agr.items())
            + "."
        )
    return [*lines, ""]


def model_card(manifest: dict[str, Any], reports: dict[str, dict[str, Any]]) -> str:
    cfg = manifest.get("training_config", {})
    summary = manifest.get("metrics", {})
    lines = [
        f"# finsent model {manifest['version']}",
        "",
        "Two-headed classifier for financial headlines: one transformer encoder, a topic head and a",
        "sentiment head. ONNX outputs are probabilities (`topic_probs`, `sentiment_probs`).",
        "",
        f"- base model: `{manifest['base_model']}`",
        f"- training data: `{cfg.get('data')}` (fingerprint `{manifest['data_fingerprint']}`)",
        f"- max tokens per text: {manifest['max_length']}; epochs run: {len(manifest.get('history', []))}, "
        f"best epoch {manifest.get('best_epoch')}",
        f"- topics ({len(manifest['labels']['topic'])}): {', '.join(manifest['labels']['topic'])}",
        f"- regularisers: R-Drop {cfg.get('rdrop', 0.0)}, FGM {cfg.get('fgm', 0.0)}; "
        + (
            f"heads shifted to the label mix of `{cfg['feed_prior']}` after training (training/prior.py)"
            if cfg.get("feed_prior")
            else "heads as trained (no feed prior)"
        )
        + (
            f"; {', '.join(cfg.get('bias_fit_heads') or ())} bias fitted on `{cfg['bias_fit']}` "
            "(training/prior.fit_bias_shift)"
            if cfg.get("bias_fit")
            else ""
        ),
    ]
    if student := manifest.get("distilled_from"):
        lines.append(
            f"- distilled from `{student['teacher']}`: its encoder layers "
            f"{', '.join(map(str, student['layers']))} of {student['teacher_layers']} "
            f"(temperature {student['temperature']}, soft-target weight {student['alpha']})"
        )
    lines += ["", "## Validation metrics (PyTorch, before export)", ""]
    for key in sorted(summary):
        lines.append(f"- {key}: {summary[key]:.4f}")
    lines += ["", *int8_card_lines(manifest), *model_card_section(manifest)]
    lines += [
        "## Intended use and limits",
        "",
        "Routing and monitoring of English financial news headlines by topic and tone. Trained on",
        "the data named above only: headlines unlike it (other languages, long articles, sarcasm)",
        "are scored with less accuracy than the numbers above suggest. Not investment advice.",
        "",
    ]
    return "\n".join(lines)


def package_artifact(
    inp: PackageInput,
    root: Path,
    *,
    version: str | None = None,
    options: ExportOptions | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Export, validate, write and publish one artifact; return `<root>/<version>`."""
    options = options or ExportOptions()
    root.mkdir(parents=True, exist_ok=True)
    version = _free_version(root, version or new_version())
    staging = root / f".staging-{version}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        say("export: ONNX fp32 (fused) + " + ", ".join(v for v in options.variants if v != "fp32"))
        pad_id = int(inp.tokenizer.pad_token_id)
        encoded = tokenize(inp.tokenizer, inp.valid.texts, inp.max_length)
        plan: dict[str, Any] = {}
        calibration = None
        if "int8" in options.variants:
            texts = calibration_sample(inp.calibration_texts, options.calibration_rows)
            calibration = tokenize(inp.tokenizer, texts, inp.max_length)
        paths = write_variants(
            inp.model, staging, options, encoded=encoded, pad_id=pad_id, report=plan, calibration=calibration
        )
        validation = validate_variants(inp.model, paths, encoded, pad_id, options)
        validation["int8_plan"] = plan.get("int8")
        diffs = validation["fp32_vs_torch_max_abs_diff"]
        say(
            "export validated: fp32 vs PyTorch max |dp| "
            + ", ".join(f"{h} {d:.2e}" for h, d in diffs.items())
            + "".join(
                f"; {v} agreement " + ", ".join(f"{h} {r:.2%}" for h, r in rates.items())
                for v, rates in validation["agreement_with_fp32"].items()
            )
        )
        inp.tokenizer.save_pretrained(str(staging / "tokenizer"))
        write_labels(staging, list(inp.valid.topic_labels), list(inp.valid.sentiment_labels))
        write_reports(inp.reports, staging, {"export_validation": validation})
        for head, rep in inp.reports.items():
            say(format_report(rep, f"validation: {head} head"))
        manifest: dict[str, Any] = {
            "version": version,
            "base_model": inp.base_model,
            "data_fingerprint": inp.data_fingerprint,
            "training_config": inp.training_config,
            "metrics": summarize(inp.reports) if inp.reports else {},
            "labels": {"topic": list(inp.valid.topic_labels), "sentiment": list(inp.valid.sentiment_labels)},
            "max_length": inp.max_length,
            "pad_token_id": pad_id,
            "opset": options.opset,
            "export_validation": validation,
            "label_distribution": label_distribution(inp.reports),
            **inp.extra,
        }
        manifest = write_manifest(staging, manifest)
        (staging / "MODEL_CARD.md").write_text(model_card(manifest, inp.reports), encoding="utf-8")
        final = publish(staging, root, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"artifact: {final}")
    return final
