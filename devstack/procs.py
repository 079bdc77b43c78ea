"""Processes and their supervision: what every part of the dev stack is started with."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import FinsentError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class StackError(FinsentError):
    """A part of the local stack could not start (the message names it and its log file)."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read())


def http_ok(url: str) -> bool:
    http_get(url, 2.0)
    return True


@dataclass
class Stack:
    """The processes and threads one run started, stopped in reverse order by `close()`."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
    ) -> subprocess.Popen[bytes]:
        """Start `argv` with its output in `<workdir>/<name>.log`; `env` replaces the environment."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env if env is not None else dict(os.environ),
                cwd=cwd,
                start_new_session=True,  # Ctrl-C goes to us; we stop children in order
            )
        self.procs.append((name, proc, log_path))
        return proc

    def adopt(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        """Supervise a process started elsewhere (stopped in order with the rest)."""
        self.procs.append((name, proc, log_path))

    def log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        return next(path for _, p, path in self.procs if p is proc)

    def tail(self, proc: subprocess.Popen[bytes], lines: int = 15) -> str:
        text = self.log_of(proc).read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def close(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # cleanup must reach every process
                log.warning("cleanup failed: %s", exc)
        self.cleanups.clear()
        for _name, proc, _path in reversed(self.procs):
            self.stop(proc)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    stack: Stack | None = None,
    interval_s: float = 0.2,
) -> None:
    """Poll `check` (exceptions count as "not yet") until it holds; StackError naming `what` when `proc`
    exits first or `timeout_s` passes (with its log's tail or path when `stack` started it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            detail = f"\n{stack.tail(proc)}" if stack is not None else ""
            raise StackError(f"{what}: process exited with {proc.returncode}{detail}")
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            where = f" (log: {stack.log_of(proc)})" if stack is not None and proc is not None else ""
            raise StackError(f"{what}: not ready after {timeout_s:.0f}s{where}")
        time.sleep(interval_s)
