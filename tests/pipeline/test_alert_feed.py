"""The active-spike feed (a pure fold over trend records) and the HTTP endpoint that serves it."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.alert_feed import MAX_ENTRIES, MAX_HEADLINES, STALE_WINDOWS, AlertFeed, fold
from pipeline.metrics import Metrics, serve
from pipeline.trends import ScoredEvent, TrendFolder, TrendRecord, TrendSettings

MIN = 60_000
T0 = 1_772_445_600_000  # 2026-03-02T10:00Z, a window boundary
NOW = 1_772_500_000_000


def head(hid: str, score: float, story: str | None = None) -> dict[str, Any]:
    return {"id": hid, "text": f"headline {hid}", "source": "wire", "score": score,
            "story": story or f"s-{hid}", "published_at": "2026-03-02T10:00:00Z"}  # fmt: skip


def rec(
    key: str,
    minute: int,
    active: bool,
    transition: str | None = None,
    headlines: list[Any] | None = None,
    key_type: str = "topic",
    score: float = 4.0,
) -> dict[str, Any]:
    """A trend record's JSON as the lead's folder writes it (key_type, key, stories, headlines)."""
    start = T0 + minute * MIN
    doc: dict[str, Any] = {
        "key_type": key_type, "key": key, "window_start_ms": start, "window_end_ms": start + MIN,
        "window_start": f"start+{minute}", "window_end": f"end+{minute}", "total": 12, "stories": 9,
        "negative_share": 0.75, "baseline_negative_share": 0.2, "spike_score": score, "z_volume": 5.0,
        "z_share": 3.1, "spike_active": active, "spike_transition": transition,
        "headlines": headlines or [],
    }  # fmt: skip
    if key_type == "topic":
        doc["topic"] = key
    return doc


def test_a_spike_is_added_on_entry_refreshed_while_active_and_removed_when_it_leaves() -> None:
    state, ignored = fold(
        {}, [rec("Energy", 0, False), rec("Energy", 1, True, "enter", [head("a", -0.9)])], NOW
    )
    assert ignored == 0 and list(state) == [("topic", "Energy")]
    e = state[("topic", "Energy")]
    assert (e.since, e.since_ms, e.windows) == ("end+1", T0 + 2 * MIN, 1)
    more = [head("b", -0.95), head("c", -0.5), head("a2", -0.99, story="s-a"), head("a3", -0.2, story="s-a")]
    state, _ = fold(state, [rec("Energy", 2, True, None, more, score=6.5)], NOW + 1)
    e = state[("topic", "Energy")]
    assert (e.since, e.windows, e.window_end, e.spike_score, e.stories) == ("end+1", 2, "end+2", 6.5, 9)
    # Most negative first, one per story: a2 and a3 are a's story, a2 is its most negative headline.
    assert [h["id"] for h in e.headlines] == ["a2", "b", "c"]
    assert e.headlines[1] == head("b", -0.95)  # the agreed fields, as they came
    state, _ = fold(state, [rec("Energy", 3, False, "leave")], NOW + 2)
    assert state == {}


def test_headlines_keep_the_five_most_negative_stories_of_all_the_spikes_windows() -> None:
    first = [head(f"w1-{i}", s) for i, s in enumerate([-0.10, -0.20, -0.30, -0.40], 1)]
    second = [head(f"w2-{i}", s) for i, s in enumerate([-0.15, -0.35, -0.45, -0.60], 1)]
    state, _ = fold({}, [rec("Banks", 0, True, "enter", first), rec("Banks", 1, True, None, second)], NOW)
    got = state[("topic", "Banks")].headlines
    assert len(got) == MAX_HEADLINES == 5
    assert [h["id"] for h in got] == ["w2-4", "w2-3", "w1-4", "w2-2", "w1-3"]


def test_todays_records_without_key_type_or_headlines_count_as_topic_spikes() -> None:
    record = TrendRecord(
        topic="Energy | Oil", window_start_ms=T0, window_end_ms=T0 + MIN, total=12, mean_score=-0.6,
        counts={"negative": 9, "neutral": 3, "positive": 0}, negative_share=0.75, late=0, spike_score=5.2,
        spike_active=True, baseline_negative_share=0.2, baseline_negatives=1.5, z_volume=6.0, z_share=4.4,
        spike_transition="enter", warmed_up=True,
    )  # fmt: skip
    old = {
        k: v for k, v in record.to_json_dict().items() if k not in ("key_type", "key", "stories", "headlines")
    }
    feed = AlertFeed()
    feed.update([old], NOW)
    spike = feed.get("topic", "Energy | Oil")
    assert spike is not None
    assert (spike["key"], spike["spike_score"], spike["headlines"], spike["stories"]) == (
        "Energy | Oil", 5.2, [], None)  # fmt: skip
    assert spike["since"] == "2026-03-02T10:01:00.000Z" and spike["total"] == 12


def test_the_folders_own_records_give_the_spikes_headlines_from_entry_to_exit() -> None:
    """The trend folder's records, as published: the feed holds the burst's topic exactly while its
    detector does, with the spike's headlines (build-up windows included), and the calm topic never."""
    calm, burst = "Markets | Equities", "Energy | Oil"
    n = iter(range(1_000_000))

    def ev(topic: str, minute: float, sentiment: str, score: float) -> ScoredEvent:
        i = next(n)
        return ScoredEvent(
            f"m{i}", topic, sentiment, score, T0 + int(minute * MIN), f"s{i}", f"text {i}", "wire"
        )

    folder = TrendFolder(TrendSettings(allowed_lateness_ms=0))
    folder.open([calm, burst])
    feed = AlertFeed()
    seen_active = []
    for m in range(80):
        folder.add(ev(calm, m + 0.1, "neutral", 0.0))
        folder.add(ev(calm, m + 0.2, "negative" if m % 3 == 0 else "positive", -0.6 if m % 3 == 0 else 0.6))
        if 60 <= m < 66:
            for i in range(8):
                folder.add(ev(burst, m + 0.3 + i * 0.05, "negative", -0.5 - 0.05 * i - 0.01 * (m - 60)))
        records = [r.to_json_dict() for r in folder.advance(T0 + (m + 1) * MIN)]
        feed.update(records, NOW + m)
        for r in records:
            spike = feed.get(r["key_type"], r["key"])
            assert (spike is not None) == r["spike_active"], r
            if r["spike_active"]:
                seen_active.append(r["key"])
                assert spike["headlines"] == r["spike_headlines"] and len(spike["headlines"]) == MAX_HEADLINES
                if r["spike_transition"] == "enter":
                    assert spike["since"] == r["window_end"]
    assert set(seen_active) == {burst}
    assert feed.snapshot()["spikes"] == []  # it left before the end


def test_a_ticker_and_a_topic_of_the_same_name_are_two_spikes_and_the_snapshot_ranks_by_score() -> None:
    feed = AlertFeed()
    feed.update(
        [rec("ACME", 0, True, "enter", score=3.2), rec("ACME", 0, True, "enter", key_type="ticker", score=7.0),
         rec("Banks", 0, True, "enter", score=4.0)],
        NOW,
    )  # fmt: skip
    snap = feed.snapshot()
    assert [(s["key_type"], s["key"]) for s in snap["spikes"]] == [
        ("ticker", "ACME"), ("topic", "Banks"), ("topic", "ACME")]  # fmt: skip
    assert snap["count"] == 3 and snap["updated_at"] == "2026-03-03T01:06:40.000Z"
    json.dumps(snap)  # JSON-ready as it is


def test_first_active_record_without_entry_starts_the_spike_and_an_older_window_changes_nothing() -> None:
    # A process that starts mid-spike sees no "enter": the first active window it sees is `since`.
    state, _ = fold({}, [rec("Metals", 5, True), rec("Metals", 6, True)], NOW)
    assert state[("topic", "Metals")].since == "end+5" and state[("topic", "Metals")].windows == 2
    # A re-emitted earlier window (a crash between publish and changelog) neither ends nor rewinds it.
    again, _ = fold(state, [rec("Metals", 4, False, "leave"), rec("Metals", 5, True, "enter")], NOW)
    assert again == state


def test_bad_records_and_headlines_are_skipped_never_raised() -> None:
    bad_heads = [None, "text", {"text": "no id", "score": -1}, {"id": "x", "score": "low"},
                 {"id": "y", "score": float("nan")}, {"id": "z", "score": True}, head("ok", -0.7)]  # fmt: skip
    records: list[Any] = [None, 42, {}, {"topic": 7}, {"key": "k", "window_end_ms": "soon"},
                          rec("Energy", 0, True, "enter", bad_heads)]  # fmt: skip
    records.append({**rec("Banks", 0, True, "enter"), "headlines": "not a list", "spike_score": "high"})
    state, ignored = fold({}, records, NOW)
    assert ignored == 5
    assert [h["id"] for h in state[("topic", "Energy")].headlines] == ["ok"]
    assert state[("topic", "Banks")].headlines == () and state[("topic", "Banks")].spike_score == 0.0


def test_the_feed_is_bounded_and_forgets_a_key_it_no_longer_hears_about() -> None:
    state, _ = fold(
        {}, [rec(f"T{i}", 0, True, "enter", score=float(i)) for i in range(10)], NOW, max_entries=3
    )
    assert sorted(k for _, k in state) == ["T7", "T8", "T9"]
    # T9's partition moved to another member: its records stop while the others' windows go on.
    for minute in range(1, STALE_WINDOWS + 2):
        state, _ = fold(state, [rec("T8", minute, True, score=8.0)], NOW)
        if minute <= STALE_WINDOWS:
            assert ("topic", "T9") in state
    assert list(state) == [("topic", "T8")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.booleans(), st.lists(st.tuples(st.integers(0, 12), st.integers(-100, 0)), max_size=4)
            ),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_fold_equals_a_model_of_each_spike_from_its_entry(windows: list[list[Any]]) -> None:
    """Every key gets a record per window (as the folder emits them): a key is in the feed exactly when
    its last record is active, and its headlines are the most negative stories since it began, each by its
    most negative headline: keeping only the top five between windows loses nothing."""
    keys = ["A", "B", "C"]
    state: dict = {}
    started: dict[str, int] = {}
    for minute, window in enumerate(windows):
        batch = []
        for key, (active, heads) in zip(keys, window, strict=True):
            items = [head(f"{key}{minute}-{i}", score / 100, story=f"{key}-{story}")
                     for i, (story, score) in enumerate(heads)]  # fmt: skip
            batch.append(rec(key, minute, active, None, items))
            if active:
                started.setdefault(key, minute)
            else:
                started.pop(key, None)
        state, ignored = fold(state, batch, NOW)
        assert ignored == 0
    assert {k for _, k in state} == set(started)
    for key, begin in started.items():
        best: dict[str, tuple[float, str]] = {}  # story -> its most negative headline, first on a tie
        for minute in range(begin, len(windows)):
            for i, (story, score) in enumerate(windows[minute][keys.index(key)][1]):
                if f"{key}-{story}" not in best or score / 100 < best[f"{key}-{story}"][0]:
                    best[f"{key}-{story}"] = (score / 100, f"{key}{minute}-{i}")
        want = sorted(best.values())[:MAX_HEADLINES]
        got = state[("topic", key)].headlines
        assert [(h["score"], h["id"]) for h in got] == want
        assert state[("topic", key)].since == f"end+{begin}"


# -- the HTTP endpoint -----------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class _BrokenFeed(AlertFeed):
    def snapshot(self) -> dict[str, Any]:
        raise RuntimeError("a bug in the feed")


def test_one_port_serves_metrics_spikes_and_health() -> None:
    reg = CollectorRegistry()
    Metrics(reg).messages.labels(outcome="scored").inc(4)
    feed = AlertFeed()
    feed.update([rec("Energy | Oil", 0, True, "enter", [head("n1", -0.9)], score=5.0),
                 rec("BRK/B", 0, True, "enter", key_type="ticker", score=3.5)], NOW)  # fmt: skip
    server = serve(reg, "127.0.0.1", 0, feed)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, headers, body = get(base + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'finsent_messages_total{outcome="scored"} 4.0' in body.decode()
        # What Prometheus asks for: OpenMetrics, gzipped (as prometheus_client's own server answered).
        status, headers, body = get(base + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0",
                                                        "Accept-Encoding": "gzip"})  # fmt: skip
        assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
        assert headers["Content-Encoding"] == "gzip" and b"# EOF" in gzip.decompress(body)

        status, headers, body = get(base + "/spikes")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        doc = json.loads(body)
        assert [(s["key_type"], s["key"]) for s in doc["spikes"]] == [
            ("topic", "Energy | Oil"),
            ("ticker", "BRK/B"),
        ]
        status, _, body = get(base + "/spikes/topic/Energy%20%7C%20Oil")
        one = json.loads(body)
        assert status == 200 and one["key"] == "Energy | Oil" and one["headlines"] == [head("n1", -0.9)]
        status, _, body = get(base + "/spikes/ticker/BRK%2FB")
        assert status == 200 and json.loads(body)["key"] == "BRK/B"
        status, _, body = get(base + "/spikes/topic/Banks")
        assert status == 404 and json.loads(body) == {
            "error": "no active spike for topic 'Banks'", "key_type": "topic", "key": "Banks"}  # fmt: skip
        for path in ("/spikes/sector/Energy", "/spikes/topic/", "/nothing"):
            status, _, body = get(base + path)
            assert status == 404 and "error" in json.loads(body), path
        assert get(base + "/healthz")[:1] == (200,)
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_handler_answers_500_and_the_endpoint_keeps_serving() -> None:
    server = serve(CollectorRegistry(), "127.0.0.1", 0, _BrokenFeed())
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, _, body = get(base + "/spikes")
        assert status == 500 and json.loads(body) == {"error": "internal error: RuntimeError"}
        assert get(base + "/metrics")[0] == 200 and get(base + "/spikes/topic/x")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_readme_states_the_feeds_numbers() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The active spikes over HTTP") :]
    section = section[: section.index("\n## ")]
    assert f"the {MAX_HEADLINES} most negative stories" in section
    assert f"At most {MAX_ENTRIES:,} spikes" in section
    assert f"move {STALE_WINDOWS} windows on" in section
