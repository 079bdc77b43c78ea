"""docker-compose.yml, the Dockerfile and the monitoring configs, validated as far as this machine allows.

Docker cannot run here, so the checks are: the files parse; every file, directory and service they refer
to exists; the compose stack mounts exactly the Prometheus/Alertmanager/Grafana files the other tests
exercise; the names that must agree across files agree (service hosts and ports, the DNS alias Prometheus
discovers replicas by, the datasource uid, the daemon's topics and flags); Alertmanager's own `amtool`
accepts the config and routes/inhibits as intended. `docker compose config` runs too where the client has
the compose plugin.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from devstack import monitoring as mon

ROOT = mon.REPO_ROOT
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
GRAFANA = ROOT / "deploy" / "grafana"
# Bind mounts whose source is produced at run time, not committed.
GENERATED_MOUNTS = {"./artifacts": "the trained model, written by `make train-export`"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out.append((source, target))
    return out


def _mount_target(service: dict[str, Any], source: str) -> str:
    targets = [t for s, t in _bind_mounts(service) if s == source]
    assert targets, f"{source} is not mounted"
    return targets[0]


def _flag(command: list[str], name: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# -- compose structure ----------------------------------------------------------------------------


def test_compose_services_are_complete(compose: dict[str, Any]) -> None:
    services = _services(compose)
    required = {
        "kafka",
        "kafka-init",
        "finsent",
        "finsent-gpu",
        "replay",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert required <= set(services)
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"service {name} has neither image nor build"
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"service {name} depends on unknown service {dep}"
    assert services["finsent-gpu"]["profiles"] == ["gpu"]
    assert "demo" in services["replay"]["profiles"]
    gpu_devices = services["finsent-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu_devices[0]["capabilities"] == ["gpu"]
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"service {name} uses undeclared named volume {source}"


def test_every_bind_mount_and_build_input_exists(compose: dict[str, Any]) -> None:
    for name, svc in _services(compose).items():
        for source, _ in _bind_mounts(svc):
            if source in GENERATED_MOUNTS:
                continue
            assert (ROOT / source).exists(), f"service {name} mounts missing {source}"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"]).is_dir()
            assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = _services(compose)["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in env)
    # The listener the containers use is kafka:9092, which is what every client service is given.
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert _services(compose)["kafka-init"]["image"] == kafka["image"]


def test_topic_creation_covers_the_daemons_topics(compose: dict[str, Any]) -> None:
    from pipeline.settings import Settings

    script = "\n".join(_services(compose)["kafka-init"]["command"])
    defaults = Settings()
    topics = (defaults.input_topic, defaults.scored_topic, defaults.trends_topic, defaults.dlq_topic)
    for topic in (*topics, defaults.changelog_topic):
        assert re.search(rf"\b{re.escape(topic)}\b", script), f"kafka-init does not create {topic}"


def _cli_parser() -> Any:
    from pipeline.cli import build_parser

    parser = build_parser()
    if "consume" not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip("pipeline.commands (finsent consume/replay) is not installed here")
    return parser


def test_daemon_and_replay_commands_parse_with_the_real_cli(compose: dict[str, Any]) -> None:
    parser = _cli_parser()
    services = _services(compose)
    for name in ("finsent", "finsent-gpu", "replay"):
        command = services[name]["command"]
        assert command[0] == "finsent"
        args = parser.parse_args(command[1:])  # SystemExit (a test error) on an unknown flag
        assert args.bootstrap_servers == "kafka:9092"
    consume = parser.parse_args(services["finsent"]["command"][1:])
    assert consume.command == "consume" and consume.metrics_port == 9400


def test_finsent_environment_names_are_daemon_settings(compose: dict[str, Any]) -> None:
    from dataclasses import fields

    from pipeline.settings import Settings

    known = {f"FINSENT_{f.name.upper()}" for f in fields(Settings)} | {"FINSENT_EXPECT_GPU"}
    names = set(re.findall(r"\b(FINSENT_[A-Z_]+)=", DOCKERFILE.read_text(encoding="utf-8")))
    for svc in _services(compose).values():
        names |= {k for k in svc.get("environment") or {} if k.startswith("FINSENT_")}
    assert names, "no FINSENT_* settings found"
    assert names <= known, f"not daemon settings: {sorted(names - known)}"


def test_replay_feed_is_in_the_image(compose: dict[str, Any]) -> None:
    command = _services(compose)["replay"]["command"]
    feed = command[2]
    assert feed.startswith("/app/feeds/")
    assert "COPY tests/feeds ./feeds" in DOCKERFILE.read_text(encoding="utf-8")
    assert "!tests/feeds/" in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")


def test_dockerfile_copies_only_what_exists_and_runs_the_daemon() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
            top = source.split("/")[0]
            assert f"!{top}" in ignore, f"{source} is excluded from the build context"
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1\d", text, flags=re.M), "CPU base image by default"
    assert 'CMD ["finsent", "consume"]' in text
    assert "torch" not in re.sub(r"#.*", "", text), "the daemon image must stay torch-free"


def test_compose_config_with_the_docker_client_when_it_can(compose: dict[str, Any]) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# -- the stack mounts the same monitoring files the tests use ---------------------------------------


def test_prometheus_mounts_the_tested_config_directory(compose: dict[str, Any]) -> None:
    prom = _services(compose)["prometheus"]
    target = _mount_target(prom, "./deploy/prometheus")
    assert (ROOT / "deploy/prometheus").resolve() == mon.PROMETHEUS_CONFIG.parent
    assert f"--config.file={target}/{mon.PROMETHEUS_CONFIG.name}" in prom["command"]
    config = yaml.safe_load(mon.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    # Relative paths, so they resolve inside the mounted directory as they do in the repository.
    assert all(not p.startswith("/") for p in config["rule_files"])
    assert [p.name for p in mon.RULES_DIR.glob("*.yml")], "no rule files"


def test_alertmanager_mounts_the_tested_config(compose: dict[str, Any]) -> None:
    am = _services(compose)["alertmanager"]
    target = _mount_target(am, "./deploy/alertmanager/alertmanager.yml")
    assert (ROOT / "deploy/alertmanager/alertmanager.yml").resolve() == mon.ALERTMANAGER_CONFIG
    assert f"--config.file={target}" in am["command"]


def test_hosts_and_ports_agree_across_files(compose: dict[str, Any]) -> None:
    services = _services(compose)
    prom = yaml.safe_load(mon.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))

    # Prometheus -> Alertmanager
    (am_target,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = am_target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]

    # Prometheus -> daemon replicas, by the DNS alias every daemon service carries
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "finsent")
    dns = job["dns_sd_configs"][0]
    for name in ("finsent", "finsent-gpu"):
        svc = services[name]
        assert dns["names"][0] in svc["networks"]["default"]["aliases"], name
        assert int(_flag(svc["command"], "--metrics-port") or 0) == dns["port"], name

    # Alertmanager -> webhook receiver
    am = yaml.safe_load(mon.ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    hook = services["alert-webhook"]
    for receiver in am["receivers"]:
        for webhook in receiver["webhook_configs"]:
            m = re.match(r"http://([^:/]+):(\d+)/", webhook["url"])
            assert m, webhook["url"]
            assert m.group(1) == "alert-webhook"
            assert m.group(2) == _flag(hook["command"], "--port")
    assert (ROOT / _bind_mounts(hook)[0][0]).resolve() == ROOT / "deploy" / "alert_webhook.py"

    # Grafana -> Prometheus
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    m = re.match(r"http://([^:/]+):(\d+)$", source["url"])
    assert (
        m and m.group(1) == "prometheus" and f"{m.group(2)}:{m.group(2)}" in services["prometheus"]["ports"]
    )


def test_grafana_provisioning_is_mounted_and_consistent(compose: dict[str, Any]) -> None:
    grafana = _services(compose)["grafana"]
    assert _mount_target(grafana, "./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_dir = _mount_target(grafana, "./deploy/grafana/dashboards")
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/finsent.yml").read_text(encoding="utf-8"))
    assert providers["providers"][0]["options"]["path"] == dashboards_dir

    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    uid = ds["datasources"][0]["uid"]
    dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"

    # The spike alert links to this dashboard by uid.
    rules = yaml.safe_load((mon.RULES_DIR / "sentiment-alerts.yml").read_text(encoding="utf-8"))
    link = rules["groups"][0]["rules"][0]["annotations"]["dashboard"]
    assert f"/d/{dashboard['uid']}/" in link
    grafana_port = grafana["ports"][0].split(":")[0]
    assert f"localhost:{grafana_port}/" in link


def test_dashboard_covers_the_issue_panels() -> None:
    dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
    exprs = " ".join(e for _, e in mon.dashboard_expressions(dashboard))
    for needle in (
        "topic:finsent_window_negative_share:ratio",  # share now
        "topic:finsent_negative_baseline_share:avg",  # against baseline
        "topic:finsent_net_tone:ratio_rate5m",  # score trend
        "topic_sentiment:finsent_scored:rate5m",  # volume by topic and sentiment
        "topic:finsent_negative_spike_score:max",
        'ALERTS{alertname="NegativeSentimentSpike"',
        "finsent_messages_total",  # throughput
        "finsent_batch_scoring_seconds_bucket",
        "finsent_end_to_end_latency_seconds_bucket",
        "finsent_consumer_lag_messages",
        "finsent_dlq_total",
        "finsent_model_info",
        "finsent_provider_fallback",
    ):
        assert needle in exprs, needle
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(finsent_end_to_end_latency_seconds_bucket" in exprs
    assert dashboard["annotations"]["list"][0]["expr"].startswith("ALERTS{")


def test_dashboard_json_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert mon.DASHBOARD.read_text(encoding="utf-8") == module.render(), (
        "deploy/grafana/dashboards/finsent.json is stale: run deploy/grafana/build_dashboard.py"
    )


# -- Alertmanager, checked by its own tool -----------------------------------------------------------

AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (Debian prometheus-alertmanager)"
)


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AMTOOL), *args], capture_output=True, text=True, timeout=60)


@needs_amtool
def test_alertmanager_config_is_valid() -> None:
    result = _amtool("check-config", str(mon.ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=NegativeSentimentSpike", "category=sentiment", "topic=Energy | Oil"],
            "newsdesk-webhook",
        ),
        (["alertname=TickerNegativeSpike", "category=sentiment", "ticker=ACME"], "newsdesk-webhook"),
        (["alertname=FinsentDaemonDown", "category=operational", "instance=a:9400"], "ops-webhook"),
        (["alertname=SomethingElse"], "ops-webhook"),
    ],
)
def test_alertmanager_routes(labels: list[str], receiver: str) -> None:
    result = _amtool("config", "routes", "test", f"--config.file={mon.ALERTMANAGER_CONFIG}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_groups_spikes_by_topic_and_inhibits_them_while_the_daemon_is_down() -> None:
    am = yaml.safe_load(mon.ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    spike_route = next(r for r in am["route"]["routes"] if 'category="sentiment"' in r["matchers"])
    assert spike_route["group_by"] == ["topic", "ticker"]
    assert any(
        r["source_matchers"] == ['alertname="FinsentDaemonDown"']
        and r["target_matchers"] == ['alertname=~"NegativeSentimentSpike|TickerNegativeSpike"']
        and not r.get("equal")
        for r in am["inhibit_rules"]
    )


# -- the example webhook receiver -----------------------------------------------------------------


def test_alert_webhook_receives_and_serves_notifications() -> None:
    spec = importlib.util.spec_from_file_location("alert_webhook", ROOT / "deploy" / "alert_webhook.py")
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    inbox = hook.Inbox()
    server = hook.make_server("127.0.0.1", 0, inbox, echo=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        payload = {
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "NegativeSentimentSpike", "topic": "T"}}],
        }
        req = urllib.request.Request(
            base + "/newsdesk",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        bad = urllib.request.Request(base + "/ops", data=b"not json")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 400
        with urllib.request.urlopen(base + "/alerts", timeout=5) as resp:
            stored = json.loads(resp.read())
        assert stored == [{"path": "/newsdesk", "payload": payload}]
        (alert,) = inbox.alerts("firing")
        assert alert["labels"]["topic"] == "T" and alert["receiver_path"] == "/newsdesk"
        assert hook.summarize(payload) == ["[firing] NegativeSentimentSpike topic='T': "]
    finally:
        server.shutdown()
        server.server_close()
