"""Entity vocabulary for the generated headlines.

Companies, people, products, brokers and funds are invented here. Countries, currencies,
commodities, indices and central banks are real, used only as facts. The invented names come in two
disjoint pools: `train` builds the starter corpus and `holdout` builds the recorded feeds, so a model
that memorised company names from training gains nothing on the feeds.
"""

from __future__ import annotations

from dataclasses import dataclass

# Invented company roots. Split into pools by position (see `_split`), never by randomness, so the
# pools are stable when a root is added at the end.
_ROOTS = """
Arvellon Brisca Corvane Daltrey Elmsford Fenwright Galvora Halbrook Istrella Jorvik Kestrel Lumara
Marrowind Nexora Orvane Pellwood Quorvix Rendale Solvane Tarquin Ulverston Vantrel Wexmoor Xantara
Yarrowby Zelmont Ashgrove Bellcourt Carrowmore Dunmere Everhold Fairlend Greyfold Hollivant Ironvale
Junevar Kilbride Larkspur Mossgiel Northam Oakhurst Pemberly Quillon Redmarsh Stonebury Thistledown
Umberlin Valecrest Westerly Yorvane Zephyra Alder Birchmont Calloway Drayvex Embergate Foxley Glenarm
Harrowgate Inverley Jessamine Kilmaren Lowther Mirabel Netherby Ostrava Pinecroft Quenby Rosslyn
Saltmere Tavener Underhill Verity Whitlock Axtrelle Brightwater Coldharbour Duskfield Eastbrook Fernhill
Goldcrest Highmoor Islay Jasperton Kettering Linwood Marlowe Norcastle Orchardly Penrose Quayside
Ravenhill Silverburn Tollgate Upland Virelle Wrenfield Aldervane Bramcote Cindral Delvora Estrion
Fallowmere Grantley Hexley Ivorine Jandel Korvell Lyndhurst Mercant Novalis Opaline Praxton Quintel
Rylestone Sablewood Trevallion Ulvar Veltrix Warrenby Xylo Yelverton Zorvale Amberlin Bexford Cantrell
Dorvane Eskdale Fintry Gorran Helvar Illyra Jemsby Kelvane Lorrimer Mendrel Nyland Orlestane Pryce
Quarrendon Rothwell Selwyn Torrance Uxley Vesper Wendal Ystrad Zandor Abernet Brackley Corwen
Dexmoor Elvaston Felgate Gilmour Haddon Ixworth Jolliffe Kenley Lathom Morvyn Nettlecombe Ollerton
Pardoe Quince Ruthven Stourley Tiverly Ullswater Vantrose Wymond Yelland Zennor
""".split()

# Sectors and the name suffixes that fit them; the slot kinds in the phrase grammar map onto these.
SECTOR_SUFFIXES: dict[str, tuple[str, ...]] = {
    "tech": ("Systems", "Technologies", "Software", "Semiconductor", "Networks", "Labs", "Digital"),
    "consumer": ("Brands", "Foods", "Retail", "Apparel", "Stores", "Beverages", "Home"),
    "pharma": ("Therapeutics", "Pharma", "Biosciences", "Health", "Medical"),
    "industrial": ("Industries", "Aerospace", "Motors", "Logistics", "Engineering", "Machinery"),
    "energy": ("Energy", "Petroleum", "Oil & Gas", "Resources", "Drilling", "Refining"),
    "materials": ("Mining", "Metals", "Minerals", "Steel", "Chemicals"),
    "bank": ("Bank", "Bancorp", "Financial", "Savings", "Trust"),
    "insurer": ("Insurance", "Assurance", "Mutual"),
    "telecom": ("Telecom", "Power", "Utilities", "Communications"),
    "airline": ("Airways", "Air", "Airlines"),
}
SECTORS: tuple[str, ...] = tuple(SECTOR_SUFFIXES)

_FIRST_NAMES = """
Maria James Aiko Daniel Priya Oluwaseun Ingrid Tomasz Lucia Rafael Mei Johan Amara Pieter Sofia
Kwame Elena Hamid Chloe Mateo Anya Samuel Noor Henrik Leila Marcus Yuki Fatima Gareth Camila
Dmitri Hannah Rohan Isabel Stefan Adaeze Victor Freya Tariq Helena Bruno Keiko Omar Claire Arjun
Beatriz Nikolai Grace Emeka Astrid
""".split()

_SURNAMES = """
Okafor Lindqvist Brandt Moreau Castellano Hargreave Nakashima Petrov Delacroix Abernathy Solberg
Varga Kimura Oyelaran Fairbanks Mendel Kowalczyk Rasmussen Tremaine Quiroga Ashdown Bellamy
Carrow Dunstan Ellery Farrant Gilchrist Hollins Ingleby Jarrett Kesteven Lockhart Merriman Nettleton
Orpington Prentiss Quarles Ravensworth Stellan Thackery Upshaw Vickery Wetherby Yardley Zabini
Achterberg Bosworth Cardew Delamere Eversley Fitzhugh Gorringe Haverford Illingworth Jessop Kingsley
Lanyon Marchetti Norrell Oduya Pennington Quennell Rushworth Sandoval Tregarthen Underwood Valdes
Whitcombe Ysander Zeller
""".split()

# Invented product stems: gadgets, software platforms, vehicles, drugs.
_PRODUCT_STEMS = """
Nimbus Vireo Lumen Cadence Solace Strata Meridian Halo Quanta Aurora Zenith Pulse Tessera Orbit
Vanta Kinetic Lyra Sable Onyx Prism Atlas Echo Nova Ember Fathom Cinder Rune Helix Drift Beacon
""".split()
_DRUGS = """
zelvatinib oravimab cortuzumab lemparisib tavodrexin fenuvostat quilorabine mivestrant
dapraxolide sunetrogen velpotinib arkomadine brelizumab tiroclastat nexavorin palumetide
""".split()

_BROKER_ROOTS = """
Hartwell Brightmoor Calder Denholm Ellacott Fordyce Garside Hambleton Ingram Kelso Langdale Mortlake
Newbold Osgood Paxton Radcliffe Sheringham Tunstall Wardlow Ashby
""".split()
_BROKER_SUFFIXES = ("Securities", "Capital Markets", "Research", "& Co", "Partners", "Equity Research")
_FUND_SUFFIXES = ("Capital", "Partners", "Investment Management", "Equity", "Holdings", "Asset Management")

# Real facts, shared by both pools.
COUNTRIES = (
    "Germany",
    "France",
    "Japan",
    "Brazil",
    "India",
    "Canada",
    "Australia",
    "Mexico",
    "South Korea",
    "Indonesia",
    "Spain",
    "Italy",
    "Poland",
    "Turkey",
    "South Africa",
    "Chile",
    "Norway",
    "Sweden",
    "the UK",
    "the US",
    "China",
    "Vietnam",
    "Nigeria",
    "Saudi Arabia",
    "Argentina",
    "Thailand",
)
REGIONS = (
    "the euro zone",
    "Asia",
    "Europe",
    "Latin America",
    "emerging markets",
    "the Gulf",
    "North America",
)
CITIES = (
    "Frankfurt",
    "Tokyo",
    "London",
    "Singapore",
    "Sao Paulo",
    "Toronto",
    "Sydney",
    "Mumbai",
    "Houston",
    "Seoul",
    "Madrid",
    "Milan",
    "Warsaw",
    "Johannesburg",
    "Oslo",
    "Chicago",
    "Dubai",
    "Jakarta",
)
CENTRAL_BANKS = (
    "the Fed",
    "the Federal Reserve",
    "the ECB",
    "the Bank of England",
    "the Bank of Japan",
    "the Bank of Canada",
    "the Reserve Bank of Australia",
    "the Swiss National Bank",
    "Norges Bank",
    "the Riksbank",
    "the Reserve Bank of India",
    "Brazil's central bank",
    "the People's Bank of China",
    "Banxico",
    "the Reserve Bank of New Zealand",
    "Poland's central bank",
)
# A central bank and its currency, for headlines that tie the two together.
CB_CURRENCY = (
    ("the Fed", "dollar"),
    ("the ECB", "euro"),
    ("the Bank of England", "sterling"),
    ("the Bank of Japan", "yen"),
    ("the Bank of Canada", "Canadian dollar"),
    ("the Reserve Bank of Australia", "Australian dollar"),
    ("the Swiss National Bank", "Swiss franc"),
    ("Norges Bank", "Norwegian crown"),
    ("the Riksbank", "Swedish crown"),
    ("the Reserve Bank of India", "rupee"),
    ("Banxico", "peso"),
    ("Brazil's central bank", "real"),
    ("the Reserve Bank of New Zealand", "New Zealand dollar"),
    ("Poland's central bank", "zloty"),
)
CURRENCIES = (
    "dollar",
    "euro",
    "yen",
    "sterling",
    "Swiss franc",
    "yuan",
    "rupee",
    "Australian dollar",
    "Canadian dollar",
    "peso",
    "real",
    "won",
    "lira",
    "rand",
    "zloty",
    "Norwegian crown",
)
FX_PAIRS = (
    "EUR/USD",
    "USD/JPY",
    "GBP/USD",
    "AUD/USD",
    "USD/CAD",
    "USD/CHF",
    "EUR/GBP",
    "USD/CNH",
    "EUR/JPY",
    "USD/INR",
)
INDICES = (
    "S&P 500",
    "Nasdaq",
    "Dow",
    "FTSE 100",
    "DAX",
    "CAC 40",
    "Nikkei",
    "Stoxx 600",
    "Hang Seng",
    "Kospi",
    "ASX 200",
    "TSX",
    "Sensex",
    "Russell 2000",
    "Euro Stoxx 50",
    "IBEX 35",
)
METALS = (
    "gold",
    "silver",
    "copper",
    "platinum",
    "palladium",
    "aluminium",
    "nickel",
    "zinc",
    "lithium",
    "iron ore",
    "cobalt",
    "tin",
)
CRUDES = ("Brent", "WTI", "US crude", "Brent crude", "oil", "crude")
ENERGY_GOODS = ("natural gas", "diesel", "gasoline", "jet fuel", "LNG", "heating oil", "thermal coal")
SECTOR_WORDS = (
    "tech",
    "bank",
    "chipmaker",
    "airline",
    "retail",
    "energy",
    "utility",
    "miner",
    "automaker",
    "insurer",
    "homebuilder",
    "pharma",
    "telecom",
    "media",
    "real estate",
    "defence",
)
ROLES = (
    "CEO",
    "chief executive",
    "CFO",
    "finance chief",
    "COO",
    "chair",
    "president",
    "chief strategy officer",
    "general counsel",
    "chief technology officer",
)
AGENCIES = (
    "the SEC",
    "the FTC",
    "the DOJ",
    "the CMA",
    "the European Commission",
    "the FCA",
    "antitrust regulators",
    "the CFTC",
    "BaFin",
    "the state attorney general",
)


@dataclass(frozen=True)
class Company:
    name: str
    ticker: str
    sector: str


@dataclass(frozen=True)
class Pool:
    """One disjoint set of invented names; real facts live in module constants."""

    companies: tuple[Company, ...]
    people: tuple[str, ...]
    products: tuple[str, ...]
    drugs: tuple[str, ...]
    brokers: tuple[str, ...]
    funds: tuple[str, ...]

    def by_sector(self, sector: str) -> tuple[Company, ...]:
        return tuple(c for c in self.companies if c.sector == sector)

    def names(self) -> tuple[str, ...]:
        """Every invented string in the pool (for masking names when measuring variety)."""
        out: list[str] = []
        for c in self.companies:
            out += [c.name, c.ticker, c.name.split()[0]]
        out += (
            list(self.people) + list(self.products) + list(self.drugs) + list(self.brokers) + list(self.funds)
        )
        for p in self.people:
            out.append(p.split()[-1])
        return tuple(out)


def _split(items: list[str], holdout_every: int) -> tuple[list[str], list[str]]:
    """Every `holdout_every`-th item goes to the holdout pool; the rest train."""
    train = [x for i, x in enumerate(items) if i % holdout_every != holdout_every - 1]
    hold = [x for i, x in enumerate(items) if i % holdout_every == holdout_every - 1]
    return train, hold


def _tickers(roots: list[str]) -> list[str]:
    """Deterministic, unique 3-4 letter tickers built from the roots' letters."""
    taken: set[str] = set()
    out: list[str] = []
    for root in roots:
        letters = [ch for ch in root.upper() if ch.isalpha()]
        consonants = [letters[0]] + [ch for ch in letters[1:] if ch not in "AEIOU"]
        candidates = [
            "".join(consonants[:4]),
            "".join(letters[:4]),
            "".join(consonants[:3]),
            "".join(letters[:3]),
        ]
        candidates += ["".join(letters[:2]) + ch for ch in "XQZKVJ"]
        ticker = next((c for c in candidates if len(c) >= 3 and c not in taken), None)
        if ticker is None:  # pragma: no cover - the root list is fixed; this guards edits to it
            raise ValueError(f"no free ticker for company root {root!r}")
        taken.add(ticker)
        out.append(ticker)
    return out


def _companies(roots: list[str], tickers: list[str]) -> tuple[Company, ...]:
    out = []
    for i, (root, ticker) in enumerate(zip(roots, tickers, strict=True)):
        sector = SECTORS[i % len(SECTORS)]
        suffixes = SECTOR_SUFFIXES[sector]
        out.append(Company(f"{root} {suffixes[(i // len(SECTORS)) % len(suffixes)]}", ticker, sector))
    return tuple(out)


def _build_pools() -> dict[str, Pool]:
    tickers = dict(zip(_ROOTS, _tickers(_ROOTS), strict=True))
    roots_t, roots_h = _split(_ROOTS, 4)
    sur_t, sur_h = _split(_SURNAMES, 4)
    prod_t, prod_h = _split(_PRODUCT_STEMS, 4)
    drug_t, drug_h = _split(_DRUGS, 4)
    brok_t, brok_h = _split(_BROKER_ROOTS, 4)
    pools = {}
    for key, roots, surnames, stems, drugs, brokers in (
        ("train", roots_t, sur_t, prod_t, drug_t, brok_t),
        ("holdout", roots_h, sur_h, prod_h, drug_h, brok_h),
    ):
        people = tuple(
            f"{_FIRST_NAMES[(i * 7) % len(_FIRST_NAMES)]} {s}" for i, s in enumerate(surnames)
        ) + tuple(f"{_FIRST_NAMES[(i * 11 + 3) % len(_FIRST_NAMES)]} {s}" for i, s in enumerate(surnames))
        products = tuple(
            f"{stem} {model}" for stem in stems for model in ("X", "Pro", "2", "Max", "One", "S")
        )
        funds = tuple(f"{b} {_FUND_SUFFIXES[i % len(_FUND_SUFFIXES)]}" for i, b in enumerate(roots[::5]))
        pools[key] = Pool(
            companies=_companies(roots, [tickers[r] for r in roots]),
            people=people,
            products=products,
            drugs=tuple(drugs),
            brokers=tuple(
                f"{b} {_BROKER_SUFFIXES[i % len(_BROKER_SUFFIXES)]}" for i, b in enumerate(brokers)
            ),
            funds=funds,
        )
    return pools


POOLS: dict[str, Pool] = _build_pools()
