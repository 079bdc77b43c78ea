"""The model artifact: a versioned directory that training writes and the daemon loads.

An artifact is accepted only if its manifest parses, every file it lists is present with the
checksum recorded at export time, and its label files agree with the manifest. That check runs on
every load, so a half-copied or edited artifact is refused with a message naming the file, instead
of scoring the firehose with the wrong weights. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAME = "MODEL_CARD.md"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILE = f"{TOKENIZER_DIR}/tokenizer.json"
LABEL_FILES = {"topic": "labels/topic.txt", "sentiment": "labels/sentiment.txt"}
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("topic_probs", "sentiment_probs")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
LATEST = "latest"

_REQUIRED_KEYS = ("format_version", "version", "created_at", "base_model", "labels", "max_length", "variants")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_version(now: datetime | None = None) -> str:
    """A sortable version id: UTC timestamp, so `ls artifacts/` lists oldest first."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class Artifact:
    """A verified artifact on disk."""

    path: Path
    manifest: Mapping[str, Any]
    topic_labels: tuple[str, ...]
    sentiment_labels: tuple[str, ...]
    variants: tuple[str, ...] = field(default=())

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def pad_token_id(self) -> int | None:
        value = self.manifest.get("pad_token_id")
        return None if value is None else int(value)

    @property
    def label_distribution(self) -> dict[str, dict[str, float]] | None:
        return label_distribution(self.manifest)

    def variant_path(self, variant: str) -> Path:
        if variant not in self.variants:
            raise ArtifactError(
                f"{self.path}: artifact has no '{variant}' variant (it has: {', '.join(self.variants)})"
            )
        return self.path / self.manifest["variants"][variant]["file"]


def label_distribution(manifest: Mapping[str, Any]) -> dict[str, dict[str, float]] | None:
    """Per head, the class shares of the model's predictions on its validation split (the drift
    reference); None when the manifest has none (artifacts older than it) or it is malformed, so
    that drift is reported as unavailable instead of failing the load."""
    dist = manifest.get("label_distribution")
    if not isinstance(dist, Mapping):
        return None
    out: dict[str, dict[str, float]] = {}
    for head in ("topic", "sentiment"):
        shares = dist.get(head)
        if not isinstance(shares, Mapping) or not shares:
            return None
        try:
            out[head] = {str(k): float(v) for k, v in shares.items()}
        except (TypeError, ValueError):
            return None
        values = out[head].values()
        if any(not v >= 0 for v in values) or not sum(values) > 0:  # `not >=` also catches NaN
            return None
    return out


def write_labels(directory: Path, topic_labels: list[str], sentiment_labels: list[str]) -> None:
    for head, labels in (("topic", topic_labels), ("sentiment", sentiment_labels)):
        target = directory / LABEL_FILES[head]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Complete `manifest` with checksums of every variant and support file in `directory`, write it.

    `manifest` carries what only training knows (version, base_model, data_fingerprint,
    training_config, metrics, labels, max_length, pad_token_id); this adds `variants` and `files`
    from what is actually on disk, so the checksums can never describe other bytes.
    """
    directory = Path(directory)
    out = dict(manifest)
    out.setdefault("format_version", FORMAT_VERSION)
    out.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out.setdefault("inputs", list(INPUT_NAMES))
    out.setdefault("outputs", list(OUTPUT_NAMES))
    out.setdefault("output_kind", "probabilities")
    variants: dict[str, Any] = {}
    for variant, filename in VARIANT_FILES.items():
        path = directory / filename
        if path.exists():
            variants[variant] = {
                "file": filename,
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
                "provider": "cuda" if variant == "fp16" else "cpu",
            }
    if not variants:
        raise ArtifactError(
            f"{directory}: no ONNX variant to put in the manifest ({', '.join(VARIANT_FILES.values())})"
        )
    out["variants"] = variants
    files: dict[str, str] = {}
    for rel in sorted(_support_files(directory)):
        files[rel] = sha256_file(directory / rel)
    out["files"] = files
    (directory / MANIFEST_NAME).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def _support_files(directory: Path) -> list[str]:
    """Tokenizer and label files: everything the daemon reads besides the ONNX graph."""
    rels = [rel for rel in LABEL_FILES.values() if (directory / rel).exists()]
    tok = directory / TOKENIZER_DIR
    if tok.is_dir():
        rels += [p.relative_to(directory).as_posix() for p in tok.rglob("*") if p.is_file()]
    return rels


def publish(staging: Path, root: Path, version: str) -> Path:
    """Move a written, verified staging dir to `root/<version>` and point `root/latest` at it.

    The symlink is swapped with an atomic rename, so a daemon starting during a publish sees either
    the old or the new artifact, never a missing one.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise ArtifactError(f"{final}: an artifact with version '{version}' already exists")
    shutil.move(str(staging), str(final))
    verify_artifact(final)
    point_latest(root, version)
    return final


def point_latest(root: Path, version: str) -> Path:
    """Point `root/latest` at `root/<version>` with an atomic rename of a fresh symlink: a reader
    (a starting daemon, a running one re-checking) sees the old target or the new, never none."""
    tmp_link = root / f".{LATEST}.{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(version, target_is_directory=True)
    os.replace(tmp_link, root / LATEST)
    return root / LATEST


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST_NAME
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact directory (train one with `make train-export`)")
    if not mpath.is_file():
        raise ArtifactError(f"{mpath}: manifest missing; not a finsent model artifact")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{mpath}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath}: manifest is not a JSON object")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"{mpath}: manifest lacks {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: format_version {manifest['format_version']!r}, this finsent reads {FORMAT_VERSION}"
        )
    return manifest


def _check_file(path: Path, rel: str, expected: str, what: str) -> None:
    target = path / rel
    if not target.is_file():
        raise ArtifactError(f"{target}: {what} listed in the manifest is missing")
    actual = sha256_file(target)
    if actual != expected:
        raise ArtifactError(
            f"{target}: checksum mismatch for {what} (manifest {expected[:12]}…, file {actual[:12]}…); "
            "the artifact was modified or copied incompletely"
        )


def _read_labels(path: Path, head: str) -> tuple[str, ...]:
    target = path / LABEL_FILES[head]
    if not target.is_file():
        raise ArtifactError(f"{target}: {head} label file missing")
    labels = tuple(line.rstrip("\n") for line in target.read_text(encoding="utf-8").splitlines())
    labels = tuple(label for label in labels if label)
    if not labels:
        raise ArtifactError(f"{target}: {head} label file is empty")
    return labels


def verify_artifact(path: str | os.PathLike[str], *, checksums: bool = True) -> Artifact:
    """Check an artifact directory completely; return it, or raise ArtifactError naming the fault."""
    path = Path(path)
    manifest = _read_manifest(path)
    mpath = path / MANIFEST_NAME
    variants = manifest["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ArtifactError(f"{mpath}: manifest lists no model variants")
    for variant, info in variants.items():
        if (
            variant not in VARIANT_FILES
            or not isinstance(info, dict)
            or "file" not in info
            or "sha256" not in info
        ):
            raise ArtifactError(f"{mpath}: malformed entry for variant '{variant}'")
        if checksums:
            _check_file(path, info["file"], info["sha256"], f"{variant} ONNX model")
        elif not (path / info["file"]).is_file():
            raise ArtifactError(
                f"{path / info['file']}: {variant} ONNX model listed in the manifest is missing"
            )
    for head, rel in LABEL_FILES.items():
        files = manifest.get("files", {})
        if rel not in files:
            raise ArtifactError(f"{mpath}: manifest does not list the {head} label file {rel}")
    if TOKENIZER_FILE not in manifest.get("files", {}):
        raise ArtifactError(f"{mpath}: manifest does not list the tokenizer file {TOKENIZER_FILE}")
    for rel, digest in manifest.get("files", {}).items():
        if checksums:
            _check_file(path, rel, digest, "file")
        elif not (path / rel).is_file():
            raise ArtifactError(f"{path / rel}: file listed in the manifest is missing")
    topic = _read_labels(path, "topic")
    sentiment = _read_labels(path, "sentiment")
    labels = manifest["labels"]
    if list(topic) != list(labels.get("topic", [])):
        raise ArtifactError(f"{path / LABEL_FILES['topic']}: topic labels differ from the manifest's")
    if list(sentiment) != list(labels.get("sentiment", [])):
        raise ArtifactError(f"{path / LABEL_FILES['sentiment']}: sentiment labels differ from the manifest's")
    if sorted(sentiment) != sorted(SENTIMENT_LABELS):
        raise ArtifactError(
            f"{path / LABEL_FILES['sentiment']}: sentiment labels must be {', '.join(SENTIMENT_LABELS)}, got {', '.join(sentiment)}"
        )
    return Artifact(
        path=path.resolve(),
        manifest=manifest,
        topic_labels=topic,
        sentiment_labels=sentiment,
        variants=tuple(v for v in VARIANT_FILES if v in variants),
    )


def load_artifact(path: str | os.PathLike[str], *, checksums: bool = True) -> Artifact:
    """Load (and verify) an artifact; `artifacts/latest` resolves through its symlink."""
    return verify_artifact(Path(path), checksums=checksums)
