"""Run the real `finsent` CLI as subprocesses against a test broker (integration tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

FINSENT = [sys.executable, "-m", "pipeline.cli"]
REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without FINSENT_* variables of the caller, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def finsent(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FINSENT, *args], capture_output=True, text=True, env=env or clean_env(), cwd=REPO, timeout=timeout
    )


def start_consume(log_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed when the test ends
    return subprocess.Popen(
        [*FINSENT, "consume", *args], stdout=log, stderr=subprocess.STDOUT, env=env or clean_env(), cwd=REPO
    )


def wait_for_log(log_path: Path, needle: str, timeout: float = 60, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists() and log_path.read_text(errors="replace").count(needle) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{needle!r} not seen {count}x in {log_path}:\n{log_path.read_text(errors='replace')[-3000:]}"
    )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels must match exactly)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_part = head.partition("{")
        have = ",".join(sorted(label_part.rstrip("}").split(","))) if label_part else ""
        if metric == name and have == want:
            return float(value)
    return None


def write_feed(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
