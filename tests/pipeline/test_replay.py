"""`finsent replay`: broker-free `--direct` runs and producing a feed into Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artifact import verify_artifact
from models.errors import DataError
from models.runtime import Scorer
from pipeline.replay import pacing, peek, read_feed, replay_direct
from pipeline.trends import TrendSettings
from tests.support.broker import Broker, read_topic
from tests.support.daemon_procs import finsent, write_feed
from tests.support.toy_artifact import T0_MS, build_toy_artifact, good_rows

FEEDS = Path(__file__).resolve().parents[1] / "feeds"


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("toy"))


def test_direct_replay_is_deterministic_and_accounts_for_every_line(toy_dir: Path, tmp_path: Path) -> None:
    rows = good_rows(60)
    lines = [json.dumps(r) for r in rows] + ["{broken", json.dumps({"id": "x", "text": ""})]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n\n")  # a blank line is skipped, not a message
    scorer = Scorer(verify_artifact(toy_dir), provider="cpu")
    now = T0_MS + 3_600_000  # a fixed processing clock, an hour after the feed (event-time bounds)
    runs = [replay_direct(feed, scorer, TrendSettings(), batch_size=16, now_ms=now) for _ in range(2)]
    a, b = runs
    assert len(a.scored) == 60 and sorted(d.reason for d in a.dead) == ["empty_text", "invalid_json"]
    assert [r.to_json_dict() for r in a.trends] == [r.to_json_dict() for r in b.trends]
    assert sum(r.total for r in a.trends) == 60 and a.late == 0 and a.duplicates == 0
    # Counts per (topic, window) equal a plain count of the scored records.
    direct_counts: dict[tuple[str, int], int] = {}
    for rec in a.scored:
        key = (rec.topic, rec.item.event_time_ms - rec.item.event_time_ms % 60_000)
        direct_counts[key] = direct_counts.get(key, 0) + 1
    assert {(r.topic, r.window_start_ms): r.total for r in a.trends if r.total} == direct_counts


def test_direct_replay_dead_letters_event_times_out_of_range_and_keeps_the_windows(
    toy_dir: Path, tmp_path: Path
) -> None:
    # Issue 8, findings 1-2: a line dated 2100 used to close every window (1,440 empty records per
    # topic), and one whose UTC date leaves years 1..9999 crashed the pipeline.
    rows = good_rows(60)
    poison = [
        {"id": "p-2100", "text": "Stocks slide", "published_at": "2100-01-01T00:00:00Z"},
        {"id": "p-year0", "text": "Stocks slide", "published_at": "0001-01-01T00:00:00+01:00"},
        {"id": "p-9999", "text": "Stocks slide", "published_at": "9999-12-31T23:59:30Z"},
        {"id": "p-old", "text": "Stocks slide", "published_at": "0001-01-01T00:00:00Z"},
    ]
    feed = write_feed(tmp_path / "feed.jsonl", rows[:10] + poison + rows[10:])
    scorer = Scorer(verify_artifact(toy_dir), provider="cpu")
    now = T0_MS + 3_600_000
    res = replay_direct(feed, scorer, TrendSettings(), batch_size=16, now_ms=now)
    reasons = {d.id: d.reason for d in res.dead}
    assert reasons == {
        "p-2100": "event_time_out_of_range",
        "p-year0": "bad_published_at",
        "p-9999": "event_time_out_of_range",
        "p-old": "event_time_out_of_range",
    }
    assert len(res.scored) == 60 and res.late == 0
    assert sum(r.total for r in res.trends) == 60
    # The feed spans 10 minutes: its windows, not a day's worth of empty ones per topic.
    assert max(r.window_start_ms for r in res.trends) < T0_MS + 11 * 60_000


def test_direct_replay_cli_writes_trends_scored_and_dead_letters(toy_dir: Path, tmp_path: Path) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", good_rows(20) + [{"id": 5, "text": "numeric id"}])
    out = finsent(
        "replay", str(feed), "--direct", "--model", str(toy_dir), "--out", str(tmp_path / "t.jsonl"),
        "--scored-out", str(tmp_path / "s.jsonl"), "--dlq-out", str(tmp_path / "d.jsonl"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "scored 20, dead-lettered 1" in out.stderr
    trends = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert sum(t["total"] for t in trends) == 20
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 20
    (dead,) = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert dead["reason"] == "bad_id" and dead["input"]["offset"] == 21  # the file line number
    missing = finsent("replay", str(tmp_path / "nope.jsonl"), "--direct", "--model", str(toy_dir))
    assert missing.returncode == 2 and "nope.jsonl: cannot read feed" in missing.stderr


def test_b64_feeds_decode_to_exact_bytes_and_bad_lines_are_named(tmp_path: Path) -> None:
    raws = [raw for _, raw in read_feed(FEEDS / "malformed.jsonl", b64=True)]
    assert b"" in raws and any(r.startswith(b"\xef\xbb\xbf") for r in raws)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"b64": "AAAA"}\n{"b64": "not base64!"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: --b64 line"):
        list(read_feed(bad, b64=True))


def test_peek_and_pacing() -> None:
    assert peek(b'{"id": "a", "published_at": "2026-03-02T10:00:00Z"}') == ("a", 1_772_445_600_000)
    assert peek(b"\xff") == (None, None) and peek(b"[1]") == (None, None)
    now = [100.0]
    delay = pacing(10.0, clock=lambda: now[0])
    assert delay(1_000_000) == 0.0  # the first message sets the origin
    assert delay(1_010_000) == pytest.approx(1.0)  # 10 s of feed time at 10x speed
    now[0] = 100.5
    assert delay(1_010_000) == pytest.approx(0.5)
    assert pacing(None)(5) == 0.0


@pytest.mark.integration
def test_replay_into_kafka_keys_by_id_and_sends_every_line(kafka_broker: Broker, tmp_path: Path) -> None:
    rows = good_rows(30)
    feed = write_feed(tmp_path / "feed.jsonl", rows)
    with open(feed, "a") as fh:
        fh.write("not json at all\n")
    bs = kafka_broker.bootstrap
    out = finsent("replay", str(feed), "--bootstrap-servers", bs, "--topic", "raw.test", "--speed", "1000")
    assert out.returncode == 0, out.stderr
    got = read_topic(bs, "raw.test", done=lambda r: len(r) >= 31)
    assert len(got) == 31
    assert sorted(r.value for r in got) == sorted(feed.read_bytes().splitlines())
    keyed = {r.key: r.value for r in got if r.key is not None}
    assert set(keyed) == {r["id"].encode() for r in rows}
    down = finsent("replay", str(feed), "--bootstrap-servers", "127.0.0.1:9", "--no-create-topics")
    assert down.returncode == 2 and "127.0.0.1:9" in down.stderr and "Traceback" not in down.stderr
