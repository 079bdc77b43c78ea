"""`python -m bench.reprint_feed`: write tests/feeds/reprints.jsonl, a feed with known reprints.

Every headline here is written for this project (companies and people invented). Each story is
published once and then reprinted the way a firehose repeats news: wire updates (`UPDATE 2-`, with a
clause appended), flashes in capitals, retweets with a link, syndication with a source credit, a
copy that drops a word. Stories come in families that share a template and differ only in the
company, the quarter or the number, so grouping them would be a false merge. `truth_story` names
the story each message belongs to. A fixed seed gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SEED = 11
OUT = Path(__file__).resolve().parents[1] / "tests" / "feeds" / "reprints.jsonl"
DAY = datetime(2026, 3, 4, 7, 0, tzinfo=timezone.utc)

# (headline, clause an update appends, tickers). Families: consecutive seeds with one template.
STORIES: list[tuple[str, str, list[str]]] = [
    ("Halvorsen Foods third-quarter profit beats estimates", "raises full-year outlook", ["HLVF"]),
    ("Quarry Point Mining third-quarter profit beats estimates", "copper volumes up", ["QPMN"]),
    ("Tellwater Bank third-quarter profit misses estimates", "loan losses climb", ["TWBK"]),
    ("Orrin Aerospace third-quarter profit misses estimates", "engine delays weigh", ["ORAE"]),
    ("Brightmoor Retail cuts annual sales forecast as shoppers pull back", "shares slide 9%", ["BMRT"]),
    ("Castellan Apparel cuts annual sales forecast as shoppers pull back", "inventory builds", ["CSAP"]),
    ("Fenwick Energy to buy Larkspur Gas for $4.2 billion in cash", "deal adds Permian acreage", ["FNWE"]),
    ("Fenwick Energy to buy Marlow Pipelines for $1.1 billion", "midstream push continues", ["FNWE"]),
    ("Sable Creek Pharma drug fails late-stage heart trial", "stock halves premarket", ["SCPH"]),
    ("Sable Creek Pharma wins approval for migraine drug", "launch planned this summer", ["SCPH"]),
    ("Ostrander Motors recalls 310,000 SUVs over brake fault", "no injuries reported", ["OSTM"]),
    ("Ostrander Motors recalls 48,000 pickups over airbag sensor", "dealers to replace part", ["OSTM"]),
    ("Central bank holds rates steady, signals cuts later this year", "bond yields dip", []),
    ("Central bank raises rates by a quarter point to fight inflation", "first hike in a year", []),
    ("Oil jumps 4% after fire shuts Gulf Coast refinery", "gasoline futures surge", []),
    ("Oil slides 3% as inventories build for a fourth week", "demand worries grow", []),
    ("Gold hits record high as dollar weakens", "silver follows", []),
    ("Gold falls from record as traders take profits", "dollar steadies", []),
    ("Euro zone inflation eases to 2.1% in February", "core prices sticky", []),
    ("US jobless claims rise to highest since August", "labour market cools", []),
    ("US retail sales drop 0.8% in January, worst in a year", "cold weather blamed", []),
    ("Kestrel Software shares soar on cloud revenue surge", "analysts lift targets", ["KSTL"]),
    ("Kestrel Software chief executive Dana Whitlock to step down", "search under way", ["KSTL"]),
    ("Pelham Airlines grounds fleet after IT outage", "thousands stranded", ["PLHA"]),
    ("Pelham Airlines pilots vote to strike over pay", "walkout could start in May", ["PLHA"]),
    (
        "Regulator fines Ashgrove Bank $250 million over money laundering lapses",
        "bank to tighten checks",
        ["ASHB"],
    ),
    ("Regulator fines Corbel Securities $40 million over trade reporting", "firm settles", ["CRBL"]),
    ("Norland Telecom agrees to sell tower unit to infrastructure fund", "proceeds to cut debt", ["NRTL"]),
    ("Wexford Chemicals plant explosion halts production in Texas", "cause under investigation", ["WXCH"]),
    ("Bitcoin tumbles below $60,000 as exchange halts withdrawals", "crypto stocks drop", []),
    ("Bitcoin climbs above $70,000 on fund inflows", "ether gains too", []),
    ("Thornbury Homes orders fall 12% as mortgage rates bite", "builder stocks lower", ["THBH"]),
    ("Greyhaven Insurance sees $900 million in storm losses", "reinsurers under pressure", ["GRHV"]),
    ("Lindqvist Shipping suspends Red Sea transits after attack", "freight rates jump", ["LQSH"]),
    ("Amberline Chips to build $12 billion plant in Arizona", "state grants incentives", ["AMBC"]),
    ("Amberline Chips delays Arizona plant by a year", "equipment shortages cited", ["AMBC"]),
    ("Stockholm-listed Vintra Medical upgraded to buy at Harlow Partners", "target raised", ["VNTR"]),
    ("Vintra Medical downgraded to sell at Harlow Partners", "valuation stretched", ["VNTR"]),
    ("Copper rallies to two-year high on Chile mine strike", "supply fears build", []),
    ("Wheat futures surge after drought hits Black Sea harvest", "corn follows higher", []),
    ("Yen weakens past 155 per dollar, traders watch for intervention", "finance ministry warns", []),
    ("Treasury yields jump after hot inflation report", "rate cut bets pared", []),
    ("Marchetti Group files for bankruptcy protection", "lenders to take control", ["MRCG"]),
    ("Dunmore Brewing to cut 1,200 jobs in restructuring", "plants to close", ["DNBR"]),
    ("Dunmore Brewing to cut 300 jobs at Ohio site", "production moves south", ["DNBR"]),
    ("Hollis Pay suffers data breach affecting 2 million customers", "card numbers not exposed", ["HLPY"]),
    ("Calloway Foods recalls peanut butter over salmonella risk", "stores pull jars", ["CLWF"]),
    ("Oakridge REIT slashes dividend as office vacancies climb", "shares hit low", ["OKRT"]),
    ("Strand Energy discovers large gas field off Namibia", "partners jump", ["STRE"]),
    ("Bellweather Capital raises $6 billion for new buyout fund", "largest to date", []),
    ("Emerging market stocks hit six-month low on China slowdown fears", "currencies slip", []),
    ("Tamsin Robotics prices IPO above range, raising $800 million", "trading starts Thursday", ["TMSN"]),
    ("Tamsin Robotics shares jump 40% in market debut", "valuation tops $9 billion", ["TMSN"]),
    ("Harrowgate Utilities wins approval for 9% rate increase", "customers to pay more", ["HRGU"]),
    ("Solvane Batteries shares crash after short seller report", "company denies claims", ["SLVB"]),
    ("Winterbourne Pharma to buy Elmstead Bio in $3 billion deal", "oncology pipeline grows", ["WNTP"]),
    ("Crestline Railways derailment spills chemicals in Ohio town", "residents evacuated", ["CRRW"]),
    ("Ferrand Steel raises prices for second month", "demand holds up", ["FRST"]),
    ("Ferrand Steel idles blast furnace as demand weakens", "workers furloughed", ["FRST"]),
    ("Nasdaq falls 2% as tech selloff deepens", "chip stocks lead losses", []),
]

# How a syndicating desk rewords a headline: one verb or phrase swapped for its own.
REWORD = {
    "beats": "tops", "misses": "falls short of", "cuts": "lowers", "jumps": "surges", "slides": "drops",
    "falls": "slips", "soar": "rocket", "to buy": "agrees to buy", "fines": "penalises", "raises": "lifts",
    "recalls": "is recalling", "hits": "reaches", "tumbles": "plunges", "climbs": "rises",
    "suspends": "halts", "delays": "postpones", "wins": "gets", "to cut": "will cut", "drop": "fall",
}  # fmt: skip
HANDLES = ["@marketdesk", "@tapewatch", "@ledgerflash", "@fintwit_news", "@pitnotes"]
OUTLETS = ["wire-a", "wire-b", "syndicate", "social", "blog"]


def _update(head: str, clause: str, rng: random.Random) -> str:
    return f"UPDATE {rng.randint(1, 3)}-{head}; {clause}"


def _reword(head: str) -> str:
    for old, new in REWORD.items():
        if f" {old} " in f" {head} ":
            return f" {head} ".replace(f" {old} ", f" {new} ", 1).strip()
    return head


def _variants(head: str, clause: str, rng: random.Random) -> list[tuple[str, str]]:
    """(text, source) for each kind of reprint of one story."""
    words = head.split()
    drop = rng.randrange(1, len(words))
    return [
        (_reword(head), "syndicate"),  # reworded by another desk: the hardest kind here
        (f"{_reword(head)} - sources", "wire-b"),
        (head, "syndicate"),
        (_update(head, clause, rng), "wire-a"),
        (f"BREAKING: {head.upper()}", "wire-b"),
        (f"RT {rng.choice(HANDLES)}: {head} https://t.example/{rng.randrange(16**6):06x}", "social"),
        (f"{head} - sources", "wire-b"),
        (f"{head} (Reuters)", "syndicate"),
        (f"{head.rstrip('.')}. https://news.example/a/{rng.randrange(10**6)}", "blog"),
        (" ".join(words[:drop] + words[drop + 1 :]), "blog"),  # a rewrite that drops one word
        (f"{head} via {rng.choice(HANDLES)}", "social"),
    ]


def build(seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for n, (head, clause, tickers) in enumerate(STORIES):
        t0 = DAY + timedelta(minutes=rng.randrange(0, 10 * 60))
        copies = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10])  # reprints after the original
        kinds = _variants(head, clause, rng)
        picked = [(head, "wire-a")] + [kinds[rng.randrange(len(kinds))] for _ in range(copies)]
        for k, (text, source) in enumerate(picked):
            at = t0 + timedelta(minutes=0 if k == 0 else rng.randrange(1, 180))
            row: dict[str, Any] = {
                "text": text,
                "published_at": at.isoformat().replace("+00:00", "Z"),
                "source": source,
            }
            if tickers and rng.random() < 0.5:
                row["tickers"] = tickers
            row["truth_story"] = f"s{n:02d}"
            rows.append(row)
    rows.sort(key=lambda r: (r["published_at"], r["truth_story"]))
    return [{"id": f"rp{i:04d}", **r} for i, r in enumerate(rows)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reprint_feed", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    rows = build(args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    stories = len({r["truth_story"] for r in rows})
    print(f"{args.out}: {len(rows)} messages, {stories} stories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
