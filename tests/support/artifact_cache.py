"""Build test artifacts once and reuse them across test sessions.

An artifact is cached under `.cache/test-artifacts/<key>`, where the key hashes everything that
decides its bytes: the builder's name and arguments, the input files, and the source of the code
that trains and exports it. Change any of those and a new artifact is built; otherwise the suite
reuses the old one. A build goes to a temporary sibling that is renamed into place only when
complete, so an interrupted or concurrent session never sees half an artifact.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO / ".cache" / "test-artifacts"
# Code whose change must invalidate cached artifacts.
SOURCES = (
    "tests/support/tiny_models.py",
    "training/data.py",
    "training/model.py",
    "training/config.py",
    "training/inference.py",
    "training/train.py",
    "training/export.py",
    "training/package.py",
    "training/metrics.py",
    "models/artifact.py",
    "models/batching.py",
    "models/runtime.py",
)


def cache_key(name: str, args: dict[str, object], inputs: tuple[Path, ...] = ()) -> str:
    digest = hashlib.sha256(name.encode())
    digest.update(repr(sorted(args.items())).encode())
    for rel in SOURCES:
        path = REPO / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    for path in inputs:
        digest.update(Path(path).read_bytes())
    return f"{name}-{digest.hexdigest()[:16]}"


def cached_artifact(key: str, build: Callable[[Path], Path]) -> Path:
    """`<cache>/<key>/artifacts/latest`, building it with `build(out_root)` when absent."""
    final = CACHE_ROOT / key
    latest = final / "artifacts" / "latest"
    if (latest / "manifest.json").is_file():
        return latest.resolve()
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_ROOT / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # another session finished the same build first: use theirs
            if not (latest / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return latest.resolve()
