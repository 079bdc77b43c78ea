"""The Prometheus rules, checked by Prometheus' own tool: `promtool check config|rules` and the unit tests
in deploy/prometheus/tests (`promtool test rules`).

Beyond "the unit tests pass", each guard of an alert is shown to matter: the rule is weakened in a copy
(volume floor dropped, `for:` shortened, ...) and the promtool test that guards it must then fail.
The dashboard's and the rules' PromQL is parsed offline by handing promtool a generated rule file with
one recording rule per expression.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack import monitoring as mon

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; `make system-deps`)"
)

RULE_FILES = sorted(mon.RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(mon.RULE_TESTS_DIR.glob("*.yml"))


def _promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_prometheus_config_is_valid_and_finds_every_rule_file() -> None:
    result = _promtool("check", "config", mon.PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_rule_files_are_valid() -> None:
    assert len(RULE_FILES) >= 3
    result = _promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES
    result = _promtool("test", "rules", *TEST_FILES, cwd=mon.RULE_TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_required_alerts_exist_with_labels_and_annotations() -> None:
    alerts = _alerts()
    required = {
        "NegativeSentimentSpike",
        "FinsentDaemonDown",
        "FinsentConsumerLagGrowing",
        "FinsentScoringStalled",
        "FinsentDeadLetterRateHigh",
        "FinsentCpuFallback",
    }
    assert required <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["category"] in {"sentiment", "operational"}, name
        assert rule["annotations"]["summary"], name
        assert "for" in rule, f"{name} has no `for:`; one bad evaluation would page"
    spike = alerts["NegativeSentimentSpike"]
    assert "keep_firing_for" in spike
    assert {"current_share", "baseline_share", "dashboard", "headlines"} <= set(spike["annotations"])
    assert "/d/finsent-overview/" in spike["annotations"]["dashboard"]
    assert "/spikes/topic/" in spike["annotations"]["headlines"]


def test_every_alert_has_unit_tests_that_see_it_fire_and_stay_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test") or []:
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - fired == set(), "alerts never seen firing in a unit test"
    assert alerts - quiet == set(), "alerts never seen staying quiet in a unit test"


# Each entry weakens one guard in a copy of the rules; the named promtool test must then fail.
SPIKE_EXPR_NAIVE = (
    "topic:finsent_negative_share:ratio_rate10m > on (topic) topic:finsent_negative_baseline_share:avg\n"
)
MUTATIONS = [
    pytest.param(
        "sentiment-alerts.yml",
        "and on (topic) topic:finsent_scored:increase10m >= 20",
        "",
        "a quiet topic does not fire",
        id="spike-without-volume-floor",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "(topic:finsent_negative_baseline_share:avg + 0.10)",
        "(topic:finsent_negative_baseline_share:avg + 0)",
        "a single negative headline in a busy topic does not fire",
        id="spike-without-margin",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "\n        for: 5m\n",
        "\n        for: 2m\n",
        "a short burst does not fire",
        id="spike-short-for",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "\n        keep_firing_for: 10m\n",
        "\n        keep_firing_for: 0s\n",
        "spike fires after its delay, bridges a lapse, stays through keep_firing_for, then resolves",
        id="spike-without-keep-firing",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "and on (topic) topic:finsent_spike_active:max == 1",
        "",
        "a short burst does not fire",
        id="spike-without-the-daemons-detector",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        None,  # replace the whole expression by "share above baseline"
        SPIKE_EXPR_NAIVE,
        "a slow drift does not fire",
        id="spike-naive-share-above-baseline",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "finsent_spike_active{topic=%q} * 1000 + finsent_negative_spike_score{topic=%q})` $labels.topic $labels.topic",
        "finsent_negative_spike_score{topic=%q})` $labels.topic",
        "the headlines link points at the replica holding the spike",
        id="headlines-link-by-score-alone",
    ),
    pytest.param(
        "sentiment-alerts.yml",
        "$labels.topic | urlquery | reReplaceAll `[+]` `%20`",
        "$labels.topic | urlquery",
        "the headlines link points at the replica holding the spike",
        id="headlines-link-query-encoded",
    ),
    pytest.param(
        "operational-alerts.yml",
        "lag_messages:sum[10m]) > 0\n        for: 15m",
        "lag_messages:sum[10m]) > 0\n        for: 10m",
        "consumer lag high but shrinking or flat does not fire",
        id="lag-for-as-short-as-slope-window",
    ),
    pytest.param(
        "operational-alerts.yml",
        "and on (instance, job) (sum by (instance, job) (finsent_consumer_lag_messages) > 0)",
        "",
        "scoring stalled stays quiet on an idle feed or a busy daemon",
        id="stalled-without-lag-condition",
    ),
    pytest.param(
        "operational-alerts.yml",
        'and on (job) sum by (job) (increase(finsent_messages_total{outcome="dlq"}[5m])) >= 10',
        "",
        "dead-letter rate stays quiet on a trickle or a low share",
        id="dlq-without-floor",
    ),
    pytest.param(
        "model-alerts.yml",
        "\n        for: 30m\n",
        "\n        for: 5m\n",
        "a short excursion or a moderate shift does not fire",
        id="drift-short-for",
    ),
]


@pytest.mark.parametrize(("rule_file", "old", "new", "guarding_test"), MUTATIONS)
def test_each_guard_is_needed(
    tmp_path: Path, rule_file: str, old: str | None, new: str, guarding_test: str
) -> None:
    shutil.copytree(mon.RULES_DIR, tmp_path / "rules")
    shutil.copytree(mon.RULE_TESTS_DIR, tmp_path / "tests")
    target = tmp_path / "rules" / rule_file
    if old is None:
        doc = _load(target)
        doc["groups"][0]["rules"][0]["expr"] = new
        target.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    else:
        text = target.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"mutation anchor not found once in {rule_file}: {old!r}"
        target.write_text(text.replace(old, new), encoding="utf-8")
    assert _promtool("check", "rules", target).returncode == 0, "the weakened rule must still be valid"

    # The unit tests of this rule file only (the others do not load it).
    test_file = rule_file.replace(".yml", ".test.yml")
    result = _promtool("test", "rules", test_file, cwd=tmp_path / "tests")
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"weakening {rule_file} did not make any promtool test fail"
    assert f"name: {guarding_test}," in output, output


def _check_expressions(tmp_path: Path, exprs: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump(mon.expressions_as_rules(exprs), sort_keys=False), encoding="utf-8")
    return _promtool("check", "rules", path)


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
    exprs = [(w, mon.substitute_grafana_variables(e)) for w, e in mon.dashboard_expressions(dashboard)]
    assert len(exprs) >= 15
    assert not [w for w, e in exprs if "$" in e], "a Grafana variable was left unsubstituted"
    result = _check_expressions(tmp_path, exprs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_offline_parse_check_rejects_bad_promql(tmp_path: Path) -> None:
    # The trick above is only worth something if promtool really parses the expressions.
    result = _check_expressions(tmp_path, [("good", "sum(up)"), ("bad", "sum by (topic (rate(x[5m]))")])
    assert result.returncode != 0


@pytest.mark.parametrize("factor", [1, 60, 600])
def test_time_scaled_rules_are_valid(tmp_path: Path, factor: int) -> None:
    paths = []
    for path in RULE_FILES:
        scaled = mon.scale_rules(_load(path), factor, min_range_s=4, min_for_s=1)
        out = tmp_path / path.name
        out.write_text(yaml.safe_dump(scaled, sort_keys=False), encoding="utf-8")
        paths.append(out)
    result = _promtool("check", "rules", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


# -- devstack.monitoring: the derivations the demo and the end-to-end test rely on (no promtool) -----


def test_durations_parse_and_format() -> None:
    from models.errors import ConfigError

    assert mon.parse_duration("1h30m") == 5400
    assert mon.parse_duration("250ms") == 0.25
    assert mon.format_duration(5400) == "1h30m"
    assert mon.format_duration(0.25) == "250ms"
    assert mon.format_duration(7.5) == "7s500ms"
    for bad in ("", "5", "m5", "5 m", "1.5m"):
        with pytest.raises(ConfigError):
            mon.parse_duration(bad)


def test_scale_promql_divides_ranges_subqueries_and_offsets_only() -> None:
    expr = 'rate(x{topic="Energy | Oil"}[5m] offset 1h) > 300 and max_over_time(y[1h:5m]) > 0.1'
    assert mon.scale_promql(expr, 60) == (
        'rate(x{topic="Energy | Oil"}[5s] offset 1m) > 300 and max_over_time(y[1m:5s]) > 0.1'
    )
    assert mon.scale_promql("deriv(z[10m])", 600, min_range_s=4) == "deriv(z[4s])"
    assert mon.scale_promql("sum(up)", 60) == "sum(up)"


def test_scale_rules_scales_for_and_keep_firing_for_but_not_thresholds() -> None:
    doc = _load(mon.RULES_DIR / "sentiment-alerts.yml")
    rule = mon.scale_rules(doc, 120, min_for_s=1)["groups"][0]["rules"][0]
    assert (rule["for"], rule["keep_firing_for"]) == ("2s500ms", "5s")
    assert rule["expr"] == doc["groups"][0]["rules"][0]["expr"]  # no ranges in it; thresholds kept
    assert doc["groups"][0]["rules"][0]["for"] == "5m", "the input must not be modified"


def test_scale_rules_leaves_wall_clock_alerts_alone() -> None:
    doc = _load(mon.RULES_DIR / "operational-alerts.yml")
    assert mon.scale_rules(doc, 60) == doc
    recording = _load(mon.RULES_DIR / "recording.yml")
    scaled = mon.scale_rules(recording, 60, min_range_s=4)
    assert (
        scaled["groups"][0]["rules"][0]["expr"]
        == "sum by (topic, sentiment) (rate(finsent_scored_total[5s]))"
    )


def test_local_configs_keep_the_project_files_but_point_at_local_processes() -> None:
    prom = mon.local_prometheus_config(
        _load(mon.PROMETHEUS_CONFIG),
        targets_file="targets.yml",
        rule_files=["rules/a.yml"],
        alertmanager="127.0.0.1:9999",
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "finsent"
    assert job["file_sd_configs"][0]["files"] == ["targets.yml"]
    assert "dns_sd_configs" not in job
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9999"]
    assert prom["global"]["evaluation_interval"] == "1s"

    original = _load(mon.ALERTMANAGER_CONFIG)
    am = mon.local_alertmanager_config(original, webhook_url="http://127.0.0.1:5000/", group_wait="1s")
    urls = sorted(h["url"] for r in am["receivers"] for h in r["webhook_configs"])
    assert urls == ["http://127.0.0.1:5000/newsdesk", "http://127.0.0.1:5000/ops"]
    assert am["route"]["group_wait"] == "1s"
    assert all(r.get("group_wait") in (None, "1s") for r in am["route"]["routes"])
    assert am["inhibit_rules"] == original["inhibit_rules"]
