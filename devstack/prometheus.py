"""Prometheus, Alertmanager and the example webhook receiver, started on the project's own configs
(derived for a loopback run by `devstack.monitoring`), and the HTTP queries the harness makes."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from devstack import monitoring as mon
from devstack.procs import Stack, StackError, free_port, http_get, http_ok, wait_until


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    """Debian names it prometheus-alertmanager, upstream alertmanager."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


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


def start_alertmanager(stack: Stack, webhook_url: str, *, group_wait: str = "1s") -> str:
    """Alertmanager with the project's config, every receiver pointed at `webhook_url`; returns its URL."""
    binary = alertmanager_binary()
    if binary is None:
        raise StackError("Alertmanager is not installed (`make system-deps`)")
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
    wait_until(lambda: http_ok(url + "/-/ready"), 30, "alertmanager", proc, stack)
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
    binary = prometheus_binary()
    if binary is None:
        raise StackError("Prometheus is not installed (`make system-deps`)")
    home = stack.workdir / "prometheus"
    config = write_prometheus_files(
        home, targets, alertmanager=alertmanager, time_scale=time_scale, scrape_interval=scrape_interval
    )
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = stack.spawn("prometheus", argv)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/-/ready"), 60, "prometheus", proc, stack)
    return url


def prom_query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query (now, or at unix time `at`); StackError with Prometheus' message if rejected."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    query = urllib.parse.urlencode(params)
    try:
        body = json.loads(http_get(f"{url}/api/v1/query?{query}"))
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    if body.get("status") != "success":
        raise StackError(f"query {expr!r}: {body.get('errorType')}: {body.get('error')}")
    return list(body["data"]["result"])


def prom_alerts(url: str) -> list[dict[str, Any]]:
    """Prometheus' active alerts (pending and firing)."""
    return list(json.loads(http_get(f"{url}/api/v1/alerts"))["data"]["alerts"])
