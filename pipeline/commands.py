"""`finsent consume` (the daemon) and `finsent replay` (recorded feeds into Kafka, or `--direct`).

Flags override `FINSENT_*` environment variables, which override the config file (`--config` or
FINSENT_CONFIG); see README "Configuration". Heavy imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from models.errors import ConfigError
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _trend_pairs(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--trend {item!r}: expected FIELD=VALUE, e.g. --trend window_ms=60000")
        out[name.strip()] = value.strip()
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML/JSON settings file (default: $FINSENT_CONFIG)")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]", help="default: localhost:9092")
    p.add_argument("--model", metavar="DIR", help="artifact directory (default: artifacts/latest)")
    p.add_argument("--provider", choices=("auto", "cuda", "cpu"), help="default: auto (CUDA+fp16 if a GPU)")
    p.add_argument("--variant", choices=("fp32", "fp16", "int8"), help="default: per provider")
    p.add_argument("--threads", type=int, help="cores ONNX Runtime may use (default: all)")
    p.add_argument(
        "--sub-batch",
        type=int,
        metavar="N",
        help="texts per ONNX Runtime run (default: measured at start-up on CPU, 256 on GPU)",
    )
    p.add_argument(
        "--parallel-runs",
        type=int,
        metavar="N",
        help="ONNX Runtime runs at once, sharing --threads (default: one per core on CPU, 1 on GPU)",
    )
    p.add_argument(
        "--no-overlap",
        dest="overlap_batches",
        action="store_const",
        const=False,
        help="score one micro-batch at a time (default: the next batch is scored while the last one "
        "is published)",
    )
    p.add_argument(
        "--batch-max-messages", type=int, metavar="N", help="micro-batch size bound (default: 256)"
    )
    p.add_argument(
        "--max-message-bytes", type=int, metavar="N", help="larger messages go to the DLQ (default: 65536)"
    )
    p.add_argument(
        "--partitions",
        dest="topic_partitions",
        type=int,
        metavar="N",
        help="partitions for topics this command creates (default: 3)",
    )
    p.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_const",
        const=False,
        help="do not create missing topics",
    )
    p.add_argument(
        "--trend",
        action="append",
        metavar="FIELD=VALUE",
        help="a trend/spike setting, e.g. window_ms=60000 (repeatable; README 'Configuration')",
    )
    p.add_argument(
        "--event-time-max-ahead-ms",
        type=int,
        metavar="MS",
        help="dead-letter events further ahead of their record timestamp "
        f"(default: {Settings.event_time_max_ahead_ms})",
    )
    p.add_argument(
        "--event-time-max-behind-ms",
        type=int,
        metavar="MS",
        help="dead-letter events further behind their record timestamp "
        f"(default: {Settings.event_time_max_behind_ms})",
    )
    p.add_argument("--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    p.add_argument(
        "--sasl-mechanism", help="e.g. PLAIN, SCRAM-SHA-512 (password: FINSENT_SASL_PLAIN_PASSWORD)"
    )
    p.add_argument("--sasl-plain-username")
    p.add_argument("--ssl-cafile")
    p.add_argument("--ssl-certfile")
    p.add_argument("--ssl-keyfile")


_SETTING_FLAGS = (
    "bootstrap_servers", "model", "provider", "variant", "threads", "sub_batch", "parallel_runs",
    "overlap_batches", "batch_max_messages",
    "max_message_bytes", "topic_partitions", "create_topics", "security_protocol", "sasl_mechanism",
    "sasl_plain_username", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "group_id", "input_topic",
    "scored_topic", "trends_topic", "dlq_topic", "batch_max_wait_ms", "metrics_host", "metrics_port",
    "stage", "exit_when_idle_s", "model_check_interval_s", "allow_label_change", "shadow_model",
    "shadow_topic", "shadow_sample_per_s", "review_topic", "review_per_s", "review_min_confidence",
    "event_time_max_ahead_ms", "event_time_max_behind_ms",
)  # fmt: skip


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Any:
    from pipeline.settings import load_settings, mask_secrets_in_logs

    overrides = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    overrides["trends"] = _trend_pairs(getattr(args, "trend", None))
    overrides.update(extra)
    settings = load_settings(config_file=args.config, overrides=overrides)
    # Before any Kafka client exists: kafka-python logs its configuration (passwords too) at DEBUG.
    mask_secrets_in_logs(settings.secrets())
    return settings


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "consume",
        help="run the streaming daemon (score news.raw, aggregate trends, detect spikes)",
        description="Consume raw news from Kafka, score it in micro-batches, publish scored records, "
        "dead letters and per-topic trend windows, and export Prometheus metrics.",
    )
    _common(c)
    c.add_argument(
        "--group", dest="group_id", help="consumer group (default: finsent; aggregate: <group>-aggregate)"
    )
    c.add_argument("--input-topic", help="default: news.raw")
    c.add_argument("--scored-topic", help="default: news.scored")
    c.add_argument("--trends-topic", help="default: news.trends")
    c.add_argument("--dlq-topic", help="default: news.dlq")
    c.add_argument("--batch-max-wait-ms", type=int, metavar="MS", help="micro-batch wait bound (default: 50)")
    c.add_argument("--metrics-host", help="default: 0.0.0.0")
    c.add_argument("--metrics-port", type=int, metavar="N", help="default: 9400; 0 disables")
    c.add_argument("--stage", choices=("all", "score", "aggregate"), help="default: all")
    c.add_argument(
        "--exit-when-idle",
        dest="exit_when_idle_s",
        type=float,
        metavar="SECONDS",
        help="exit (after flushing open windows) once no input arrived for this long",
    )
    c.add_argument(
        "--model-check-interval",
        dest="model_check_interval_s",
        type=float,
        metavar="SECONDS",
        help="re-check --model for a new target this often and swap to it (default: 10; 0: SIGHUP only)",
    )
    c.add_argument(
        "--allow-label-change",
        action="store_const",
        const=True,
        help="let a swap load a model whose topic labels differ from the running one",
    )
    c.add_argument(
        "--shadow-model",
        metavar="DIR",
        help="a candidate artifact that scores the same batches off the hot path (README 'Shadowing')",
    )
    c.add_argument("--shadow-topic", help="disagreement samples go here (default: news.shadow)")
    c.add_argument(
        "--shadow-sample-per-s",
        type=float,
        metavar="N",
        help="at most this many disagreement samples per second (default: 1)",
    )
    c.add_argument("--review-topic", help="unsure messages go here for labelling (default: news.review)")
    c.add_argument(
        "--review-per-s",
        type=float,
        metavar="N",
        help="at most N review records per second (default: 1; 0: off)",
    )
    c.add_argument(
        "--review-min-confidence",
        type=float,
        metavar="P",
        help="review a message whose top-class probability on a head is below P (default: 0.5)",
    )
    c.add_argument("--max-messages", type=int, metavar="N", help="exit after N input messages (tests)")
    c.add_argument("--timeout", type=float, metavar="SECONDS", help="exit after this long (tests)")
    c.set_defaults(handler=run_consume)

    r = sub.add_parser(
        "replay",
        help="replay a recorded JSONL feed into Kafka, or through the pipeline with --direct",
        description="Produce each line of FILE to a topic (keyed by id), or with --direct score and "
        "aggregate it without a broker and print the trend records.",
    )
    r.add_argument("file", metavar="FILE", help="JSONL feed, one message per line")
    _common(r)
    r.add_argument("--topic", help="target topic (default: the input topic, news.raw)")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, metavar="N", help="keep relative published_at timing, N times faster"
    )
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no pacing (the default)")
    r.add_argument(
        "--b64", action="store_true", help="lines are JSON objects whose 'b64' field holds the bytes"
    )
    r.add_argument(
        "--timestamps",
        choices=("published", "now"),
        default="published",
        help="Kafka record timestamp of each line: its published_at (default; a recorded feed stays "
        "within the daemon's event-time bounds) or the producer's clock (latency measurements)",
    )
    r.add_argument("--direct", action="store_true", help="no broker: run the pipeline over FILE")
    r.add_argument("--out", metavar="FILE", help="--direct: trend records JSONL (default: stdout)")
    r.add_argument("--scored-out", metavar="FILE", help="--direct: also write scored records here")
    r.add_argument("--dlq-out", metavar="FILE", help="--direct: also write dead letters here")
    r.set_defaults(handler=run_replay)


def run_consume(args: argparse.Namespace) -> int:
    from pipeline.app import Daemon

    settings = settings_from_args(args)
    if args.max_messages is not None and args.max_messages < 1:
        raise ConfigError(f"--max-messages must be >= 1, got {args.max_messages}")
    daemon = Daemon(settings)
    daemon.load_model()  # before the signal handlers: a bad artifact is a plain CLI error

    def on_signal(signum: int, _frame: Any) -> None:
        log.info(
            "%s received: finishing the in-flight batch, committing, exiting", signal.Signals(signum).name
        )
        daemon.stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once

    def on_hangup(_signum: int, _frame: Any) -> None:
        log.info("SIGHUP received: re-reading %s at the next batch boundary", settings.model)
        daemon.request_reload()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    return daemon.run(count=args.max_messages, timeout=args.timeout)


def run_replay(args: argparse.Namespace) -> int:
    speed = None if args.as_fast_as_possible else args.speed
    if speed is not None and speed <= 0:
        raise ConfigError(f"--speed must be > 0, got {speed}")
    settings = settings_from_args(args)
    if not args.direct:
        from pipeline.replay import replay_to_kafka

        topic = args.topic or settings.input_topic
        sent = replay_to_kafka(
            settings,
            args.file,
            topic,
            speed=speed,
            b64=args.b64,
            keep_published_time=args.timestamps == "published",
        )
        print(f"replayed {sent} messages to {topic}", file=sys.stderr)
        return 0

    from models.runtime import load_scorer
    from pipeline.replay import open_out, replay_direct, write_jsonl

    scorer = load_scorer(settings.model, **settings.scorer_options())
    result = replay_direct(
        args.file,
        scorer,
        settings.trend_settings(),
        batch_size=settings.batch_max_messages,
        max_bytes=settings.max_message_bytes,
        b64=args.b64,
        bounds=settings.event_time_bounds(),
    )
    now = result.scored[0].scored_at_ms if result.scored else 0
    outputs = [(args.out, [r.to_json_dict() for r in result.trends])]  # None: stdout
    if args.scored_out:
        outputs.append((args.scored_out, [r.to_dict() for r in result.scored]))
    if args.dlq_out:
        outputs.append((args.dlq_out, [d.to_dict(now) for d in result.dead]))
    for path, rows in outputs:
        out = open_out(path)
        try:
            write_jsonl(rows, out)
        finally:
            if out is not sys.stdout:
                out.close()
    spikes = sorted({r.topic for r in result.trends if r.spike_active and r.key_type == "topic"})
    tickers = sorted({r.topic for r in result.trends if r.spike_active and r.key_type == "ticker"})
    print(
        f"direct replay of {args.file}: scored {len(result.scored)}, dead-lettered {len(result.dead)}, "
        f"late {result.late}, duplicates {result.duplicates}, {len(result.trends)} trend records "
        f"(model {scorer.version}, {scorer.provider}/{scorer.variant}); spikes: {', '.join(spikes) or 'none'}; "
        f"ticker spikes: {', '.join(tickers) or 'none'}",
        file=sys.stderr,
    )
    return 0
