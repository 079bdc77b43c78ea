"""The daemon's one settings object: defaults < config file < `FINSENT_*` environment < CLI flags.

Every field has a default, so `finsent consume` with nothing else runs against localhost:9092 with
`artifacts/latest` and the default topic names. Each value is validated once, here, and an error
names where the bad value came from (the file, the variable or the flag), because "invalid integer"
without a source is useless when three layers can set the same field.

Kafka security settings are passed through to kafka-python untouched; secrets are masked whenever
the settings are logged or printed, and `mask_secrets_in_logs` keeps them out of every log record
(kafka-python's own debug dump of its configuration included). Trend and spike parameters are forwarded to `TrendSettings` by
name (`trends:` section of the file, `FINSENT_TRENDS_<FIELD>`, `--trend FIELD=VALUE`), so this module
does not have to repeat that module's list of knobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from pipeline.records import DAY_MS, EventTimeBounds

log = logging.getLogger(__name__)

ENV_PREFIX = "FINSENT_"
TRENDS_ENV_PREFIX = "FINSENT_TRENDS_"
STAGES = ("all", "score", "aggregate")
PROVIDERS = ("auto", "cuda", "cpu")
VARIANTS = ("fp32", "fp16", "int8")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SECRET_FIELDS = frozenset({"sasl_plain_password", "ssl_password"})


@dataclass(frozen=True)
class Settings:
    # Kafka
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "finsent"
    input_topic: str = "news.raw"
    scored_topic: str = "news.scored"
    trends_topic: str = "news.trends"
    dlq_topic: str = "news.dlq"
    # Per-ticker trends (README "Per-company trends"): scored records re-keyed by ticker, and their trends.
    scored_tickers_topic: str = "news.scored.tickers"
    ticker_trends_topic: str = "news.trends.tickers"
    create_topics: bool = True
    topic_partitions: int = 3
    replication_factor: int = 1
    # Security pass-through (kafka-python parameter names).
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    # Model
    model: str = "artifacts/latest"
    provider: str = "auto"
    variant: str | None = None
    threads: int | None = None
    # Texts per ONNX Runtime run; None: measured at start-up on the CPU (models/runtime.py
    # measure_sub_batch), 256 on a GPU.
    sub_batch: int | None = None
    # ONNX Runtime runs at once, sharing `threads`; None: one single-threaded run per core on the
    # CPU (models/runtime.py run_layout), one on a GPU.
    parallel_runs: int | None = None
    # Score the next micro-batch while the last one's records are built, published and committed
    # (pipeline/stages.py ScoreStage); False: one batch at a time.
    overlap_batches: bool = True
    # Model swaps while running (README "Swapping the model"): how often `model` is re-checked
    # (0: only on SIGHUP), and whether a model with other topic labels may replace the running one.
    model_check_interval_s: float = 10.0
    allow_label_change: bool = False
    # Drift (README "Confidence and drift"): predictions in the sliding window compared with the
    # model's validation mix.
    drift_window_messages: int = 2000
    # Shadow scoring (README "Shadowing a candidate"): a second model on the same batches, off the
    # hot path; a rate-limited sample of its disagreements goes to shadow_topic.
    shadow_model: str | None = None
    shadow_topic: str = "news.shadow"
    shadow_sample_per_s: float = 1.0
    # The review queue (README "The review loop"): unsure messages to review_topic, at most
    # review_per_s per second (0: off), once per story.
    review_topic: str = "news.review"
    review_per_s: float = 1.0
    review_min_confidence: float = 0.5
    # Micro-batching and input limits
    batch_max_messages: int = 256
    batch_max_wait_ms: int = 50
    max_message_bytes: int = 65536
    # Event time further than this from the record timestamp goes to the DLQ (event_time_out_of_range).
    event_time_max_ahead_ms: int = DAY_MS
    event_time_max_behind_ms: int = 30 * DAY_MS
    # Process
    stage: str = "all"
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9400  # 0 disables the HTTP endpoint
    exit_when_idle_s: float | None = None  # backfills and tests: stop after this long with no input
    retry_backoff_max_s: float = 30.0
    # Forwarded to pipeline.trends.TrendSettings by field name.
    trends: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("stage", self.stage, STAGES)
        _check_choice("provider", self.provider, PROVIDERS)
        if self.variant is not None:
            _check_choice("variant", self.variant, VARIANTS)
        _check_choice("security_protocol", self.security_protocol, SECURITY_PROTOCOLS)
        bootstrap_list("bootstrap_servers", self.bootstrap_servers)
        for name in (
            "batch_max_messages",
            "max_message_bytes",
            "topic_partitions",
            "replication_factor",
            "drift_window_messages",
            "event_time_max_ahead_ms",
            "event_time_max_behind_ms",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_max_wait_ms < 0:
            raise ConfigError(f"batch_max_wait_ms must be >= 0, got {self.batch_max_wait_ms}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be 0..65535 (0 disables), got {self.metrics_port}")
        if self.exit_when_idle_s is not None and self.exit_when_idle_s <= 0:
            raise ConfigError(f"exit_when_idle_s must be > 0, got {self.exit_when_idle_s}")
        if self.model_check_interval_s < 0:
            raise ConfigError(f"model_check_interval_s must be >= 0, got {self.model_check_interval_s}")
        if self.review_per_s < 0:
            raise ConfigError(f"review_per_s must be >= 0, got {self.review_per_s}")
        if not 0 <= self.review_min_confidence <= 1:
            raise ConfigError(f"review_min_confidence must be in 0..1, got {self.review_min_confidence}")
        if self.review_per_s > 0 and self.review_topic in (
            self.input_topic,
            self.scored_topic,
            self.trends_topic,
            self.dlq_topic,
            self.shadow_topic if self.shadow_model is not None else None,
        ):
            raise ConfigError(
                f"review_topic {self.review_topic!r} must differ from the daemon's other topics"
            )
        if self.shadow_sample_per_s < 0:
            raise ConfigError(f"shadow_sample_per_s must be >= 0, got {self.shadow_sample_per_s}")
        if self.shadow_model is not None and self.shadow_topic in (
            self.input_topic,
            self.scored_topic,
            self.trends_topic,
            self.dlq_topic,
        ):
            raise ConfigError(
                f"shadow_topic {self.shadow_topic!r} must differ from the daemon's other topics"
            )
        if self.retry_backoff_max_s <= 0:
            raise ConfigError(f"retry_backoff_max_s must be > 0, got {self.retry_backoff_max_s}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.sub_batch is not None and self.sub_batch < 1:
            raise ConfigError(f"sub_batch must be >= 1, got {self.sub_batch}")
        if self.parallel_runs is not None and self.parallel_runs < 1:
            raise ConfigError(f"parallel_runs must be >= 1, got {self.parallel_runs}")
        for name in (
            "group_id",
            "input_topic",
            "scored_topic",
            "trends_topic",
            "dlq_topic",
            "scored_tickers_topic",
            "ticker_trends_topic",
        ):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"{name} must not be empty")
        topics = [
            self.input_topic,
            self.scored_topic,
            self.trends_topic,
            self.dlq_topic,
            self.scored_tickers_topic,
            self.ticker_trends_topic,
        ]
        if len(set(topics)) != len(topics):
            raise ConfigError(
                f"input, scored, trends, dlq and the two ticker topics must differ, got {topics}"
            )
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ConfigError(f"security_protocol {self.security_protocol} needs sasl_mechanism")

    @property
    def aggregate_group_id(self) -> str:
        return f"{self.group_id}-aggregate"

    @property
    def changelog_topic(self) -> str:
        """The aggregate stage's restart state (compacted; see pipeline.changelog)."""
        return f"{self.aggregate_group_id}-changelog"

    def event_time_bounds(self) -> EventTimeBounds:
        return EventTimeBounds(self.event_time_max_ahead_ms, self.event_time_max_behind_ms)

    def kafka_security(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the security settings that are set."""
        names = (
            "security_protocol",
            "sasl_mechanism",
            "sasl_plain_username",
            "sasl_plain_password",
            "ssl_cafile",
            "ssl_certfile",
            "ssl_keyfile",
            "ssl_password",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def secrets(self) -> list[str]:
        """The secret values that are set (for `mask_secrets_in_logs`)."""
        return [v for n in sorted(SECRET_FIELDS) if (v := getattr(self, n))]

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with secrets replaced, for logs."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in SECRET_FIELDS:
            if out.get(name):
                out[name] = "***"
        out["trends"] = dict(self.trends)
        return out

    def scorer_options(self) -> dict[str, Any]:
        """Keyword arguments of `models.runtime.load_scorer` for the serving model."""
        return {
            "provider": self.provider,
            "variant": self.variant,
            "threads": self.threads,
            "sub_batch": self.sub_batch,
            "parallel_runs": self.parallel_runs,
        }

    def trend_settings(self) -> Any:
        """Build `TrendSettings` from the forwarded values (ConfigError names an unknown field)."""
        from pipeline.trends import TrendSettings

        known = {f.name: f for f in fields(TrendSettings)}
        kwargs: dict[str, Any] = {}
        for name, value in self.trends.items():
            if name not in known:
                raise ConfigError(f"unknown trend setting {name!r}; known: {', '.join(sorted(known))}")
            kwargs[name] = _coerce(f"trends.{name}", value, _field_type(TrendSettings, name))
        try:
            return TrendSettings(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid trend settings {kwargs}: {exc}") from exc


# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?):([0-9]{1,5})$")


def bootstrap_list(source: str, value: str) -> list[str]:
    """`host:port[,host:port...]` -> the list kafka-python takes; ConfigError (naming `source`) when
    an entry is not host:port or its port is outside 1..65535. kafka-python itself would raise a bare
    ValueError for bad syntax and retry an impossible port forever."""
    entries = [e.strip() for e in str(value).split(",") if e.strip()]  # a trailing comma is harmless
    if not entries:
        raise ConfigError(f"{source}: bootstrap_servers is empty; expected host:port[,host:port...]")
    for entry in entries:
        m = _HOST_PORT.match(entry)
        if m is None:
            raise ConfigError(
                f"{source}: bootstrap server {entry!r} is not host:port (e.g. kafka-1:9092, [::1]:9092)"
            )
        if not 1 <= int(m.group(3)) <= 65535:
            raise ConfigError(f"{source}: bootstrap server {entry!r}: port must be 1..65535")
    return entries


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _field_type(cls: type, name: str) -> str:
    """The annotation of a dataclass field as a string (annotations are strings under PEP 563)."""
    for f in fields(cls):
        if f.name == name:
            return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    raise KeyError(name)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(source: str, value: Any, type_name: str) -> Any:
    """Turn a raw value (string from env/flags, or a parsed YAML scalar) into the field's type."""
    optional = "None" in type_name
    base = type_name.replace("| None", "").replace("None |", "").strip()
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("", "none")):
        if optional:
            return None
        raise ConfigError(f"{source}: a value is required")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true/false")
        if base == "int":
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if base == "str":
            if not isinstance(value, (str, int, float)):
                raise ValueError("expected a string")
            return str(value)
        if base.startswith("Mapping"):
            if not isinstance(value, Mapping):
                raise ValueError("expected a mapping")
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid value {value!r}: {exc}") from None
    return value


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) mapping of setting names to values."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) if p.suffix != ".json" else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of setting names, got {type(data).__name__}")
    return data


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers and validate. `overrides` are CLI flags (None means "not given")."""
    env = os.environ if env is None else env
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # field -> where its value came from, for error messages
    trends: dict[str, Any] = {}

    config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG") or None
    if config_file:
        for key, value in read_config_file(config_file).items():
            key = str(key).replace("-", "_")
            if key == "trends":
                if not isinstance(value, dict):
                    raise ConfigError(f"{config_file}: 'trends' must be a mapping")
                trends.update(value)
            elif key in names:
                values[key] = _coerce(f"{config_file}: {key}", value, _field_type(Settings, key))
                sources[key] = f"{config_file}: {key}"
            else:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")

    for var, value in env.items():
        if var.startswith(TRENDS_ENV_PREFIX):
            trends[var[len(TRENDS_ENV_PREFIX) :].lower()] = value
        elif var.startswith(ENV_PREFIX):
            key = var[len(ENV_PREFIX) :].lower()
            if key == "config":
                continue
            if key in names and key != "trends":
                values[key] = _coerce(var, value, _field_type(Settings, key))
                sources[key] = var
            else:
                # Other parts of finsent read FINSENT_* variables too (e.g. FINSENT_EXPECT_GPU), so an
                # unknown name is not an error here; a typo still shows up in the log.
                log.debug("ignoring %s: not a daemon setting", var)

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "trends":
            trends.update(value)
            continue
        flag = "--" + key.replace("_", "-")
        values[key] = _coerce(flag, value, _field_type(Settings, key))
        sources[key] = flag

    if "bootstrap_servers" in values:
        # Checked here as well as in Settings, so the error names the file, variable or flag.
        bootstrap_list(sources["bootstrap_servers"], values["bootstrap_servers"])
    values["trends"] = trends
    return Settings(**values)


_MASK = "***"


def mask_secrets_in_logs(secrets: Iterable[str | None]) -> None:
    """From now on, every log record of this process has these values replaced by `***`.

    A record factory rather than a logging.Filter: filters attached to a logger do not see records
    of its child loggers (kafka.admin.client, kafka.conn, ...), and handler filters miss handlers added
    later; the factory runs for every record that any logger emits. kafka-python logs its whole
    configuration, passwords included, at DEBUG (`-v`). Calling it again replaces the set."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first: overlaps
    global _base_factory
    if _base_factory is None:
        _base_factory = logging.getLogRecordFactory()
    base = _base_factory
    if not values:
        logging.setLogRecordFactory(base)
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report, as before
            return record
        if any(v in text for v in values):
            for v in values:
                text = text.replace(v, _MASK)
            record.msg, record.args = text, None
        return record

    logging.setLogRecordFactory(factory)


_base_factory: Any = None


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
