"""Writes deploy/grafana/dashboards/finsent.json, the provisioned Grafana dashboard.

The dashboard is generated rather than hand-edited so that its PromQL lives in one readable list and
every panel gets the same datasource, units and layout. Run after changing a query:

    .venv/bin/python deploy/grafana/build_dashboard.py

tests/test_deploy_config.py fails when the committed JSON differs from what this script writes, and the
end-to-end test evaluates every expression in it against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "finsent.json"
UID = "finsent-overview"  # the spike alert's `dashboard` annotation links to /d/finsent-overview/
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioned with this uid
TOPIC = 'topic=~"$topic"'
WIDTH = 24


def _target(
    expr: str, legend: str, ref: str, *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


def _quantiles(metric: str) -> list[dict[str, Any]]:
    return [
        _target(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[$__rate_interval])))",
            f"p{round(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > WIDTH:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _panel(
    layout: Layout,
    title: str,
    targets: list[dict[str, Any]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    thresholds: list[tuple[str, float | None]] | None = None,
    stack: bool = False,
) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if thresholds else "off"},
        }
    panel: dict[str, Any] = {
        "id": layout.new_id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": layout.place(w, h),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": targets,
    }
    if kind == "timeseries":
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return panel


def _row(layout: Layout, title: str) -> dict[str, Any]:
    layout.x, layout.y, layout.row_h = 0, layout.y + layout.row_h, 0
    pos = layout.place(WIDTH, 1)
    layout.x = WIDTH  # force the next panel onto a new line
    return {
        "id": layout.new_id(),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": pos,
        "panels": [],
    }


def build() -> dict[str, Any]:
    L = Layout()
    spike_threshold = [("green", None), ("orange", 2.0), ("red", 3.5)]
    panels = [
        _row(L, "Sentiment by topic"),
        _panel(
            L,
            "Negative share vs baseline",
            [
                _target(f"topic:finsent_negative_share:ratio_rate10m{{{TOPIC}}}", "{{topic}} last 10m", "A"),
                _target(
                    f"topic:finsent_window_negative_share:ratio{{{TOPIC}}}", "{{topic}} last window", "B"
                ),
                _target(f"topic:finsent_negative_baseline_share:avg{{{TOPIC}}}", "{{topic}} baseline", "C"),
            ],
            unit="percentunit",
            description="Share of negative news over the last 10 minutes and in the last closed event-time "
            "window, all replicas together, against the spike detector's rolling baseline. "
            "NegativeSentimentSpike needs the 10-minute share 10 points or more above the baseline.",
        ),
        _panel(
            L,
            "Net tone (positive minus negative share, 5m)",
            [_target(f"topic:finsent_net_tone:ratio_rate5m{{{TOPIC}}}", "{{topic}}", "A")],
            unit="percentunit",
            description="+100% all positive, -100% all negative; from the scored-message counters (wall clock).",
        ),
        _panel(
            L,
            "Spike score",
            [
                _target(f"topic:finsent_negative_spike_score:max{{{TOPIC}}}", "{{topic}}", "A"),
            ],
            thresholds=spike_threshold,
            description="The daemon's z-score (min of the volume and share z-scores); its detector enters "
            "a spike at 3.5 (default z_enter) held for several windows.",
        ),
        _panel(
            L,
            "Spikes active (daemon) and alerts firing",
            [
                _target(f"max by (topic) (finsent_spike_active{{{TOPIC}}})", "{{topic}} active", "A"),
                _target(
                    'ALERTS{alertname="NegativeSentimentSpike", alertstate="firing"}',
                    "{{topic}} alert firing",
                    "B",
                ),
            ],
            description="1 while the daemon's detector holds a spike (after hysteresis) / while the "
            "Prometheus alert fires (after for: and keep_firing_for:).",
        ),
        _panel(
            L,
            "Negative share, wall clock: 5m vs 1h",
            [
                _target(f"topic:finsent_negative_share:ratio_rate5m{{{TOPIC}}}", "{{topic}} 5m", "A"),
                _target(f"topic:finsent_negative_share:ratio_rate1h{{{TOPIC}}}", "{{topic}} 1h", "B"),
            ],
            unit="percentunit",
        ),
        _panel(
            L,
            "Volume by topic and sentiment",
            [
                _target(
                    f"topic_sentiment:finsent_scored:rate5m{{{TOPIC}}}",
                    "{{topic}} {{sentiment}}",
                    "A",
                )
            ],
            unit="reqps",
            stack=True,
            description="Scored messages per second by predicted topic and sentiment (5m rate).",
        ),
        _panel(
            L,
            "Messages by topic: last window and last 10 minutes",
            [
                _target(f"topic:finsent_window_volume:sum{{{TOPIC}}}", "{{topic}} window", "A"),
                _target(f"topic:finsent_scored:increase10m{{{TOPIC}}}", "{{topic}} 10m", "B"),
            ],
            w=24,
            h=6,
            description="Messages in the last closed event-time window and over the last 10 minutes; the "
            "spike alert needs at least 20 in 10 minutes.",
        ),
        _row(L, "Pipeline"),
        _panel(
            L,
            "Throughput by outcome",
            [
                _target(
                    "sum by (outcome) (rate(finsent_messages_total[$__rate_interval]))", "{{outcome}}", "A"
                )
            ],
            unit="reqps",
            w=8,
        ),
        _panel(L, "Batch scoring latency", _quantiles("finsent_batch_scoring_seconds"), unit="s", w=8),
        _panel(L, "End-to-end latency", _quantiles("finsent_end_to_end_latency_seconds"), unit="s", w=8),
        _panel(
            L,
            "Batch size",
            [
                _target(
                    "sum(rate(finsent_batch_size_sum[$__rate_interval])) "
                    "/ sum(rate(finsent_batch_size_count[$__rate_interval]))",
                    "mean",
                    "A",
                ),
                _target(
                    "histogram_quantile(0.95, sum by (le) (rate(finsent_batch_size_bucket[$__rate_interval])))",
                    "p95",
                    "B",
                ),
            ],
            w=8,
        ),
        _panel(
            L,
            "Consumer lag",
            [_target("sum by (group, topic) (finsent_consumer_lag_messages)", "{{group}} {{topic}}", "A")],
            w=8,
        ),
        _panel(
            L,
            "Dead-letter rate by reason",
            [_target("sum by (reason) (rate(finsent_dlq_total[$__rate_interval]))", "{{reason}}", "A")],
            unit="reqps",
            w=8,
        ),
        _panel(
            L,
            "Late events and duplicates",
            [
                _target("sum by (topic) (rate(finsent_late_total[$__rate_interval]))", "late {{topic}}", "A"),
                _target("sum(rate(finsent_duplicates_total[$__rate_interval]))", "duplicates", "B"),
            ],
            unit="reqps",
            w=8,
        ),
        _panel(
            L,
            "Replicas up / broker reachable",
            [
                _target('up{job="finsent"}', "up {{instance}}", "A"),
                _target("finsent_broker_up", "broker {{instance}}", "B"),
            ],
            w=8,
        ),
        _panel(
            L,
            "Model version and provider",
            [
                _target("finsent_model_info", "", "A", instant=True, table=True),
                _target("finsent_provider_fallback", "", "B", instant=True, table=True),
            ],
            kind="table",
            w=8,
            description="provider_fallback = 1: a GPU was expected but the model runs on the CPU.",
        ),
        _row(L, "Model: confidence, drift, swaps"),
        _panel(
            L,
            "Top-class probability (p10, p50) by head",
            [
                _target(
                    f"histogram_quantile({q}, sum by (le, head) "
                    "(rate(finsent_prediction_confidence_bucket[$__rate_interval])))",
                    f"p{round(q * 100)} {{{{head}}}}",
                    ref,
                )
                for q, ref in ((0.1, "A"), (0.5, "B"))
            ],
            unit="percentunit",
            w=8,
            description="How sure the model is. A falling p10 means more messages it is unsure of.",
        ),
        _panel(
            L,
            "Drift: PSI against the model's validation mix",
            [_target("max by (head) (finsent_drift_psi)", "{{head}}", "A")],
            w=8,
            # pipeline/drift.py PSI_ALERT, where ModelDriftSuspected fires (a test keeps them equal)
            thresholds=[("green", None), ("red", 0.25)],
            description="Population stability index of the last drift_window_messages predictions. "
            "No line: the artifact has no label distribution (finsent_drift_reference_available 0) "
            "or fewer than 500 predictions since start or swap.",
        ),
        _panel(
            L,
            "Model swaps and refusals",
            [_target("sum by (outcome) (increase(finsent_model_swaps_total[1h]))", "{{outcome}}", "A")],
            w=8,
            description="Reloads of --model in the last hour: swapped, refused_labels, refused_invalid.",
        ),
    ]
    return {
        "uid": UID,
        "title": "finsent",
        "tags": ["finsent"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-3h", "to": "now"},
        "annotations": {
            "list": [
                {
                    "name": "Spike alerts",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "red",
                    "expr": 'ALERTS{alertname="NegativeSentimentSpike", alertstate="firing"}',
                    "step": "30s",
                    "titleFormat": "Negative spike: {{topic}}",
                    "tagKeys": "topic,severity",
                    "useValueForTime": False,
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "topic",
                    "label": "Topic",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": "label_values(finsent_scored_total, topic)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".+",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
