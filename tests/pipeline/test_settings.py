"""Settings: defaults < config file < FINSENT_* environment < flags, validated with the source named."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import ConfigError
from pipeline.cli import build_parser
from pipeline.commands import settings_from_args
from pipeline.records import EventTimeBounds
from pipeline.settings import Settings, load_settings


def test_defaults_need_nothing() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert (s.input_topic, s.scored_topic, s.trends_topic, s.dlq_topic) == (
        "news.raw",
        "news.scored",
        "news.trends",
        "news.dlq",
    )
    assert s.model == "artifacts/latest" and s.create_topics and s.aggregate_group_id == "finsent-aggregate"


def test_layers_override_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(
        "batch_max_messages: 64\ngroup_id: from-file\nmetrics_port: 9000\ntrends:\n  window_ms: 120000\n"
    )
    env = {"FINSENT_GROUP_ID": "from-env", "FINSENT_METRICS_PORT": "9001", "FINSENT_EXPECT_GPU": "1"}
    s = load_settings(config_file=cfg, env=env, overrides={"metrics_port": 9002, "group_id": None})
    assert s.batch_max_messages == 64  # file
    assert s.group_id == "from-env"  # env over file; a flag left unset (None) does not override
    assert s.metrics_port == 9002  # flag over env
    assert s.trend_settings().window_ms == 120000


def test_config_file_from_environment_and_trend_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"stage": "score", "exit_when_idle_s": 2.5}')
    s = load_settings(env={"FINSENT_CONFIG": str(cfg), "FINSENT_TRENDS_ALLOWED_LATENESS_MS": "5000"})
    assert s.stage == "score" and s.exit_when_idle_s == 2.5
    assert s.trend_settings().allowed_lateness_ms == 5000


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FINSENT_BATCH_MAX_MESSAGES": "many"}, r"FINSENT_BATCH_MAX_MESSAGES: invalid value 'many'"),
        ({"FINSENT_BATCH_MAX_MESSAGES": "0"}, r"batch_max_messages must be >= 1"),
        ({"FINSENT_STAGE": "both"}, r"stage must be one of all, score, aggregate"),
        (
            {"FINSENT_CREATE_TOPICS": "maybe"},
            r"FINSENT_CREATE_TOPICS: invalid value 'maybe': expected true/false",
        ),
        ({"FINSENT_METRICS_PORT": "70000"}, r"metrics_port must be 0..65535"),
        ({"FINSENT_DLQ_TOPIC": "news.raw"}, r"topics must differ"),
        ({"FINSENT_SECURITY_PROTOCOL": "SASL_SSL"}, r"needs sasl_mechanism"),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(env=env)


def test_bad_config_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_max_mesages: 5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown setting 'batch_max_mesages'"):
        load_settings(config_file=bad, env={})
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: top level must be a mapping"):
        load_settings(config_file=bad, env={})
    bad.write_text("key: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_settings(config_file=bad, env={})
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read config file"):
        load_settings(config_file=tmp_path / "missing.yaml", env={})


def test_trend_settings_are_validated_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown trend setting 'window_minutes'"):
        load_settings(env={"FINSENT_TRENDS_WINDOW_MINUTES": "1"}).trend_settings()
    with pytest.raises(ConfigError, match=r"trends.window_ms: invalid value 'soon'"):
        load_settings(env={"FINSENT_TRENDS_WINDOW_MS": "soon"}).trend_settings()
    with pytest.raises(ConfigError, match=r"dedup_horizon_ms"):
        load_settings(env={"FINSENT_TRENDS_ALLOWED_LATENESS_MS": "86400000"}).trend_settings()


def test_security_settings_pass_through_and_secrets_are_masked() -> None:
    env = {
        "FINSENT_SECURITY_PROTOCOL": "SASL_SSL",
        "FINSENT_SASL_MECHANISM": "SCRAM-SHA-512",
        "FINSENT_SASL_PLAIN_USERNAME": "svc-finsent",
        "FINSENT_SASL_PLAIN_PASSWORD": "hunter2",
        "FINSENT_SSL_CAFILE": "/etc/ssl/ca.pem",
    }
    s = load_settings(env=env)
    assert s.kafka_security() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-finsent",
        "sasl_plain_password": "hunter2",
        "ssl_cafile": "/etc/ssl/ca.pem",
    }
    masked = s.masked()
    assert masked["sasl_plain_password"] == "***" and "hunter2" not in repr(masked)


def test_cli_flags_map_onto_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in __import__("os").environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    args = build_parser().parse_args(
        [
            "consume",
            "--bootstrap-servers",
            "127.0.0.1:19092",
            "--metrics-port",
            "9555",
            "--stage",
            "aggregate",
            "--no-create-topics",
            "--exit-when-idle",
            "4",
            "--trend",
            "window_ms=30000",
        ]
    )
    s = settings_from_args(args)
    assert (s.bootstrap_servers, s.metrics_port, s.stage, s.create_topics) == (
        "127.0.0.1:19092",
        9555,
        "aggregate",
        False,
    )
    assert s.exit_when_idle_s == 4.0 and s.trend_settings().window_ms == 30000
    bad = build_parser().parse_args(["replay", "f.jsonl", "--trend", "window_ms"])
    with pytest.raises(ConfigError, match=r"--trend 'window_ms': expected FIELD=VALUE"):
        settings_from_args(bad)


# --- issue 8, findings 6 and 7 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("not a host:::", r"'not a host:::' is not host:port"),
        ("kafka:99999", r"'kafka:99999': port must be 1..65535"),
        ("kafka:0", r"port must be 1..65535"),
        ("kafka", r"'kafka' is not host:port"),
        (" , ", r"bootstrap_servers is empty"),
    ],
)
def test_a_malformed_bootstrap_list_names_its_source(tmp_path: Path, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=r"^FINSENT_BOOTSTRAP_SERVERS: .*" + match):
        load_settings(env={"FINSENT_BOOTSTRAP_SERVERS": value})
    cfg = tmp_path / "f.yaml"
    cfg.write_text(f"bootstrap_servers: '{value}'\n")
    with pytest.raises(ConfigError, match=r"f.yaml: bootstrap_servers: .*" + match):
        load_settings(config_file=cfg, env={})
    with pytest.raises(ConfigError, match=r"^--bootstrap-servers: .*" + match):
        load_settings(env={}, overrides={"bootstrap_servers": value})


def test_good_bootstrap_lists_pass() -> None:
    for value in ("kafka-1:9093,kafka-2:9093,", "127.0.0.1:1", "[::1]:65535", "broker_0.internal:9092"):
        assert load_settings(env={"FINSENT_BOOTSTRAP_SERVERS": value}).bootstrap_servers == value


def test_a_malformed_bootstrap_list_is_a_clean_exit_2_from_the_cli() -> None:
    from tests.support.daemon_procs import finsent

    for value in ("not a host:::", "127.0.0.1:99999", ""):
        out = finsent("consume", "--stage", "aggregate", "--bootstrap-servers", value, timeout=60)
        assert out.returncode == 2, (value, out.stderr[-2000:])
        assert "--bootstrap-servers: " in out.stderr and "Traceback" not in out.stderr


def test_event_time_bounds_are_settings() -> None:
    s = load_settings(env={})
    assert (s.event_time_max_ahead_ms, s.event_time_max_behind_ms) == (86_400_000, 30 * 86_400_000)
    env = {"FINSENT_EVENT_TIME_MAX_AHEAD_MS": "60000"}
    s = load_settings(env=env, overrides={"event_time_max_behind_ms": 3_600_000})
    assert s.event_time_bounds() == EventTimeBounds(max_ahead_ms=60_000, max_behind_ms=3_600_000)
    args = build_parser().parse_args(["consume", "--event-time-max-behind-ms", "1000"])
    assert settings_from_args(args).event_time_max_behind_ms == 1000
    with pytest.raises(ConfigError, match=r"event_time_max_ahead_ms must be >= 1"):
        load_settings(env={"FINSENT_EVENT_TIME_MAX_AHEAD_MS": "0"})


def test_secrets_are_masked_in_every_log_record(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from pipeline.settings import mask_secrets_in_logs

    try:
        mask_secrets_in_logs(["hunter2", None, ""])
        # Other tests may have set the kafka loggers' level: set it here, for this logger too.
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
            logging.getLogger("kafka.admin.client").debug("config: %s", {"sasl_plain_password": "hunter2"})
            logging.getLogger("finsent.other").warning("plain hunter2 text")
        assert "hunter2" not in caplog.text and caplog.text.count("***") == 2
        assert repr(Settings(sasl_plain_password="hunter2")).count("hunter2") == 0
    finally:
        mask_secrets_in_logs([])
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("x").debug("visible hunter2")
    assert "visible hunter2" in caplog.text  # switched off again


def test_kafka_python_debug_logging_never_prints_passwords(tmp_path: Path) -> None:
    import signal

    from tests.support.broker import free_port
    from tests.support.daemon_procs import clean_env, start_consume, wait_for_log

    sasl, ssl = "sasl-Secret-4711", "ssl-Secret-0815"
    env = clean_env(FINSENT_SASL_PLAIN_PASSWORD=sasl, FINSENT_SSL_PASSWORD=ssl)
    log = tmp_path / "consume.log"
    # Nothing listens on the port: kafka-python still dumps its configuration at DEBUG first.
    proc = start_consume(
        log, "--stage", "aggregate", "--metrics-port", "0", "--bootstrap-servers",
        f"127.0.0.1:{free_port()}", "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN",
        "--sasl-plain-username", "svc", env=env, verbose=True,
    )  # fmt: skip
    try:
        wait_for_log(log, "Starting KafkaAdminClient with configuration", timeout=60)
        wait_for_log(log, "retrying in", timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    logs = log.read_text()
    assert "sasl_plain_password" in logs and "***" in logs
    assert sasl not in logs and ssl not in logs, logs[-3000:]


def test_sub_batch_is_measured_unless_set_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in __import__("os").environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    assert settings_from_args(build_parser().parse_args(["consume"])).sub_batch is None  # measured
    s = settings_from_args(build_parser().parse_args(["consume", "--sub-batch", "24"]))
    assert s.sub_batch == 24
    with pytest.raises(ConfigError, match="sub_batch must be >= 1"):
        settings_from_args(build_parser().parse_args(["consume", "--sub-batch", "0"]))
