"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they catch a breach.

`make lint` runs `lint-imports` too; this test makes CI (`make test`) enforce them as well."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "pipeline", "training", "devstack", "bench")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports (import-linter, dev extras) is not installed")
    # cwd is put on sys.path by lint-imports, so the packages of `cwd` are the ones analysed.
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("pipeline/windows.py", "import training.data", "pipeline never imports training"),
        ("pipeline/spikes.py", "import torch", "pipeline never imports training, torch"),
        ("models/artifact.py", "from pipeline import settings", "models imports neither"),
        ("training/data.py", "import pipeline.records", "training does not import pipeline"),
        ("pipeline/replay.py", "import devstack.procs", "never import the dev stack"),
    ],
)
def test_each_contract_fails_on_a_breach(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """A copy of the sources with one forbidden import added: lint-imports names the broken contract."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(
        target.read_text(encoding="utf-8") + f"\n{line}  # added by the test\n", encoding="utf-8"
    )
    out = lint_imports(tmp_path)
    assert out.returncode != 0, out.stdout
    broken = [row for row in out.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert any(contract in row for row in broken), out.stdout
