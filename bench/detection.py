"""`python -m bench.detection` (`make bench-alerts`): detection delay and false alarms, per topic and per
ticker, on the recorded feeds.

Every run goes through `pipeline.replay.replay_direct`: the daemon's own parsing, story grouping,
ticker re-keying, taxonomy, windows and detector, without a broker. Two kinds of scorer:

- **truth** (the detector alone): each message gets its feed's truth labels, so what is measured is
  the detector, not the model. For every topic in turn, the spike day's surge (150 negative items in
  20 minutes, ramping to 10 a minute) is relabelled to that topic and planted in the calm day, in two
  settings: beside the topic's own calm news, and with the topic silent all day (its calm news
  removed). For tickers, the same surge is tagged with each of the calm day's busiest tickers in turn,
  and with a ticker the day never mentions.
- **model** (the default artifact, `--model`, int8): the recorded spike day as it is (surge on
  Energy | Oil, tagged with the refiner's ticker), and the calm day, scored by the model.

Figures: delay = when the daemon can first publish an active spike record for the key (the end of
its first active window plus the allowed lateness), minus the surge's start; false alarms = spike
entries on keys without a planted surge, per key-day (12 hours of feed count as one day here), on the
calm day and on every planted run. The markdown table goes into docs/BENCHMARKS.md between
`bench:detection` markers; the raw figures to bench/results/detection.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.records import Origin, parse_message
from pipeline.replay import DirectResult, replay_direct
from pipeline.trends import TrendSettings

REPO = Path(__file__).resolve().parents[1]
FEEDS = REPO / "tests" / "feeds"
DOC = REPO / "docs" / "BENCHMARKS.md"
OUT = REPO / "bench" / "results" / "detection.json"
BEGIN = "<!-- bench:detection:begin (written by `make bench-alerts`; edit bench/detection.py) -->"
END = "<!-- bench:detection:end -->"
NEW_TICKER = "NWCO"  # a ticker the calm day never mentions
PROBS = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


@dataclass(frozen=True)
class TruthPrediction:
    topic: str
    topic_confidence: float
    sentiment: str
    sentiment_probs: dict[str, float]
    score: float


class TruthScorer:
    """A ScorerLike that answers with the feed's truth labels (looked up by the parsed text)."""

    version = "truth"
    provider = "none"
    variant = "truth"

    def __init__(self, rows: Iterable[dict[str, Any]], topics: Sequence[str]) -> None:
        self.topic_labels = tuple(topics)
        self.labels: dict[str, tuple[str, str]] = {}
        for i, row in enumerate(rows):
            item = parse_message(json.dumps(row).encode(), Origin("truth", 0, i, 0), max_bytes=1 << 20)
            text = getattr(item, "text", None)
            if text is not None:
                self.labels[text] = (row["truth"]["topic"], row["truth"]["sentiment"])

    def score(self, texts: Sequence[str]) -> list[TruthPrediction]:
        out = []
        for text in texts:
            topic, sentiment = self.labels[text]
            probs = {s: 1.0 if s == sentiment else 0.0 for s in PROBS}
            out.append(TruthPrediction(topic, 1.0, sentiment, probs, PROBS[sentiment]))
        return out


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FEEDS / name).read_text().splitlines() if line.strip()]


def ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def run(rows: list[dict[str, Any]], scorer: Any, trend: TrendSettings, tmp: Path) -> DirectResult:
    path = tmp / "feed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: ms(r["published_at"]))))
    return replay_direct(path, scorer, trend, now_ms=ms("2026-03-03T00:00:00+00:00"))


def entries(result: DirectResult, kind: str) -> Counter[str]:
    """Spike entries per key (a re-emitted window counts once)."""
    seen = {
        (r.topic, r.window_start_ms)
        for r in result.trends
        if r.key_type == kind and r.spike_transition == "enter"
    }
    return Counter(key for key, _ in seen)


def delay_min(result: DirectResult, kind: str, key: str, surge_ms: int, trend: TrendSettings) -> float | None:
    active = [
        r.window_end_ms for r in result.trends if r.key_type == kind and r.topic == key and r.spike_active
    ]
    if not active:
        return None
    return (min(active) + trend.allowed_lateness_ms - surge_ms) / 60_000


def busiest_tickers(rows: list[dict[str, Any]], n: int) -> list[str]:
    counts = Counter(t for r in rows for t in r.get("tickers", []))
    return [t for t, _ in counts.most_common(n)]


def _summary(values: list[float | None]) -> dict[str, Any]:
    hit = sorted(v for v in values if v is not None)
    return {
        "runs": len(values),
        "detected": len(hit),
        "median_min": statistics.median(hit) if hit else None,
        "max_min": max(hit) if hit else None,
    }


def measure(model: Path | None, n_tickers: int) -> dict[str, Any]:
    trend = TrendSettings()
    calm, spike_day = load("calm_day.jsonl"), load("spike_day.jsonl")
    meta = json.loads((FEEDS / "spike_day.meta.json").read_text())
    surge = [r for r in spike_day if r["id"].startswith(meta["id_prefix"])]
    surge_ms = ms(meta["surge"]["start"])
    topics = sorted({r["truth"]["topic"] for r in calm})
    hours = (ms(meta["day"]["end"]) - ms(meta["day"]["start"])) / 3_600_000
    out: dict[str, Any] = {"feed_hours": hours, "settings": "TrendSettings() defaults"}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        truth = TruthScorer(calm + surge, topics)
        base = run(calm, truth, trend, tmp)
        calm_alarms = {k: sum(entries(base, k).values()) for k in ("topic", "ticker")}
        n_keys = {"topic": len(topics), "ticker": len({t for r in calm for t in r.get("tickers", [])})}
        per_topic: dict[str, dict[str, Any]] = {}
        others = {"topic": 0, "ticker": 0}
        runs = {"topic": 0, "ticker": 0}
        for topic in topics:
            planted = [{**r, "truth": {**r["truth"], "topic": topic}, "tickers": []} for r in surge]
            scorer = TruthScorer(calm + planted, topics)
            row = {}
            for setting, background in (
                ("beside calm news", calm),
                ("after silence", [r for r in calm if r["truth"]["topic"] != topic]),
            ):
                result = run(background + planted, scorer, trend, tmp)
                row[setting] = delay_min(result, "topic", topic, surge_ms, trend)
                others["topic"] += sum(n for k, n in entries(result, "topic").items() if k != topic)
                runs["topic"] += 1
            per_topic[topic] = row
        per_ticker: dict[str, float | None] = {}
        for ticker in [*busiest_tickers(calm, n_tickers), NEW_TICKER]:
            planted = [{**r, "tickers": [ticker]} for r in surge]
            result = run(calm + planted, TruthScorer(calm + planted, topics), trend, tmp)
            per_ticker[ticker] = delay_min(result, "ticker", ticker, surge_ms, trend)
            others["ticker"] += sum(n for k, n in entries(result, "ticker").items() if k != ticker)
            runs["ticker"] += 1
        out["truth"] = {
            "per_topic": per_topic,
            "per_ticker": per_ticker,
            "calm_day_alarms": calm_alarms,
            "keys": n_keys,
            "alarms_on_other_keys_in_planted_runs": others,
            "planted_runs": runs,
            "topic_beside_calm": _summary([r["beside calm news"] for r in per_topic.values()]),
            "topic_after_silence": _summary([r["after silence"] for r in per_topic.values()]),
            "ticker": _summary(list(per_ticker.values())),
        }
        if model is not None:
            from models.runtime import load_scorer

            scorer = load_scorer(str(model), provider="cpu", variant="int8")
            spiked = run(spike_day, scorer, trend, tmp)
            quiet = [
                r
                for r in spike_day
                if r["id"].startswith(meta["id_prefix"]) or r["truth"]["topic"] != meta["topic"]
            ]
            silent = run(quiet, scorer, trend, tmp)
            calm_model = run(calm, scorer, trend, tmp)
            ticker = meta["story"]["ticker"]
            out["model"] = {
                "model": f"{scorer.version} ({scorer.variant})",
                "topic": meta["topic"],
                "ticker": ticker,
                "topic_delay_min": delay_min(spiked, "topic", meta["topic"], surge_ms, trend),
                "topic_delay_after_silence_min": delay_min(silent, "topic", meta["topic"], surge_ms, trend),
                "ticker_delay_min": delay_min(spiked, "ticker", ticker, surge_ms, trend),
                "other_alarms_spike_day": {
                    "topic": sum(n for k, n in entries(spiked, "topic").items() if k != meta["topic"]),
                    "ticker": sum(n for k, n in entries(spiked, "ticker").items() if k != ticker),
                },
                "calm_day_alarms": {k: sum(entries(calm_model, k).values()) for k in ("topic", "ticker")},
                "calm_day_tickers": len({r.topic for r in calm_model.trends if r.key_type == "ticker"}),
            }
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # topic names hold "|": escaped, or the table splits them


def _m(v: float | None) -> str:
    return "missed" if v is None else f"{v:.1f}"


def markdown(res: dict[str, Any]) -> str:
    t = res["truth"]
    days = res["feed_hours"] / 24
    lines = [
        BEGIN,
        "",
        "**Detector alone** (truth labels; `TrendSettings()` defaults; delay = first active spike record "
        "publishable, minus the surge's start, in minutes):",
        "",
        "| planted on | runs | detected | median delay | worst delay |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, key in (
        ("a topic, beside its calm news", "topic_beside_calm"),
        ("a topic silent all day", "topic_after_silence"),
        ("a ticker (10 busiest + one never seen)", "ticker"),
    ):
        s = t[key]
        lines.append(
            f"| {name} | {s['runs']} | {s['detected']} | {_m(s['median_min'])} | {_m(s['max_min'])} |"
        )
    lines += ["", "| topic | delay beside calm news | delay after silence |", "| --- | ---: | ---: |"]
    for topic, row in t["per_topic"].items():
        lines.append(f"| {_cell(topic)} | {_m(row['beside calm news'])} | {_m(row['after silence'])} |")
    lines += ["", "| ticker | delay |", "| --- | ---: |"]
    for ticker, v in t["per_ticker"].items():
        lines.append(f"| {ticker} | {_m(v)} |")
    ca, keys, oth, runs = (
        t["calm_day_alarms"],
        t["keys"],
        t["alarms_on_other_keys_in_planted_runs"],
        t["planted_runs"],
    )
    lines += [
        "",
        f"False alarms: on the calm day, {ca['topic']} topic spikes over {keys['topic']} topics and "
        f"{ca['ticker']} ticker spikes over {keys['ticker']} tickers ({res['feed_hours']:.0f} hours); in the "
        f"planted runs, {oth['topic']} spikes on other topics over {runs['topic']} runs × {keys['topic'] - 1} "
        f"topics and {oth['ticker']} on other tickers over {runs['ticker']} runs "
        f"(per key-day: topics {oth['topic'] / max(1, runs['topic'] * (keys['topic'] - 1) * days):.4f}, "
        f"tickers {oth['ticker'] / max(1, runs['ticker'] * keys['ticker'] * days):.4f}).",
    ]
    m = res.get("model")
    if m:
        lines += [
            "",
            f"**Model in the loop** (`{m['model']}`, the recorded spike day and calm day): {_cell(m['topic'])} "
            f"delay {_m(m['topic_delay_min'])} min ({_m(m['topic_delay_after_silence_min'])} min with the "
            f"topic's calm news removed); ticker {m['ticker']} delay {_m(m['ticker_delay_min'])} min; other "
            f"spikes on the spike day: {m['other_alarms_spike_day']['topic']} topic, "
            f"{m['other_alarms_spike_day']['ticker']} ticker; on the calm day: "
            f"{m['calm_day_alarms']['topic']} topic, {m['calm_day_alarms']['ticker']} ticker spikes "
            f"({m['calm_day_tickers']} tickers seen).",
        ]
    lines += ["", END]
    return "\n".join(lines)


def update_doc(doc: Path, block: str) -> None:
    text = doc.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="artifacts/latest", help="artifact for the model-in-the-loop part ('-' to skip)"
    )
    ap.add_argument("--tickers", type=int, default=10, help="busiest calm-day tickers to plant on")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md as it is")
    args = ap.parse_args(argv)
    model = None if args.model == "-" else Path(args.model)
    if model is not None and not (model / "manifest.json").exists():
        print(
            f"bench.detection: no artifact at {model}; model part skipped (make train-export)",
            file=sys.stderr,
        )
        model = None
    res = measure(model, args.tickers)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    block = markdown(res)
    print(block)
    if not args.no_doc:
        update_doc(DOC, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
