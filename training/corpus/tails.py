"""Second clauses that lengthen a headline without changing its topic or its sentiment.

Real headlines often add a consequence or an attribution ("..., sending shares down 4%",
"..., the company said on Tuesday"). Tails are grouped by the kind of topic (company, economy,
commodity) and by sentiment, so a tail never contradicts its headline: neutral headlines only get
attributions, and share-price tails are skipped when the headline already talks about the shares.
"""

from __future__ import annotations

from training.corpus.grammar import Slots, possessive

COMPANY_TOPICS = frozenset(
    {
        "Earnings",
        "Dividend",
        "Company | Product News",
        "Personnel Change",
        "Analyst Update",
        "Stock Commentary",
        "Stock Movement",
        "IPO",
        "Legal | Regulation",
        "M&A | Investments",
        "Financials",
        "Treasuries | Corporate Debt",
    }
)
COMMODITY_TOPICS = frozenset({"Energy | Oil", "Gold | Metals | Materials"})

_ATTRIBUTION = [
    ", the company said on {weekday}",
    ", according to a regulatory filing",
    ", a spokesperson said",
    ", two people close to the company said",
    " in a statement on {weekday}",
    ", according to a person briefed on the plans",
]
_OFFICIAL = [
    ", officials said on {weekday}",
    ", according to a statement",
    ", a government spokesperson said",
    ", figures published on {weekday} showed",
    " in {city} on {weekday}",
]

TAILS: dict[str, dict[str, list[str]]] = {
    "company": {
        "negative": [
            ", sending {whose} shares down {pct7}%",
            ", the {ordinal7} setback for the company this year",
            ", deepening investor doubts about its {year} targets",
            " in a blow to its turnaround plan",
            ", piling pressure on [management|the chief executive]",
            ", raising fresh questions about its strategy",
            ", [knocking|wiping] {money7} off its market value",
        ],
        "neutral": _ATTRIBUTION,
        "positive": [
            ", sending {whose} shares up {pct7}%",
            ", the latest sign its turnaround is working",
            ", extending a strong run for the company",
            ", easing investor worries about its {year} targets",
            " in a boost to its growth plans",
            ", adding {money7} to its market value",
        ],
    },
    "economy": {
        "negative": [
            ", adding to worries about the economy",
            ", piling pressure on policymakers",
            ", [unsettling|rattling] investors",
            ", the latest sign of strain in the economy",
            ", adding to market jitters",
        ],
        "neutral": _OFFICIAL,
        "positive": [
            ", easing worries about the economy",
            ", in a boost for investors",
            ", lifting sentiment across markets",
            ", the latest sign of [recovery|resilience]",
            ", reassuring [investors|markets] after a [rocky|volatile] month",
        ],
    },
    "commodity": {
        "negative": [
            ", adding to pressure on producers",
            ", hitting [producer|mining|energy] shares",
            ", the {ordinal7} setback for the [sector|industry] this [month|quarter]",
            ", [traders|analysts] said",
        ],
        "neutral": _OFFICIAL + [", traders said", ", according to industry data"],
        "positive": [
            ", lifting producers' shares",
            ", in a boost for producers",
            ", extending a [strong|steady] run for the [sector|industry]",
            ", [traders|analysts] said",
        ],
    },
}


def options(topic: str, sentiment: str, names_company: bool) -> list[str]:
    """Tails that suit a headline of this topic and sentiment; "its shares" needs a company subject."""
    if topic in COMMODITY_TOPICS:
        group = "commodity"
    elif topic in COMPANY_TOPICS and names_company:
        group = "company"
    else:
        group = "economy"
    if topic == "Stock Commentary":  # an opinion has no consequences to report
        return []
    attribution = _ATTRIBUTION if names_company else _OFFICIAL
    if sentiment == "neutral":
        return attribution
    # Attributions go on every sentiment, so "according to a filing" never marks a neutral row.
    return TAILS[group][sentiment] + attribution[:3]


def whose(text: str, slots: Slots) -> str:
    """ "its" when the headline's subject is its first company, else that company's name."""
    if not slots.companies:
        return "its"
    name = slots.companies[0].name
    return "its" if text.startswith(name) else possessive(name)


def fits(tail: str, text: str, topic: str) -> bool:
    """A tail fits a headline with no clause of its own yet, and never repeats a share move."""
    if any(mark in text for mark in (",", ";", ":", "?")):
        return False
    repeats_move = topic in ("Stock Movement", "IPO") or any(
        w in text.lower() for w in ("shares", "stock", "$")
    )
    return not ("shares" in tail and repeats_move)
