"""`make demo`: the whole pipeline on one machine, no Docker — its story and its screen.

    python -m devstack.demo [--feed tests/feeds/spike_day.jsonl] [--speed 60] [--keep-running]

Starts an embedded Kafka-protocol broker (Tansu), the daemon (`finsent consume`), and — when the Debian
packages are installed — Prometheus with the project's rules (time-scaled to the replay speed; see
`devstack.monitoring`), Alertmanager and a webhook receiver; replays the recorded feed — up to shortly
before its planted surge as fast as possible (the spike detector's warm-up), then the surge N times
faster than it happened; shows a live per-topic table from `news.trends`; then prints the alerts that
fired and where the metrics are. Every process it starts is stopped on the way out, Ctrl-C included.
The parts are started by the rest of `devstack`, which the integration tests and `make bench` use too.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from devstack.broker import start_tansu
from devstack.feeds import feed_meta, slice_feed, surge_bounds, surge_topic
from devstack.finsent import replay_backlog, start_daemon, start_replay
from devstack.procs import REPO_ROOT, Stack, StackError, free_port
from devstack.prometheus import (
    alertmanager_binary,
    prom_alerts,
    prometheus_binary,
    start_alertmanager,
    start_prometheus,
    start_webhook,
)
from models.errors import FinsentError

log = logging.getLogger(__name__)

DEFAULT_FEED = REPO_ROOT / "tests" / "feeds" / "spike_day.jsonl"
DEFAULT_SPEED = 60.0
# The feed is replayed in two parts. Everything up to LEAD_IN_MIN before the planted surge goes in as
# fast as possible: it only has to give the spike detector its baseline (event time, so wall speed does
# not matter to it). From there to TAIL_MIN after the surge it is paced, N times faster than it happened,
# so the live table and Prometheus' (time-scaled) rules see the surge unfold.
LEAD_IN_MIN = 20
TAIL_MIN = 20


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
    return REPO_ROOT / "artifacts" / "latest"


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    feed = Path(args.feed)
    if not feed.is_file():
        raise StackError(f"{feed}: feed not found")
    model = Path(args.model)
    if not (model / "manifest.json").is_file():
        raise StackError(f"{model}: no model artifact (run `make train-export` first)")

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
            if prometheus_binary() and not args.no_prometheus:
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
            shown: set[str] = set()  # topics whose delivered alert (and its headlines) is printed
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while True:
                    for line in _new_deliveries(inbox, shown):
                        live.console.print(line)
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
    except StackError:
        keep_logs = True  # the message names a log file under workdir
        raise
    finally:
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


SPIKE_ALERTS = ("NegativeSentimentSpike", "TickerNegativeSpike")


def _subject(labels: dict[str, str]) -> str:
    return " ".join(f"{name}={labels[name]!r}" for name in ("topic", "ticker") if name in labels)


def _delivery_lines(alert: dict[str, Any]) -> list[str]:
    """A delivered alert and, under it, the headlines the webhook fetched from the daemon (or why not)."""
    labels = alert["labels"]
    head = (
        f"webhook {alert['receiver_path']} received: {labels.get('alertname')} "
        f"{_subject(labels)} — {alert['annotations'].get('description', '')}"
    )
    return [head, *(f"    {line}" for line in alert.get("headline_lines") or [])]


def _new_deliveries(inbox: Any, shown: set[str]) -> list[Any]:
    """Lines for each spike alert (topic or ticker) the webhook received firing and not shown yet
    (rich-escaped)."""
    from rich.markup import escape

    lines: list[Any] = []
    for alert in inbox.alerts("firing") if inbox is not None else []:
        labels = alert["labels"]
        seen = f"{labels.get('alertname')} {_subject(labels)}"
        if labels.get("alertname") not in SPIKE_ALERTS or seen in shown:
            continue
        shown.add(seen)
        first, *rest = _delivery_lines(alert)
        lines += [f"[bold red]{escape(first)}[/]", *(escape(line) for line in rest)]
    return lines


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
            for line in _delivery_lines(alert):
                console.print(line, markup=False, highlight=False)
    console.print(f"daemon metrics: http://127.0.0.1:{metrics_port}/metrics")
    if prom_url:
        console.print(f"Prometheus: {prom_url}/alerts , {prom_url}/graph")
    console.print(f"logs: {workdir} (removed on exit, kept when a part fails to start)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__.splitlines()[0])
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
