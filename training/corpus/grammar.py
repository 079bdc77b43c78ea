"""A tiny phrase grammar: `[a|b|c]` picks one option, `{slot}` draws an entity or a number.

A template such as ``"{co} [lifts|raises] {year} outlook[ after {qword} beat|]"`` expands to one
headline per call. Choices nest; an empty option makes a phrase optional. Slots are filled by `Slots`,
which keeps one value per slot name within a headline (so ``{co}`` twice names the same company and
``{tk}`` is that company's ticker) and draws ordered pairs for ``{x_lo}``/``{x_hi}``, so "beat" templates
can say "EPS $1.12 vs $0.98 expected" and never the reverse. Everything draws from the `random.Random`
passed in, so a fixed seed reproduces the corpus exactly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from training.corpus import vocab
from training.corpus.vocab import Company, Pool

_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:?!.%])")
_PLURAL_POSSESSIVE = re.compile(r"\b([A-Z][a-z]*s)'s\b")

# Slot kind -> company sectors it may draw from.
COMPANY_KINDS: dict[str, tuple[str, ...]] = {
    "co": ("tech", "consumer", "pharma", "industrial", "telecom", "airline", "energy", "materials"),
    "tech": ("tech",),
    "retailer": ("consumer",),
    "pharma": ("pharma",),
    "maker": ("industrial",),
    "airline": ("airline",),
    "telco": ("telecom",),
    "oilco": ("energy",),
    "miner": ("materials",),
    "bank": ("bank",),
    "insurer": ("insurer",),
    "lender": ("bank", "insurer"),
}

# How a headline names each company sector ("bank stocks", "an airline").
SECTOR_WORD = {
    "tech": "tech", "consumer": "retail", "pharma": "pharma", "industrial": "industrial", "energy": "energy",
    "materials": "mining", "bank": "bank", "insurer": "insurance", "telecom": "telecom", "airline": "airline",
}  # fmt: skip
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_ORDINALS = ("first", "second", "third", "fourth")
_SMALL_WORDS = ("two", "three", "four", "five", "six")
_SITE_SUFFIXES = (" Bay", " Point", " Ridge", " Creek", " Basin", " Harbour", " Flats", " Head")
# Plausible levels per currency pair, so a headline never quotes USD/JPY at 1.08.
_FX_LEVELS = {
    "EUR/USD": (1.02, 1.22, 4),
    "USD/JPY": (128.0, 162.0, 2),
    "GBP/USD": (1.18, 1.40, 4),
    "AUD/USD": (0.61, 0.74, 4),
    "USD/CAD": (1.30, 1.45, 4),
    "USD/CHF": (0.78, 0.95, 4),
    "EUR/GBP": (0.82, 0.90, 4),
    "USD/CNH": (6.9, 7.4, 4),
    "EUR/JPY": (150.0, 178.0, 2),
    "USD/INR": (82.0, 91.0, 2),
}


def _money(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"${rng.randint(12, 95) * 10} million"
    return f"${rng.uniform(1.1, 9.8):.1f} billion"


def _number(formatted: str) -> float:
    return float(re.sub(r"[^\d.]", "", formatted))


def _pair(base: str, rng: random.Random) -> tuple[str, str]:
    """An ordered (low, high) pair for `{base_lo}`/`{base_hi}`, strictly ordered after rounding."""
    while True:
        lo, hi = _raw_pair(base, rng)
        if _number(lo) < _number(hi):
            return lo, hi


def _raw_pair(base: str, rng: random.Random) -> tuple[str, str]:
    if base == "eps":
        lo = rng.uniform(0.05, 3.4)
        return f"${lo:.2f}", f"${lo + rng.uniform(0.03, 0.5):.2f}"
    if base == "target":
        lo = rng.randint(12, 320)
        return f"${lo}", f"${round(lo * rng.uniform(1.08, 1.45))}"
    if base == "rev":
        lo = rng.uniform(0.8, 40.0)
        return f"${lo:.2f} billion", f"${lo * rng.uniform(1.03, 1.2):.2f} billion"
    if base == "pct":
        lo = rng.uniform(0.5, 8.0)
        return f"{lo:.1f}", f"{lo + rng.uniform(0.3, 4.0):.1f}"
    if base == "rate":
        lo = rng.randint(2, 22) * 0.25
        return f"{lo:.2f}", f"{lo + rng.choice((0.25, 0.25, 0.5)):.2f}"
    if base == "cpi":
        lo = rng.uniform(1.4, 6.5)
        return f"{lo:.1f}", f"{lo + rng.uniform(0.1, 1.2):.1f}"
    if base == "k":
        lo = rng.randint(40, 210)
        return f"{lo},000", f"{lo + rng.randint(25, 140)},000"
    if base == "div":
        lo = rng.uniform(0.05, 2.2)
        return f"${lo:.2f}", f"${lo * rng.uniform(1.04, 1.3):.2f}"
    if base == "price":
        lo = rng.uniform(6, 60)
        return f"${lo:.0f}", f"${lo + rng.randint(1, 4):.0f}"
    if base == "money":
        lo = rng.uniform(0.4, 6.0)
        return f"${lo:.1f} billion", f"${lo * rng.uniform(1.2, 2.0):.1f} billion"
    raise KeyError(base)


_NUMBERS: dict[str, Callable[[random.Random], str]] = {
    "pct": lambda r: f"{r.uniform(0.6, 9.9):.1f}",
    "bigpct": lambda r: str(r.randint(10, 48)),
    "smallpct": lambda r: f"{r.uniform(0.1, 1.9):.1f}",
    "bp": lambda r: str(r.choice((25, 25, 25, 50, 50, 75))),
    "ybp": lambda r: str(r.randint(3, 28)),
    "rate": lambda r: f"{r.randint(2, 23) * 0.25:.2f}",
    "money": _money,
    "bigmoney": lambda r: f"${r.uniform(1.5, 48):.1f} billion",
    "price": lambda r: f"${r.uniform(4, 380):.2f}",
    "q": lambda r: r.choice(("Q1", "Q2", "Q3", "Q4")),
    "qword": lambda r: f"{r.choice(_ORDINALS)}-quarter",
    "quarter": lambda r: f"{r.choice(_ORDINALS)} quarter",
    "year": lambda r: r.choice(("2026", "2026", "2027")),
    "month": lambda r: r.choice(_MONTHS),
    "weekday": lambda r: r.choice(_WEEKDAYS),
    "date": lambda r: f"{r.choice(_MONTHS)} {r.randint(1, 28)}",
    "n": lambda r: str(r.randint(2, 12)),
    "bign": lambda r: str(r.randint(14, 95)),
    "word_n": lambda r: r.choice(_SMALL_WORDS),
    "jobs": lambda r: f"{r.randint(3, 60) * 100:,}",
    "stake": lambda r: str(r.randint(4, 49)),
    "yld": lambda r: f"{r.uniform(3.1, 5.3):.2f}",
    "oilp": lambda r: f"${r.uniform(56, 106):.2f}",
    "goldp": lambda r: f"${r.randint(2050, 3450):,}",
    "div": lambda r: f"${r.uniform(0.05, 2.4):.2f}",
    "shares": lambda r: f"{r.randint(2, 60)} million",
    "bpd": lambda r: f"{r.randint(2, 30) * 25},000",
    "time": lambda r: f"{r.randint(6, 20):02d}:{r.choice((0, 15, 30, 45)):02d}",
    "mult": lambda r: f"{r.uniform(1.3, 4.5):.1f}",
    "half": lambda r: r.choice(("first-half", "second-half")),
    "pastyear": lambda r: str(r.randint(2008, 2024)),
    "ordinal": lambda r: r.choice(("second", "third", "fourth", "fifth")),
    "pmi_low": lambda r: f"{r.uniform(42.0, 49.4):.1f}",
    "pmi_mid": lambda r: f"{r.uniform(49.6, 50.4):.1f}",
    "pmi_high": lambda r: f"{r.uniform(50.6, 58.0):.1f}",
    "growth": lambda r: f"{r.uniform(1.2, 4.5):.1f}",
    "rater": lambda r: r.choice(("Moody's", "S&P", "Fitch")),
    "rating": lambda r: r.choice(("BBB", "BBB+", "A-", "A", "BB+", "BBB-")),
    # Seeking-Alpha-style result flashes: "beats by $0.07", "revenue misses by $41M".
    "epsgap": lambda r: f"${r.randint(1, 30) / 100:.2f}",
    "revgap": lambda r: f"${r.randint(3, 95) * 10}M" if r.random() < 0.7 else f"${r.uniform(1.0, 3.0):.2f}B",
    "fy": lambda r: r.choice(("FY26", "FY27", "FY2026")),
    "maturity": lambda r: str(r.randint(2029, 2036)),
    "contracts": lambda r: str(r.randint(2, 60) * 50),
    "strike": lambda r: str(r.randint(8, 90) * 5),
}

_FACTS: dict[str, tuple[str, ...]] = {
    "country": vocab.COUNTRIES,
    "region": vocab.REGIONS,
    "city": vocab.CITIES,
    "cb": vocab.CENTRAL_BANKS,
    "ccy": vocab.CURRENCIES,
    "index": vocab.INDICES,
    "metal": vocab.METALS,
    "crude": vocab.CRUDES,
    "egood": vocab.ENERGY_GOODS,
    "sector": vocab.SECTOR_WORDS,
    "role": vocab.ROLES,
    "agency": vocab.AGENCIES,
}


class Slots:
    """Fills the slots of one headline; one instance per headline."""

    def __init__(self, rng: random.Random, pool: Pool) -> None:
        self.rng = rng
        self.pool = pool
        self.values: dict[str, str] = {}
        self.companies: list[Company] = []  # in order of first mention, for tickers and feed metadata
        self._company_by_slot: dict[str, Company] = {}

    def _company(self, slot: str, kind: str) -> str:
        used = {c.name for c in self.companies}
        choices = [c for s in COMPANY_KINDS[kind] for c in self.pool.by_sector(s) if c.name not in used]
        company = self.rng.choice(choices)
        self.companies.append(company)
        self._company_by_slot[slot] = company
        return company.name

    def _ticker(self, slot: str) -> str:
        # {tk} belongs to the first company slot, {tk2} to the second; a template that names no
        # company still gets a ticker (a tweet-style "$ABCD" item about an unnamed company).
        index = 0 if slot == "tk" else int(slot[2:]) - 1
        if index < len(self.companies):
            return self.companies[index].ticker
        return self._company(f"_anon{index}", "co") and self.companies[-1].ticker

    def get(self, slot: str) -> str:
        if slot in self.values:
            return self.values[slot]
        kind = slot.rstrip("0123456789")
        rng = self.rng
        if kind in COMPANY_KINDS:
            value = self._company(slot, kind)
        elif kind == "tk":
            value = self._ticker(slot)
        elif kind == "cosector":  # the sector word for the headline's (first) company
            if not self.companies:
                self.get("co")
            return SECTOR_WORD[self.companies[0].sector]
        elif kind == "first":  # the company the headline named first (for appended clauses)
            return self.companies[0].name if self.companies else self._company(slot, "co")
        elif kind.endswith(("_lo", "_hi")):
            base = kind[:-3]
            suffix = slot[len(kind) :]
            lo, hi = _pair(base, rng)
            self.values[f"{base}_lo{suffix}"], self.values[f"{base}_hi{suffix}"] = lo, hi
            return self.values[slot]
        elif kind == "pair":
            value = rng.choice(vocab.FX_PAIRS)
            low, high, digits = _FX_LEVELS[value]
            self.values["fxlvl"] = f"{rng.uniform(low, high):.{digits}f}"
        elif kind == "fxlvl":
            self.get("pair")
            return self.values["fxlvl"]
        elif kind in ("cbccy", "cbname"):
            cb, ccy = rng.choice(vocab.CB_CURRENCY)
            self.values["cbname"], self.values["cbccy"] = cb, ccy
            return self.values[slot]
        elif kind == "person":
            used = set(self.values.values())
            value = rng.choice([p for p in self.pool.people if p not in used])
        elif kind == "product":
            value = rng.choice(self.pool.products)
        elif kind == "drug":
            value = rng.choice(self.pool.drugs)
        elif kind == "broker":
            used = set(self.values.values())
            value = rng.choice([b for b in self.pool.brokers if b not in used])
        elif kind == "fund":
            value = rng.choice(self.pool.funds)
        elif kind == "site":
            root = rng.choice(self.pool.companies).name.split()[0]
            value = root + rng.choice(_SITE_SUFFIXES)
        elif kind in _FACTS:
            used = set(self.values.values())
            value = rng.choice([x for x in _FACTS[kind] if x not in used])
        elif kind in _NUMBERS:
            value = _NUMBERS[kind](rng)
        else:
            raise KeyError(f"unknown slot {{{slot}}}")
        self.values[slot] = value
        return value


def possessive(name: str) -> str:
    return name + "'" if name.endswith("s") else name + "'s"


def expand_choices(template: str, rng: random.Random) -> str:
    """Resolve every `[a|b]` group, innermost first."""
    while True:
        match = _CHOICE.search(template)
        if match is None:
            return template
        option = rng.choice(match.group(1).split("|"))
        template = template[: match.start()] + option + template[match.end() :]


def tidy(text: str) -> str:
    """Collapse spaces left by empty options and capitalise the first letter."""
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = text.replace(",,", ",").replace(" ,", ",")
    text = _PLURAL_POSSESSIVE.sub(r"\1'", text)  # "Airways's" -> "Airways'"
    return text[:1].upper() + text[1:] if text else text


def render(template: str, rng: random.Random, pool: Pool) -> tuple[str, Slots]:
    """One headline from one template; returns the text and the slots it used."""
    slots = Slots(rng, pool)
    return fill(template, slots), slots


def fill(template: str, slots: Slots, *, clause: bool = False) -> str:
    """Expand a template with an existing headline's slots (same company, same numbers).

    `clause=True` is for a continuation appended to a headline: no capital, leading space kept.
    """
    text = _SLOT.sub(lambda m: slots.get(m.group(1)), expand_choices(template, slots.rng))
    return text if clause else tidy(text)


def template_slots(template: str) -> set[str]:
    """Slot names a template can use (for validating the phrase tables)."""
    return set(_SLOT.findall(template))
