"""The example webhook receiver fetches the headlines an alert links to, from the daemon's real endpoint."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.alert_feed import AlertFeed
from pipeline.metrics import serve

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_772_445_600_000


def _hook() -> Any:
    spec = importlib.util.spec_from_file_location("alert_webhook", ROOT / "deploy" / "alert_webhook.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alert(topic: str, link: str, status: str = "firing") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "NegativeSentimentSpike", "topic": topic},
            "annotations": {"summary": f"Negative news surge on {topic}", "headlines": link}}  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_receiver_prints_the_headlines_under_the_alert_and_one_line_when_it_cannot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook = _hook()
    feed = AlertFeed()
    headlines = [
        {"id": "n-17", "text": "Refinery fire\nhalts output at Gulf plant", "source": "wire", "score": -0.91,
         "story": "s1", "published_at": "2026-03-02T13:04:00Z"},
        {"id": "n-22", "text": "x" * 400, "source": None, "score": -0.5, "story": "s2",
         "published_at": "2026-03-02T13:05:00Z"},
    ]  # fmt: skip
    feed.update([{"key_type": "topic", "key": "Energy | Oil", "topic": "Energy | Oil", "spike_active": True,
                  "spike_transition": "enter", "window_start_ms": T0, "window_end_ms": T0 + 60_000,
                  "spike_score": 5.0, "headlines": headlines}], T0)  # fmt: skip
    daemon = serve(CollectorRegistry(), "127.0.0.1", 0, feed)
    inbox = hook.Inbox()
    receiver = hook.make_server("127.0.0.1", 0, inbox, echo=True, fetch_timeout_s=2.0)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{daemon.server_port}"
    try:
        payload = {"status": "firing", "alerts": [
            _alert("Energy | Oil", f"{base}/spikes/topic/Energy%20%7C%20Oil"),
            _alert("Banks", f"{base}/spikes/topic/Banks"),  # not (or no longer) active: 404
            _alert("Metals", f"http://127.0.0.1:{_closed_port()}/spikes/topic/Metals"),  # nobody there
            _alert("Retail", "unknown"),  # Prometheus found no replica for the link
            _alert("Energy | Oil", f"{base}/spikes/topic/Energy%20%7C%20Oil", status="resolved"),
        ]}  # fmt: skip
        req = urllib.request.Request(f"http://127.0.0.1:{receiver.server_port}/newsdesk",
                                     data=json.dumps(payload).encode())  # fmt: skip
        with urllib.request.urlopen(req, timeout=15) as resp:
            assert resp.status == 200
        oil, banks, metals, retail, resolved = inbox.notifications()[0]["payload"]["alerts"]
        assert oil["headlines"] == headlines and "headlines_error" not in oil
        assert oil["headline_lines"] == [
            "-0.910  n-17  [wire]  Refinery fire halts output at Gulf plant",
            "-0.500  n-22  [-]  " + "x" * 159 + "…",
        ]
        assert banks["headlines_error"].startswith(f"no active spike at {base}/spikes/topic/Banks")
        assert metals["headlines_error"].startswith("cannot fetch http://127.0.0.1:")
        assert retail["headlines_error"] == "no headlines link ('unknown')"
        assert "headlines" not in resolved and "headline_lines" not in resolved  # nothing to fetch
        out = capsys.readouterr()
        printed = out.out.splitlines()
        at = printed.index("alert-webhook /newsdesk: [firing] NegativeSentimentSpike topic='Energy | Oil': "
                           "Negative news surge on Energy | Oil")  # fmt: skip
        assert (
            printed[at + 1]
            == "alert-webhook /newsdesk:     -0.910  n-17  [wire]  Refinery fire halts output at Gulf plant"
        )
        for topic in ("Banks", "Metals", "Retail"):  # the alert line, then one line saying why
            at = next(i for i, line in enumerate(printed) if f"topic={topic!r}" in line)
            assert printed[at + 1].startswith("alert-webhook /newsdesk:     ") and "Traceback" not in out.err
        assert len(printed) == 5 + 2 + 3  # five alerts, two headlines, three reasons
    finally:
        receiver.shutdown()
        receiver.server_close()
        daemon.shutdown()
        daemon.server_close()


class _BrokenFeed(AlertFeed):
    def get(self, key_type: str, key: str) -> dict[str, Any] | None:
        raise RuntimeError("a bug in the feed")


def test_a_link_that_does_not_answer_with_headlines_is_one_line_too() -> None:
    hook = _hook()
    daemon = serve(CollectorRegistry(), "127.0.0.1", 0, _BrokenFeed())
    base = f"http://127.0.0.1:{daemon.server_port}"
    try:
        for path in ("/metrics", "/healthz"):  # answers, but not with a spike
            assert hook.fetch_headlines(base + path) == (
                None,
                f"{base}{path} did not answer with a spike's headlines",
            )
        assert hook.fetch_headlines(base + "/spikes/topic/Banks") == (
            None, f"{base}/spikes/topic/Banks answered HTTP 500")  # fmt: skip
    finally:
        daemon.shutdown()
        daemon.server_close()


def test_the_demo_prints_a_delivered_spike_alert_with_its_headlines_once() -> None:
    from devstack.demo import _new_deliveries

    hook = _hook()
    inbox = hook.Inbox()
    alert = _alert("Energy | Oil", "http://127.0.0.1:1/spikes/topic/Energy%20%7C%20Oil")
    alert["annotations"]["description"] = "75% of the recent news on Energy | Oil is negative"
    alert["headline_lines"] = hook.headline_lines([{"id": "n-17", "text": "Refinery fire", "score": -0.91,
                                                    "source": "wire"}])  # fmt: skip
    inbox.add("/newsdesk", {"alerts": [alert, _alert("Banks", "unknown", status="resolved")]})
    shown: set[str] = set()
    lines = _new_deliveries(inbox, shown)
    assert lines == [
        "[bold red]webhook /newsdesk received: NegativeSentimentSpike topic='Energy | Oil' — 75% of the recent "
        "news on Energy | Oil is negative[/]",
        "    -0.910  n-17  \\[wire]  Refinery fire",  # rich markup escaped: printed as "[wire]"
    ]
    inbox.add("/newsdesk", {"alerts": [alert]})  # Alertmanager repeats itself; the demo does not
    assert _new_deliveries(inbox, shown) == [] and _new_deliveries(None, shown) == []


def test_readme_states_the_receivers_timeout() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"The example webhook fetches either link ({_hook().FETCH_TIMEOUT_S:g} s timeout)" in readme


def test_the_demo_shows_a_ticker_spike_alert_too() -> None:
    from devstack.demo import _new_deliveries

    hook = _hook()
    inbox = hook.Inbox()
    alert = {"status": "firing", "labels": {"alertname": "TickerNegativeSpike", "ticker": "TRQN"},
             "annotations": {"description": "The spike detector holds a negative spike for TRQN"},
             "headline_lines": ["-0.990  n-1  [wire]  Refinery fire"]}  # fmt: skip
    inbox.add("/newsdesk", {"alerts": [alert]})
    assert _new_deliveries(inbox, set()) == [
        "[bold red]webhook /newsdesk received: TickerNegativeSpike ticker='TRQN' — The spike detector holds "
        "a negative spike for TRQN[/]",
        "    -0.990  n-1  \\[wire]  Refinery fire",
    ]
    assert hook.summarize({"alerts": [alert]})[0] == "[firing] TickerNegativeSpike ticker='TRQN': "
