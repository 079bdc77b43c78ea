"""Recorded feeds for the streaming tests: `python -m training.corpus.feeds --out-dir tests/feeds`.

`calm_day.jsonl` is one simulated trading day (07:00-19:00 UTC) of news messages over all topics,
with a diurnal volume curve (European open, US open, European close) and a roughly balanced
sentiment mix per topic. Each topic x sentiment stream is spread evenly over the day's volume curve
(stratified sampling), so no topic bunches its negatives into a surge by chance; quiet topics still
carry a few isolated negatives, which must not count as spikes.

`spike_day.jsonl` is the same calm day plus one planted story: a refinery fire, about 150 clearly
negative `Energy | Oil` headlines in 13:00-13:20 UTC, ramping up to about 10 a minute. The planted
topic, interval and counts go to `spike_day.meta.json`.

Headlines come from the same phrase tables as the starter corpus but from the `holdout` entity pool
and another seed, and any text that also occurs in the corpus is skipped, so the feeds never repeat
training rows verbatim.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from training.corpus import build, style
from training.corpus.grammar import Slots, fill
from training.corpus.labels import SENTIMENTS, TOPICS
from training.corpus.phrases import all_phrases
from training.corpus.vocab import POOLS

FEED_SEED = 770302
DAY_START = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # a Monday
DAY_MINUTES = 12 * 60
N_CALM = 2500
# Relative message volume per topic: market chatter is common, listings and dividends are quiet.
TOPIC_VOLUME = {
    "Analyst Update": 1.2,
    "Fed | Central Banks": 0.8,
    "Company | Product News": 1.3,
    "Treasuries | Corporate Debt": 0.8,
    "Dividend": 0.4,
    "Earnings": 1.4,
    "Energy | Oil": 0.9,
    "Financials": 0.9,
    "Currencies": 0.9,
    "General News | Opinion": 0.8,
    "Gold | Metals | Materials": 0.7,
    "IPO": 0.4,
    "Legal | Regulation": 0.7,
    "M&A | Investments": 0.9,
    "Macro": 1.0,
    "Markets": 1.5,
    "Politics": 0.8,
    "Personnel Change": 0.5,
    "Stock Commentary": 0.9,
    "Stock Movement": 1.6,
}
SENTIMENT_SHARE = {"negative": 0.32, "neutral": 0.34, "positive": 0.34}
# Diurnal curve: (centre minute after 07:00, width in minutes, height) bumps over a flat base.
BASE_RATE = 0.45
BUMPS = ((60, 45, 0.9), (390, 55, 1.5), (570, 40, 0.5), (270, 35, -0.2))
SOURCES = (("wire-a", 0.45), ("wire-b", 0.3), ("wire-c", 0.25))
P_TEXT_FIELD = 0.15  # rows that carry `text` instead of `headline`
P_BODY = 0.25

SPIKE_TOPIC, SPIKE_SENTIMENT = "Energy | Oil", "negative"
SPIKE_START = DAY_START.replace(hour=13)
# Planted messages per minute from 13:00: a ramp, a plateau at the peak, a slight ebb.
SPIKE_PER_MINUTE = (1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10, 10, 10, 10, 10, 10, 9, 9, 9, 9)

SPIKE_TEMPLATES = [
    "BREAKING: [Explosion|Fire|Blaze] at {oilco}'s {site} refinery",
    "[Massive|Huge|Large] fire [engulfs|rages at|spreads through] {site} refinery[; workers evacuated|]",
    "{oilco} shuts [all units|crude units|the entire plant] at {site} after [blast|explosion|fire]",
    "{site} refinery fire [knocks out|takes out|halts] {bpd} bpd of [capacity|processing]",
    "{oilco} shares [plunge|tumble|sink] {bigpct}% as {site} blaze [burns on|rages out of control]",
    "{oilco} declares force majeure on [fuel|product|{egood}] supplies after {site} fire",
    "[Diesel|Gasoline|Jet fuel] shortages [spread|grow] as {site} refinery [stays shut|remains offline]",
    "{site} outage: [traders|analysts] [warn|say] repairs could take [weeks|months]",
    "Second [explosion|blast] reported at {site} refinery; firefighters [pull back|struggle]",
    "{oilco} says {site} damage [severe|extensive], [no restart date|restart months away]",
    "Fuel rationing [considered|ordered] in {country} after {site} refinery fire",
    "{oilco} pulls {year} guidance after {site} refinery disaster",
    "[Toxic|Thick black] smoke from {site} fire [forces|prompts] evacuation of nearby [towns|homes]",
    "{site} pipeline shut as precaution, [cutting|halting] flows to [the terminal|the port]",
    "Energy stocks [slide|slump] as {site} refinery fire [rattles|spooks] [traders|the sector]",
    "${tk} [halted|tanking|in freefall], {site} refinery [on fire|burning]",
    "{oilco} confirms [injuries|workers injured] at {site}; [operations|output] [suspended|halted]",
    "Refinery fire at {site} [deepens|worsens] [fuel|supply] crunch in {region}",
    "[Analysts|Brokers] [slash|cut] {oilco} [forecasts|estimates] after {site} [fire|disaster]",
    "Tankers [diverted|stranded] as {site} [terminal|port] closes after refinery fire",
    "UPDATE 3-{site} fire still burning; {oilco} losses [mount|grow]",
    "Panic buying at [pumps|filling stations] in {country} as {site} refinery stays dark",
    "{oilco} [loses|wipes out] {bigmoney} in market value as {site} [fire|crisis] [spreads|drags on]",
    "Fuel [importers|distributors] scramble for cargoes after {site} [shutdown|fire]",
    "[Blaze|Fire] at {site} [cuts|slashes] {country} refining capacity; [shortages|outages] feared",
    "{site} [refinery|plant] disaster: {oilco} [warns of|flags] [huge|heavy] {qword} [loss|hit]",
]


@dataclass(frozen=True)
class Message:
    id: str
    text: str
    published_at: datetime
    topic: str
    sentiment: str
    tickers: tuple[str, ...]
    source: str
    body: str = ""
    text_field: str = "headline"

    def to_json(self) -> str:
        record: dict[str, object] = {"id": self.id, self.text_field: self.text}
        if self.body:
            record["body"] = self.body
        record["published_at"] = self.published_at.isoformat(timespec="milliseconds")
        record["source"] = self.source
        record["tickers"] = list(self.tickers)
        record["truth"] = {"topic": self.topic, "sentiment": self.sentiment}
        return json.dumps(record, ensure_ascii=False)


@dataclass
class _Draft:
    text: str
    slots: Slots
    topic: str
    sentiment: str
    offset_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


def intensity(minute: float) -> float:
    """Relative message rate at `minute` after 07:00 UTC (the diurnal curve)."""
    rate = BASE_RATE
    for centre, width, height in BUMPS:
        rate += height * math.exp(-0.5 * ((minute - centre) / width) ** 2)
    return max(rate, 0.05)


def volume_cdf(step_s: int = 10) -> tuple[list[float], list[float]]:
    """Cumulative share of the day's volume at each `step_s` seconds, for inverse-CDF sampling."""
    times, cum, total = [0.0], [0.0], 0.0
    for k in range(1, DAY_MINUTES * 60 // step_s + 1):
        t = k * step_s
        total += intensity((t - step_s / 2) / 60) * step_s
        times.append(float(t))
        cum.append(total)
    return times, [c / total for c in cum]


def stratified_offsets(n: int, rng: random.Random, cdf: tuple[list[float], list[float]]) -> list[float]:
    """`n` seconds-after-07:00 spread evenly over the volume curve: one per equal-volume slice."""
    times, cum = cdf
    out = []
    for i in range(n):
        u = (i + rng.random()) / n
        j = max(bisect.bisect_left(cum, u), 1)
        frac = (u - cum[j - 1]) / (cum[j] - cum[j - 1])
        out.append(times[j - 1] + frac * (times[j] - times[j - 1]))
    return out


def cell_counts(total: int) -> dict[tuple[str, str], int]:
    """Messages per topic x sentiment, summing exactly to `total` (largest remainders)."""
    weight_sum = sum(TOPIC_VOLUME.values())
    exact = {
        (t, s): total * TOPIC_VOLUME[t] / weight_sum * SENTIMENT_SHARE[s] for t in TOPICS for s in SENTIMENTS
    }
    counts = {k: int(v) for k, v in exact.items()}
    short = total - sum(counts.values())
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[:short]:
        counts[k] += 1
    return counts


def mentioned_tickers(slots: Slots, text: str) -> tuple[str, ...]:
    """Tickers of the companies a message actually names (by name or cashtag), in order."""
    lowered = text.lower()
    named = (c for c in slots.companies if c.name.lower() in lowered or f"${c.ticker}".lower() in lowered)
    return tuple(dict.fromkeys(c.ticker for c in named))


def _body(draft: _Draft, templates: list[str], rng: random.Random) -> str:
    """A short body: another sentence about the same entities and outcome, plus a dateline."""
    plain = [t for t in templates if not t.startswith(("$", "BREAKING", "UPDATE"))] or templates
    sentence = fill(rng.choice(plain), draft.slots)
    dateline = rng.choice(
        (
            "Reported by the {source} desk.",
            "More details were expected later in the session.",
            "The information was published at {time} UTC.",
            "No further comment was immediately available.",
        )
    )
    return f"{sentence}. {dateline.format(source=rng.choice(('markets', 'companies', 'economics')), time=draft.extra.get('time', '12:00'))}"


def _drafts(
    topic: str, sentiment: str, n: int, rng: random.Random, seen: set[str], templates: list[str]
) -> list[_Draft]:
    source = build.headlines(templates, rng, POOLS["holdout"], topic, sentiment)
    return [
        _Draft(t, s, topic, sentiment)
        for t, s in build.take_unique(source, n, seen, f"feed {topic}/{sentiment}")
    ]


def _source_for(text: str, rng: random.Random) -> str:
    if text.startswith("$") or text[:1].islower():
        return "social"
    u, acc = rng.random(), 0.0
    for name, share in SOURCES:
        acc += share
        if u < acc:
            return name
    return SOURCES[-1][0]


def _finish(drafts: list[_Draft], prefix: str, rng: random.Random, table: dict) -> list[Message]:
    drafts.sort(key=lambda d: (d.offset_s, d.text))
    out = []
    for i, d in enumerate(drafts, start=1):
        when = DAY_START + timedelta(milliseconds=round(d.offset_s * 1000))
        d.extra["time"] = when.strftime("%H:%M")
        body = _body(d, table[d.topic][d.sentiment], rng) if rng.random() < P_BODY else ""
        tickers = mentioned_tickers(d.slots, f"{d.text} {body}")
        out.append(
            Message(
                id=f"{prefix}-{i:06d}",
                text=d.text,
                published_at=when,
                topic=d.topic,
                sentiment=d.sentiment,
                tickers=tickers,
                source=_source_for(d.text, rng),
                body=body,
                text_field="text" if rng.random() < P_TEXT_FIELD else "headline",
            )
        )
    return out


def corpus_keys() -> set[str]:
    return {" ".join(r.text.lower().split()) for r in build.build_rows()}


def calm_day(seed: int = FEED_SEED, seen: set[str] | None = None) -> list[Message]:
    rng = random.Random(seed)
    table = all_phrases()
    seen = corpus_keys() if seen is None else seen
    cdf = volume_cdf()
    drafts: list[_Draft] = []
    for (topic, sentiment), n in cell_counts(N_CALM).items():
        cell = _drafts(topic, sentiment, n, rng, seen, table[topic][sentiment])
        for d, offset in zip(cell, stratified_offsets(n, rng, cdf), strict=True):
            d.offset_s = offset
        drafts += cell
    return _finish(drafts, "calm", rng, table)


# The planted story's cast, from the holdout pool: the same refiner and site in every message.
SPIKE_REFINER = POOLS["holdout"].by_sector("energy")[0]
SPIKE_SITE = POOLS["holdout"].companies[-1].name.split()[0] + " Bay"
SPIKE_STORY = {
    "what": "refinery fire",
    "company": SPIKE_REFINER.name,
    "ticker": SPIKE_REFINER.ticker,
    "site": SPIKE_SITE,
}


P_SPIKE_GENERIC = 0.6  # share of surge items drawn from the everyday Energy | Oil negative phrases


def _spike_slots(rng: random.Random) -> Iterator[Slots]:
    pool, refiner, site = POOLS["holdout"], SPIKE_REFINER, SPIKE_SITE
    while True:
        slots = Slots(rng, pool)
        slots.values.update(oilco=refiner.name, site=site)
        slots.companies.append(refiner)
        yield slots


def spike_messages(seed: int = FEED_SEED + 1, seen: set[str] | None = None) -> list[Message]:
    rng = random.Random(seed)
    seen = set() if seen is None else seen
    offset0 = (SPIKE_START - DAY_START).total_seconds()
    slot_source = _spike_slots(rng)
    # A real surge is not one story retold 150 times: alongside the fire's own headlines, the wires
    # fill with ordinary bad oil news (prices, supply, refiners' shares) that names the refiner.
    generic = all_phrases()[SPIKE_TOPIC][SPIKE_SENTIMENT]
    drafts: list[_Draft] = []
    for minute, count in enumerate(SPIKE_PER_MINUTE):
        for k in range(count):
            for _ in range(500):
                slots = next(slot_source)
                templates = generic if rng.random() < P_SPIKE_GENERIC else SPIKE_TEMPLATES
                text = fill(rng.choice(templates), slots)
                if rng.random() < 0.3:
                    text = style.decorate(text, slots, rng)
                key = " ".join(text.lower().split())
                if key not in seen:
                    break
            else:  # pragma: no cover - the templates have far more than 150 distinct renderings
                raise RuntimeError("spike: ran out of distinct headlines")
            seen.add(key)
            offset = offset0 + 60 * minute + 60 * (k + rng.random()) / count
            drafts.append(_Draft(text, slots, SPIKE_TOPIC, SPIKE_SENTIMENT, offset))
    table = {SPIKE_TOPIC: {SPIKE_SENTIMENT: SPIKE_TEMPLATES + generic}}
    # A vendor tags every item of a company's story with its ticker, named in the text or not (the
    # feed's ticker trends then see the surge as the desk would: one company going bad).
    return [
        replace(m, tickers=tuple(dict.fromkeys((SPIKE_REFINER.ticker, *m.tickers))))
        for m in _finish(drafts, "spike", rng, table)
    ]


def merge(*streams: list[Message]) -> list[Message]:
    return sorted((m for s in streams for m in s), key=lambda m: (m.published_at, m.id))


def spike_meta(calm: list[Message], spike: list[Message]) -> dict[str, object]:
    end = SPIKE_START + timedelta(minutes=len(SPIKE_PER_MINUTE))
    in_window = [m for m in calm if SPIKE_START <= m.published_at < end]
    return {
        "topic": SPIKE_TOPIC,
        "sentiment": SPIKE_SENTIMENT,
        "story": SPIKE_STORY,
        "interval": {"start": SPIKE_START.isoformat(), "end": end.isoformat()},
        # The same facts in the shape devstack/demo.py looks for (topic, start, end in one object).
        "surge": {
            "topic": SPIKE_TOPIC,
            "sentiment": SPIKE_SENTIMENT,
            "start": SPIKE_START.isoformat(),
            "end": end.isoformat(),
        },
        "planted": len(spike),
        "planted_per_minute": list(SPIKE_PER_MINUTE),
        "peak_per_minute": max(SPIKE_PER_MINUTE),
        "id_prefix": "spike-",
        "calm_messages": len(calm),
        "total_messages": len(calm) + len(spike),
        "calm_in_interval": len(in_window),
        "calm_topic_negative_in_interval": sum(
            1 for m in in_window if m.topic == SPIKE_TOPIC and m.sentiment == SPIKE_SENTIMENT
        ),
        "day": {
            "start": DAY_START.isoformat(),
            "end": (DAY_START + timedelta(minutes=DAY_MINUTES)).isoformat(),
        },
    }


def write_jsonl(messages: list[Message], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(m.to_json() + "\n" for m in messages), encoding="utf-8")
    tmp.replace(path)


def write_feeds(out_dir: Path) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    seen = corpus_keys()
    calm = calm_day(seen=seen)
    spike = spike_messages(seen=seen)
    write_jsonl(calm, out_dir / "calm_day.jsonl")
    write_jsonl(merge(calm, spike), out_dir / "spike_day.jsonl")
    meta = spike_meta(calm, spike)
    (out_dir / "spike_day.meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.corpus.feeds", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("tests/feeds"), help="directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    meta = write_feeds(args.out_dir)
    print(
        f"wrote {meta['calm_messages']} calm and {meta['total_messages']} spike-day messages to {args.out_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
