"""Writes deploy/grafana/dashboards/finsent.json, the provisioned Grafana dashboard.

Built with grafana-foundation-sdk's typed builders (dev extras), so every panel, query, variable and
threshold is a checked field rather than hand-written JSON; the detector's numbers in the text and the
spike-score thresholds are read from `SpikeParams`, so they cannot drift from the code. Run after
changing a query:

    .venv/bin/python deploy/grafana/build_dashboard.py

tests/deploy/test_deploy_config.py fails when the committed JSON differs from what this script writes, and the
end-to-end test evaluates every expression in it against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from pipeline.drift import MIN_MESSAGES, PSI_ALERT
from pipeline.spikes import SpikeParams

OUT = Path(__file__).resolve().parent / "dashboards" / "finsent.json"
UID = "finsent-overview"  # the spike alert's `dashboard` annotation links to /d/finsent-overview/
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioned with this uid
TOPIC = 'topic=~"$topic"'
SPIKE_ALERTS = 'ALERTS{alertname="NegativeSentimentSpike", alertstate="firing"}'
TICKER_ALERTS = 'ALERTS{alertname="TickerNegativeSpike", alertstate="firing"}'


def _target(expr: str, legend: str, ref: str, *, instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    if instant:
        q = q.instant().format(pm.PromQueryFormat.TABLE)
    return q


def _quantiles(metric: str) -> list[prometheus.Dataquery]:
    return [
        _target(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[$__rate_interval])))",
            f"p{round(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


class Ids:
    """Panel ids in the order panels are added (Grafana needs them unique)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last += 1
        return self.last


def _timeseries(
    ids: Ids,
    title: str,
    targets: list[prometheus.Dataquery],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    thresholds: list[tuple[str, float | None]] | None = None,
    stack: bool = False,
) -> timeseries.Panel:
    steps = [dm.Threshold(color=c, value=v) for c, v in (thresholds or [("green", None)])]
    line = cm.GraphTresholdsStyleMode.LINE if thresholds else cm.GraphTresholdsStyleMode.OFF
    return (
        timeseries.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .span(w)
        .height(h)
        .unit(unit)
        .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(line))
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .stacking(
            cb.StackingConfig().mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE).group("A")
        )
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )


def spike_score_description(p: SpikeParams) -> str:
    """The spike-score panel's text, from the detector's parameters (pipeline.spikes)."""
    return (
        "The daemon's spike score: the harmonic mean of the volume and share z-scores when both are "
        f"positive, else the smaller one. Its detector enters a spike after {p.enter_windows} windows "
        f"scoring {p.z_enter:.1f} or more (each with at least {p.min_negatives} negative messages, no "
        f"window below {p.z_leave:.1f} between them) and leaves after {p.leave_windows} consecutive "
        f"windows below {p.z_leave:.1f}. Lines at {p.z_leave:.1f} and {p.z_enter:.1f}."
    )


def build() -> dict[str, Any]:
    p = SpikeParams()
    ids = Ids()
    spike_thresholds = [("green", None), ("orange", p.z_leave), ("red", p.z_enter)]
    sentiment_row = db.Row("Sentiment by topic").id(ids())
    sentiment = [
        _timeseries(
            ids,
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
        _timeseries(
            ids,
            "Net tone (positive minus negative share, 5m)",
            [_target(f"topic:finsent_net_tone:ratio_rate5m{{{TOPIC}}}", "{{topic}}", "A")],
            unit="percentunit",
            description="+100% all positive, -100% all negative; from the scored-message counters (wall clock).",
        ),
        _timeseries(
            ids,
            "Spike score",
            [_target(f"topic:finsent_negative_spike_score:max{{{TOPIC}}}", "{{topic}}", "A")],
            thresholds=spike_thresholds,
            description=spike_score_description(p),
        ),
        _timeseries(
            ids,
            "Spikes active (daemon) and alerts firing",
            [
                _target(f"max by (topic) (finsent_spike_active{{{TOPIC}}})", "{{topic}} active", "A"),
                _target(SPIKE_ALERTS, "{{topic}} alert firing", "B"),
            ],
            description="1 while the daemon's detector holds a spike (after hysteresis) / while the "
            "Prometheus alert fires (after for: and keep_firing_for:).",
        ),
        _timeseries(
            ids,
            "Negative share, wall clock: 5m vs 1h",
            [
                _target(f"topic:finsent_negative_share:ratio_rate5m{{{TOPIC}}}", "{{topic}} 5m", "A"),
                _target(f"topic:finsent_negative_share:ratio_rate1h{{{TOPIC}}}", "{{topic}} 1h", "B"),
            ],
            unit="percentunit",
        ),
        _timeseries(
            ids,
            "Volume by topic and sentiment",
            [_target(f"topic_sentiment:finsent_scored:rate5m{{{TOPIC}}}", "{{topic}} {{sentiment}}", "A")],
            unit="reqps",
            stack=True,
            description="Scored messages per second by predicted topic and sentiment (5m rate).",
        ),
        _timeseries(
            ids,
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
    ]
    ticker_row = db.Row("Companies (tickers)").id(ids())
    tickers = [
        _timeseries(
            ids,
            "Ticker spike score",
            [_target("max by (ticker) (finsent_ticker_spike_score)", "{{ticker}}", "A")],
            thresholds=spike_thresholds,
            description="Per ticker, the same detector as the topics. Series exist only for the "
            "ticker_metrics_top_k busiest tickers plus every ticker with an active spike, so the set of "
            "lines is bounded however many companies the news names.",
        ),
        _timeseries(
            ids,
            "Ticker spikes active and alerts firing",
            [
                _target("max by (ticker) (finsent_ticker_spike_active) == 1", "{{ticker}} active", "A"),
                _target(TICKER_ALERTS, "{{ticker}} alert firing", "B"),
            ],
            description="1 while the daemon's detector holds a spike for the ticker / while "
            "TickerNegativeSpike fires.",
        ),
        _timeseries(
            ids,
            "Ticker negative share, last window",
            [_target("max by (ticker) (finsent_ticker_negative_share)", "{{ticker}}", "A")],
            unit="percentunit",
        ),
        _timeseries(
            ids,
            "Messages per ticker (last window) and tickers tracked",
            [
                _target("sum by (ticker) (finsent_ticker_volume)", "{{ticker}}", "A"),
                _target("sum(finsent_tickers_tracked)", "tickers with state", "B"),
            ],
            description="Detector state is kept for at most ticker_max_keys tickers per replica.",
        ),
    ]
    pipeline_row = db.Row("Pipeline").id(ids())
    pipeline = [
        _timeseries(
            ids,
            "Throughput by outcome",
            [
                _target(
                    "sum by (outcome) (rate(finsent_messages_total[$__rate_interval]))", "{{outcome}}", "A"
                )
            ],
            unit="reqps",
            w=8,
        ),
        _timeseries(ids, "Batch scoring latency", _quantiles("finsent_batch_scoring_seconds"), unit="s", w=8),
        _timeseries(
            ids, "End-to-end latency", _quantiles("finsent_end_to_end_latency_seconds"), unit="s", w=8
        ),
        _timeseries(
            ids,
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
        _timeseries(
            ids,
            "Consumer lag",
            [_target("sum by (group, topic) (finsent_consumer_lag_messages)", "{{group}} {{topic}}", "A")],
            w=8,
        ),
        _timeseries(
            ids,
            "Dead-letter rate by reason",
            [_target("sum by (reason) (rate(finsent_dlq_total[$__rate_interval]))", "{{reason}}", "A")],
            unit="reqps",
            w=8,
        ),
        _timeseries(
            ids,
            "Late events and duplicates",
            [
                _target("sum by (topic) (rate(finsent_late_total[$__rate_interval]))", "late {{topic}}", "A"),
                _target("sum(rate(finsent_duplicates_total[$__rate_interval]))", "duplicates", "B"),
            ],
            unit="reqps",
            w=8,
        ),
        _timeseries(
            ids,
            "Replicas up / broker reachable",
            [
                _target('up{job="finsent"}', "up {{instance}}", "A"),
                _target("finsent_broker_up", "broker {{instance}}", "B"),
            ],
            w=8,
        ),
        table.Panel()
        .id(ids())
        .title("Model version and provider")
        .description("provider_fallback = 1: a GPU was expected but the model runs on the CPU.")
        .datasource(DATASOURCE)
        .targets(
            [
                _target("finsent_model_info", "", "A", instant=True),
                _target("finsent_provider_fallback", "", "B", instant=True),
            ]
        )
        .span(8)
        .height(8),
    ]
    model_row = db.Row("Model: confidence, drift, swaps").id(ids())
    model = [
        _timeseries(
            ids,
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
        _timeseries(
            ids,
            "Drift: PSI against the model's validation mix",
            [_target("max by (head) (finsent_drift_psi)", "{{head}}", "A")],
            w=8,
            thresholds=[("green", None), ("red", PSI_ALERT)],
            description="Population stability index of the last drift_window_messages predictions; "
            f"ModelDriftSuspected fires above {PSI_ALERT}. No line: the artifact has no label distribution "
            f"(finsent_drift_reference_available 0) or fewer than {MIN_MESSAGES} predictions since start "
            "or swap.",
        ),
        _timeseries(
            ids,
            "Model swaps and refusals",
            [_target("sum by (outcome) (increase(finsent_model_swaps_total[1h]))", "{{outcome}}", "A")],
            w=8,
            description="Reloads of --model in the last hour: swapped, refused_labels, refused_invalid.",
        ),
    ]
    topic = (
        db.QueryVariable("topic")
        .label("Topic")
        .datasource(DATASOURCE)
        .query("label_values(finsent_scored_total, topic)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    alerts = (
        db.AnnotationQuery()
        .name("Spike alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr(SPIKE_ALERTS)
    )
    board = (
        db.Dashboard("finsent")
        .uid(UID)
        .tags(["finsent"])
        .timezone("utc")
        .editable()
        .refresh("10s")
        .time("now-3h", "now")
        .version(1)
        .with_variable(topic)
        .annotation(alerts)
        .with_row(sentiment_row)
    )
    for panel in sentiment:
        board = board.with_panel(panel)
    board = board.with_row(ticker_row)
    for panel in tickers:
        board = board.with_panel(panel)
    board = board.with_row(pipeline_row)
    for panel in pipeline:
        board = board.with_panel(panel)
    board = board.with_row(model_row)
    for panel in model:
        board = board.with_panel(panel)
    doc: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    # The SDK's AnnotationQuery has no fields for the Prometheus annotation options (its datasource
    # plugin's own keys), so these four are added to its JSON here.
    doc["annotations"]["list"][0].update(
        {
            "step": "30s",
            "titleFormat": "Negative spike: {{topic}}",
            "tagKeys": "topic,severity",
            "useValueForTime": False,
        }  # fmt: skip
    )
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
