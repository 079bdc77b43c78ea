"""The finsent command line as the dev stack runs it: the daemon, replays, and what it has taken in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devstack.procs import REPO_ROOT, Stack, StackError, http_get, http_ok, wait_until
from pipeline.cli import finsent_argv

# `python -m pipeline.cli` run with the checkout as its working directory rather than the `finsent`
# console script: the script imports whatever checkout the environment was installed from (a shared
# venv, a git worktree), this runs the code of the checkout the harness itself lives in.
FINSENT = finsent_argv()


def finsent_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's FINSENT_* variables (flags say everything), offline, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")  # fmt: skip
    env.update(extra)
    return env


def run_finsent(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`finsent ARGS...` to completion, output captured as text."""
    return subprocess.run(finsent_argv(*args), capture_output=True, text=True, env=env or finsent_env(),
                          cwd=REPO_ROOT, timeout=timeout)  # fmt: skip


def start_daemon(
    stack: Stack, bootstrap: str, model: Path, metrics_port: int, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`finsent consume` on `bootstrap`; returns once its /metrics answers."""
    argv = finsent_argv(
        "consume", "--bootstrap-servers", bootstrap, "--model", str(model),
        "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port), *(extra or []),
    )  # fmt: skip
    proc = stack.spawn("daemon", argv, env=finsent_env())
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_until(lambda: http_ok(url), 120, "finsent daemon", proc, stack)
    return proc


def start_replay(
    stack: Stack,
    feed: Path,
    bootstrap: str,
    speed: float | None,
    topic: str = "news.raw",
    name: str = "replay",
) -> subprocess.Popen[bytes]:
    """`finsent replay` paced at `speed` (None: as fast as possible)."""
    pace = ["--speed", str(speed)] if speed else ["--as-fast-as-possible"]
    argv = finsent_argv("replay", str(feed), "--bootstrap-servers", bootstrap, "--topic", topic, *pace)
    return stack.spawn(name, argv, env=finsent_env())


def daemon_input_count(metrics_url: str) -> float:
    """Messages the daemon has taken in (scored + dead-lettered), from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http_get(metrics_url).decode("utf-8")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "finsent_messages"
        for sample in family.samples
        if sample.name == "finsent_messages_total"
    )


def replay_backlog(
    stack: Stack, feed: Path, bootstrap: str, count: int, metrics_url: str, timeout_s: float = 300
) -> None:
    """Replay `feed` as fast as possible and wait until the daemon has taken in all `count` messages."""
    if count == 0:
        return
    proc = start_replay(stack, feed, bootstrap, None, name="replay-backlog")
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise StackError(
            f"backlog replay: not done after {timeout_s:.0f}s (log: {stack.log_of(proc)})"
        ) from None
    if rc != 0:
        raise StackError(f"backlog replay: exited with {rc}\n{stack.tail(proc)}")
    wait_until(
        lambda: daemon_input_count(metrics_url) >= count, timeout_s, "daemon catching up on the backlog"
    )
