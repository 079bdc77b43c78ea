"""Run the real `finsent` CLI as subprocesses against a test broker (integration tests).

The command line and its environment are the dev stack's (`devstack.finsent`)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.finsent import FINSENT, finsent_argv, run_finsent
from devstack.finsent import finsent_env as clean_env
from devstack.procs import REPO_ROOT as REPO
from devstack.procs import http_get

__all__ = ["FINSENT", "REPO", "clean_env", "consume_args", "finsent", "sample", "scrape", "start_consume",
           "wait_for_log", "wait_metric", "write_feed"]  # fmt: skip

finsent = run_finsent


def start_consume(
    log_path: Path, *args: str, env: dict[str, str] | None = None, verbose: bool = False
) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed when the test ends
    return subprocess.Popen(
        finsent_argv(*(["-v"] if verbose else []), "consume", *args),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env or clean_env(),
        cwd=REPO,
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
    return http_get(f"http://127.0.0.1:{port}/metrics").decode()


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


def consume_args(bs: str, model: Path, *extra: str) -> list[str]:
    """`finsent consume` flags for a test broker and model, fp32 on the CPU (the same numbers every run)."""
    return [
        "--bootstrap-servers",
        bs,
        "--model",
        str(model),
        "--variant",
        "fp32",
        "--provider",
        "cpu",
        *extra,
    ]


def wait_metric(
    port: int, ok: Callable[[str], bool], what: str, log: Path, timeout: float = 60, poll_s: float = 0.05
) -> str:
    """Scrape the daemon's /metrics until `ok(text)`; the daemon's log tail in the error otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            text = scrape(port)
            if ok(text):
                return text
        time.sleep(poll_s)
    raise AssertionError(f"{what} not seen within {timeout}s:\n{log.read_text()[-3000:]}")
