"""The project's Prometheus/Alertmanager/Grafana files as data: derive local and time-scaled copies of
them, and pull every PromQL expression out of them — pure functions over parsed YAML/JSON, no processes.

Used by the demo (`make demo`) and the tests: both run the *same* files that the compose stack mounts
(deploy/prometheus, deploy/alertmanager, deploy/grafana), rewriting only what a local run must change —
where the targets are, where alerts go, and, for a replay that runs N times faster than the news did, the
durations in the rules (`for:`, `keep_firing_for:`, range selectors, `offset`). Thresholds are never
touched, so a scaled rule judges exactly what the production rule judges.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY_DIR / "prometheus" / "prometheus.yml"
RULES_DIR = DEPLOY_DIR / "prometheus" / "rules"
RULE_TESTS_DIR = DEPLOY_DIR / "prometheus" / "tests"
ALERTMANAGER_CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY_DIR / "grafana" / "dashboards" / "finsent.json"

# -- durations ----------------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION_RE = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
_PART_RE = re.compile(r"(\d+)(ms|[smhdwy])")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `90s`, `1h30m` or `500ms`."""
    if not isinstance(text, str) or not _DURATION_RE.match(text):
        raise ConfigError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[unit] for n, unit in _PART_RE.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds`, rounded to whole milliseconds (`1m30s`, `250ms`)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def _scaled(text: str, factor: float, floor_s: float) -> str:
    return format_duration(max(parse_duration(text) / factor, floor_s))


# A range selector `[5m]`, a subquery `[1h:30s]` (the step may be empty: `[1h:]`), or `offset 5m`.
_RANGE_RE = re.compile(r"\[\s*([0-9a-z]+)\s*(?::\s*([0-9a-z]*)\s*)?\]")
_OFFSET_RE = re.compile(r"\boffset\s+(-?)([0-9a-z]+)")


def scale_promql(expr: str, factor: float, min_range_s: float = 0.0) -> str:
    """`expr` with every range, subquery step and offset divided by `factor`.

    Ranges are kept at least `min_range_s` long: a rate needs two samples in its range, so a scaled
    range must stay longer than two scrape intervals. Durations inside string literals are left alone
    only if they do not look like `[...]`/`offset` — the project's expressions have none.
    """
    if factor <= 0:
        raise ConfigError(f"time scale factor must be > 0, got {factor}")

    def _range(m: re.Match[str]) -> str:
        rng = _scaled(m.group(1), factor, min_range_s)
        if m.group(2) is None:
            return f"[{rng}]"
        step = _scaled(m.group(2), factor, 0.001) if m.group(2) else ""
        return f"[{rng}:{step}]"

    def _offset(m: re.Match[str]) -> str:
        return f"offset {m.group(1)}{_scaled(m.group(2), factor, 0.001)}"

    return _OFFSET_RE.sub(_offset, _RANGE_RE.sub(_range, expr))


# Alerts about the daemon process itself (stalls, lag, DLQ, fallback) judge it in wall-clock time: a
# replay N times faster does not make a batch score N times faster, so their durations are not scaled.
WALL_CLOCK_CATEGORIES = ("operational",)


def scale_rules(
    doc: dict[str, Any],
    factor: float,
    *,
    min_range_s: float = 0.0,
    min_for_s: float = 0.0,
    keep_categories: tuple[str, ...] = WALL_CLOCK_CATEGORIES,
) -> dict:
    """A copy of a parsed rule file with its durations divided by `factor` (thresholds untouched).

    Alerting rules whose `category` label is in `keep_categories` are copied unchanged."""
    out = copy.deepcopy(doc)
    for group in out.get("groups") or []:
        if "interval" in group:
            group["interval"] = _scaled(group["interval"], factor, 0.001)
        for rule in group.get("rules") or []:
            if (rule.get("labels") or {}).get("category") in keep_categories:
                continue
            rule["expr"] = scale_promql(str(rule["expr"]), factor, min_range_s)
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = _scaled(str(rule[key]), factor, min_for_s)
    return out


# -- deriving local configs ---------------------------------------------------------------------------


def local_prometheus_config(
    doc: dict[str, Any],
    *,
    targets_file: str,
    rule_files: list[str],
    alertmanager: str | None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """The project's prometheus.yml for a local run: the `finsent` job reads `targets_file`, rules come
    from `rule_files`, alerts go to `alertmanager` (host:port, or nowhere when None). Jobs other than
    `finsent` (e.g. Prometheus scraping itself in compose) are dropped: they point at compose hosts."""
    out = copy.deepcopy(doc)
    jobs = [j for j in out.get("scrape_configs") or [] if j.get("job_name") == "finsent"]
    if not jobs:
        raise ConfigError("prometheus.yml: no scrape job named 'finsent'")
    job = jobs[0]
    for key in [k for k in job if k == "static_configs" or k.endswith("_sd_configs")]:
        del job[key]  # compose DNS names and example files mean nothing to a local run
    job["file_sd_configs"] = [{"files": [targets_file], "refresh_interval": "1s"}]
    out["scrape_configs"] = [job]
    out["rule_files"] = list(rule_files)
    if alertmanager:
        out["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        out.pop("alerting", None)
    glob = out.setdefault("global", {})
    if scrape_interval:
        glob["scrape_interval"] = scrape_interval
        job["scrape_interval"] = scrape_interval
    if evaluation_interval:
        glob["evaluation_interval"] = evaluation_interval
    return out


def local_alertmanager_config(
    doc: dict[str, Any], *, webhook_url: str, group_wait: str | None = None, group_interval: str | None = None
) -> dict[str, Any]:
    """The project's alertmanager.yml with every webhook pointed at `webhook_url` + its original path
    (so a receiver can still tell /newsdesk from /ops), and optionally shorter grouping timers."""
    out = copy.deepcopy(doc)
    base = webhook_url.rstrip("/")
    for receiver in out.get("receivers") or []:
        for hook in receiver.get("webhook_configs") or []:
            path = re.sub(r"^[a-z]+://[^/]*", "", str(hook.get("url", "")))
            hook["url"] = base + (path or "/")

    def _timers(route: dict[str, Any]) -> None:
        if group_wait and (route is out["route"] or "group_wait" in route):
            route["group_wait"] = group_wait
        if group_interval and (route is out["route"] or "group_interval" in route):
            route["group_interval"] = group_interval
        for child in route.get("routes") or []:
            _timers(child)

    _timers(out["route"])
    return out


# -- PromQL expressions of the rules and the dashboard --------------------------------------------------


def rule_expressions(doc: dict[str, Any], source: str = "") -> Iterator[tuple[str, str]]:
    """(where, expr) for every rule of a parsed rule file."""
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("record") or rule.get("alert")
            yield f"{source}: {group.get('name')}/{name}", str(rule["expr"])


_LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def dashboard_expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every PromQL query of a Grafana dashboard: panel targets (rows included),
    annotation queries and query variables (`label_values(m, l)` becomes `count by (l) (m)`)."""

    def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from _panels(panel.get("panels") or [])

    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield f"panel {panel.get('title')!r} ref {target.get('refId')}", target["expr"]
    for ann in (dashboard.get("annotations") or {}).get("list") or []:
        if ann.get("expr"):
            yield f"annotation {ann.get('name')!r}", ann["expr"]
    for var in (dashboard.get("templating") or {}).get("list") or []:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and query:
            m = _LABEL_VALUES_RE.match(query)
            expr = f"count by ({m.group(2)}) ({m.group(1)})" if m else query
            yield f"variable {var.get('name')!r}", expr


def substitute_grafana_variables(expr: str, *, rate_interval: str = "1m", topic: str = ".+") -> str:
    """Replace the dashboard's Grafana variables with values Prometheus can evaluate directly."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    out = out.replace("$__range", rate_interval)
    return out.replace("${topic:regex}", topic).replace("$topic", topic)


def expressions_as_rules(exprs: list[tuple[str, str]]) -> dict[str, Any]:
    """A rule file with one recording rule per expression, for `promtool check rules`: the way to have
    promtool parse arbitrary PromQL offline. Rule names carry the index into `exprs`."""
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    return {"groups": [{"name": "expression-check", "rules": rules}]}
