"""`finsent review export` and `finsent review merge`: the review queue to a CSV for labelling, and
labelled rows back into training data.

`export` reads the review topic as consumer group `<group>-review-export` from its committed
offsets to the end, writes one row per story (the newest record of each), and commits only after
the file is complete, so every review record is exported once and a failed export loses nothing.
The CSV has the text, blank `topic` and `sentiment` columns for the labeller, and the model's
guesses beside them. `merge` appends the rows a person labelled (either head; rows left blank on
both are skipped) to a training file, which `finsent train --data` then reads like any other.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from models.errors import DataError

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("text", "topic", "sentiment")
GUESS_COLUMNS = (
    "model_topic", "model_topic_confidence", "model_sentiment", "model_sentiment_confidence",
    "reason", "heads", "shadow_topic", "shadow_sentiment", "model_version", "id", "story",
)  # fmt: skip


def export_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """CSV rows for labelling, one per story (its newest record), in first-seen order. Pure."""
    by_story: dict[str, dict[str, Any]] = {}
    for rec in records:
        by_story[str(rec.get("story") or rec.get("id"))] = rec
    rows = []
    for rec in by_story.values():
        shadow = rec.get("shadow") or {}
        rows.append(
            {
                "text": str(rec.get("text", "")),
                "topic": "",
                "sentiment": "",
                "model_topic": str(rec.get("topic", "")),
                "model_topic_confidence": str(rec.get("topic_confidence", "")),
                "model_sentiment": str(rec.get("sentiment", "")),
                "model_sentiment_confidence": str(rec.get("sentiment_confidence", "")),
                "reason": str(rec.get("reason", "")),
                "heads": ",".join(rec.get("heads") or []),
                "shadow_topic": str(shadow.get("topic", "")),
                "shadow_sentiment": str(shadow.get("sentiment", "")),
                "model_version": str(rec.get("model_version", "")),
                "id": str(rec.get("id", "")),
                "story": str(rec.get("story", "")),
            }
        )
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, str]], columns: Sequence[str]) -> None:
    """Write via a temporary sibling and rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def labelled_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an exported-then-labelled CSV that carry at least one label."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = [{c: (row.get(c) or "").strip() for c in LABEL_COLUMNS} for row in reader]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return [r for r in rows if r["text"] and (r["topic"] or r["sentiment"])]


def read_review_topic(settings: Any, topic: str, group: str, timeout_s: float) -> tuple[list[Any], Any]:
    """Every record after the group's committed offsets, up to the end; and the consumer (to commit)."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka_io import client_config, frame_limits, wait_for_partitions

    consumer = KafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        **frame_limits(),
        **client_config(settings, f"{group}-{os.getpid()}"),
    )
    deadline = time.monotonic() + timeout_s
    parts = wait_for_partitions(consumer, topic, timeout_s)
    if not parts:
        consumer.close()
        raise DataError(
            f"{topic}: no such topic on {settings.bootstrap_servers} (is the daemon's review on?)"
        )
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    for tp in tps:
        committed = consumer.committed(tp)
        if committed is None or committed < 0:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    records: list[Any] = []
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        hw = {tp: consumer.highwater(tp) for tp in tps}
        if all(hw[tp] is not None and consumer.position(tp) >= hw[tp] for tp in tps):
            return records, consumer
    consumer.close()
    raise DataError(f"{topic}: not read to its end within {timeout_s:.0f} s; nothing exported")


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "review", help="the review queue: export unsure messages for labelling, merge labels back"
    )
    rsub = r.add_subparsers(dest="review_command", metavar="ACTION")
    rsub.required = True
    e = rsub.add_parser("export", help="write the not yet exported review records to a CSV for labelling")
    e.add_argument("--out", required=True, metavar="CSV", help="e.g. to_label.csv")
    e.add_argument("--config", metavar="FILE", help="YAML/JSON settings file (default: $FINSENT_CONFIG)")
    e.add_argument("--bootstrap-servers", metavar="HOST:PORT[,HOST:PORT]", help="default: localhost:9092")
    e.add_argument("--review-topic", help="default: news.review")
    e.add_argument("--group", dest="group_id", help="daemon group; exports use <group>-review-export")
    e.add_argument("--timeout", type=float, default=60.0, help="seconds to read the topic (default: 60)")
    e.set_defaults(handler=run_export)
    m = rsub.add_parser("merge", help="append labelled review rows to training data (text,topic,sentiment)")
    m.add_argument("data", metavar="DATA", help="training CSV (text, topic, sentiment)")
    m.add_argument("reviewed", nargs="+", metavar="REVIEWED", help="labelled export CSVs")
    m.add_argument("--out", required=True, metavar="CSV")
    m.set_defaults(handler=run_merge)


def run_export(args: argparse.Namespace) -> int:
    from pipeline.settings import load_settings

    overrides = {"bootstrap_servers": args.bootstrap_servers, "review_topic": args.review_topic}
    overrides["group_id"] = args.group_id
    settings = load_settings(config_file=args.config, overrides=overrides)
    group = f"{settings.group_id}-review-export"
    records, consumer = read_review_topic(settings, settings.review_topic, group, args.timeout)
    try:
        parsed = []
        for rec in records:
            try:
                parsed.append(json.loads(rec.value))
            except ValueError:
                log.warning("%s[%d]@%d: not JSON; skipped", rec.topic, rec.partition, rec.offset)
        rows = export_rows(parsed)
        out = Path(args.out)
        write_csv(out, rows, LABEL_COLUMNS + GUESS_COLUMNS)
        if records:
            from kafka import TopicPartition

            from pipeline.kafka_io import commit

            ends: dict[Any, int] = {}
            for rec in records:
                tp = TopicPartition(rec.topic, rec.partition)
                ends[tp] = max(ends.get(tp, 0), rec.offset + 1)
            commit(consumer, ends)
    finally:
        consumer.close()
    print(f"exported {len(rows)} stories ({len(records)} review records) to {out}", file=sys.stderr)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    base = Path(args.data)
    try:
        with open(base, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{base}: missing column(s) {', '.join(missing)}")
            rows = [{c: row.get(c) or "" for c in LABEL_COLUMNS} for row in reader]
    except OSError as exc:
        raise DataError(f"{base}: cannot read: {exc.strerror or exc}") from None
    added = 0
    for path in args.reviewed:
        extra = labelled_rows(Path(path))
        rows.extend(extra)
        added += len(extra)
    write_csv(Path(args.out), rows, LABEL_COLUMNS)
    print(f"{args.out}: {len(rows) - added} rows from {base} + {added} reviewed", file=sys.stderr)
    return 0
