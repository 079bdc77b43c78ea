"""The starter corpus and the recorded feeds: reproducible, valid, varied, and shaped as the tests need.

Everything here reads the committed files and compares them with what the generator produces now,
so an edit to the phrase tables that is not followed by `make corpus` (and the feeds command) fails.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from datetime import datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path

import pytest

from training.corpus import build, feeds, grammar, handwritten, real_eval, style, vocab
from training.corpus.labels import SENTIMENTS, TOPICS
from training.corpus.phrases import all_phrases
from training.corpus.vocab import POOLS

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "starter_corpus.csv"
FEEDS = ROOT / "tests" / "feeds"

# Thresholds, set after measuring the committed corpus (4,480 rows, 3,767 fully labelled; the
# smallest fully labelled cell has 42 rows; 98% of rows have a shape of their own, links included;
# the most repeated shape occurs 4 times, every cell has at least 42 shapes). They leave room for
# edits, not for a corpus of one template per cell with names swapped (that would score a few percent).
MIN_ROWS = 3000
MIN_CELL = 40
MIN_SHAPE_SHARE = 0.75
MAX_SHAPE_REPEATS = 12
MIN_TEMPLATES_PER_CELL = 12


@lru_cache(maxsize=1)
def corpus_rows() -> list[dict[str, str]]:
    with open(CORPUS, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@lru_cache(maxsize=4)
def feed(name: str) -> list[dict]:
    with open(FEEDS / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def message_text(message: dict) -> str:
    return message.get("headline") or message.get("text") or ""


@lru_cache(maxsize=1)
def _entity_pattern() -> re.Pattern[str]:
    names = set(POOLS["train"].names()) | set(POOLS["holdout"].names())
    for facts in (
        vocab.COUNTRIES, vocab.REGIONS, vocab.CITIES, vocab.CENTRAL_BANKS, vocab.CURRENCIES, vocab.FX_PAIRS,
        vocab.INDICES, vocab.METALS, vocab.CRUDES, vocab.ENERGY_GOODS, vocab.SECTOR_WORDS, vocab.ROLES,
        vocab.AGENCIES,
    ):  # fmt: skip
        names |= set(facts)
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


@cache
def shape(text: str) -> str:
    """A headline with every name and number masked: what is left is its sentence structure."""
    masked = _entity_pattern().sub("E", text)
    masked = re.sub(r"\d[\d,.]*", "0", masked)
    return " ".join(masked.lower().split())


# --- the starter corpus -------------------------------------------------------------------------


def test_committed_corpus_rebuilds_byte_identically() -> None:
    assert CORPUS.read_text(encoding="utf-8") == build.to_csv(build.build_rows()), (
        f"{CORPUS} differs from its generator: run `make corpus` and commit the result"
    )


def test_a_different_seed_gives_a_different_corpus() -> None:
    a = build.build_rows(seed=1, per_topic={"negative": 3, "neutral": 3, "positive": 3})
    b = build.build_rows(seed=2, per_topic={"negative": 3, "neutral": 3, "positive": 3})
    assert [r.text for r in a] != [r.text for r in b]


def test_columns_row_count_and_labels() -> None:
    with open(CORPUS, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["text", "topic", "sentiment"]
    rows = corpus_rows()
    assert len(rows) >= MIN_ROWS
    for i, row in enumerate(rows, start=2):
        assert row["text"].strip(), f"row {i}: empty text"
        assert row["topic"] in TOPICS or row["topic"] == "", f"row {i}: topic {row['topic']!r}"
        assert row["sentiment"] in SENTIMENTS or row["sentiment"] == "", (
            f"row {i}: sentiment {row['sentiment']!r}"
        )
        assert row["topic"] or row["sentiment"], f"row {i}: no label at all"


def test_every_topic_sentiment_cell_is_well_represented() -> None:
    cells = Counter((r["topic"], r["sentiment"]) for r in corpus_rows() if r["topic"] and r["sentiment"])
    thin = {
        cell: cells[cell] for cell in ((t, s) for t in TOPICS for s in SENTIMENTS) if cells[cell] < MIN_CELL
    }
    assert not thin, f"cells under {MIN_CELL} fully labelled rows: {thin}"
    # Real finance feeds are mostly neutral (about 62%); the corpus follows (largest class, about half)
    # without letting neutral swamp the two directional classes; the feed prior moves the rest.
    sentiments = Counter(r["sentiment"] for r in corpus_rows() if r["sentiment"])
    total = sum(sentiments.values())
    assert sentiments["neutral"] > max(sentiments["negative"], sentiments["positive"]), "neutral is the mode"
    assert sentiments["neutral"] / total < 0.55, "neutral must leave the directional classes room"


def test_partial_labels_are_about_eight_percent_each() -> None:
    rows = corpus_rows()
    topic_only = sum(1 for r in rows if r["topic"] and not r["sentiment"]) / len(rows)
    sentiment_only = sum(1 for r in rows if r["sentiment"] and not r["topic"]) / len(rows)
    assert 0.05 <= topic_only <= 0.11
    assert 0.05 <= sentiment_only <= 0.11


def test_no_duplicate_texts_even_ignoring_case() -> None:
    keys = Counter(" ".join(r["text"].lower().split()) for r in corpus_rows())
    dupes = [k for k, n in keys.items() if n > 1]
    assert not dupes, f"duplicate texts: {dupes[:5]}"


def test_sentence_shapes_are_varied() -> None:
    shapes = Counter(shape(r["text"]) for r in corpus_rows())
    share = len(shapes) / len(corpus_rows())
    assert share >= MIN_SHAPE_SHARE, f"only {share:.0%} distinct shapes"
    top, repeats = shapes.most_common(1)[0]
    assert repeats <= MAX_SHAPE_REPEATS, f"shape {top!r} repeated {repeats} times"
    # Variety within each cell, not just overall: no cell is a handful of shapes repeated.
    per_cell: dict[tuple[str, str], set[str]] = {}
    for r in corpus_rows():
        if r["topic"] and r["sentiment"]:
            per_cell.setdefault((r["topic"], r["sentiment"]), set()).add(shape(r["text"]))
    assert min(len(s) for s in per_cell.values()) >= 30


def test_lengths_span_flashes_to_long_two_clause_headlines() -> None:
    words = [len(r["text"].split()) for r in corpus_rows()]
    assert min(words) >= build.MIN_WORDS and max(words) <= build.MAX_WORDS + style.MAX_REGISTER_WORDS
    assert sum(w <= 6 for w in words) >= 100, "too few short flashes"
    assert sum(w >= 18 for w in words) >= 100, "too few long headlines"


def test_wire_and_social_styles_are_present() -> None:
    texts = [r["text"] for r in corpus_rows()]
    assert sum(t.startswith(("UPDATE", "BREAKING", "EXCLUSIVE", "RPT-", "FLASH")) for t in texts) >= 50
    assert (
        sum(t.endswith((" - sources", " - source", " -sources", " - report", " - filing")) for t in texts)
        >= 30
    )
    assert sum(t.startswith("$") for t in texts) >= 50
    assert sum(t == t.lower() for t in texts) >= 80


def test_social_feed_register_is_present() -> None:
    """Links, hashtags, cashtag leads, credits and cut lines, as real feeds carry them (on the
    template rows: `style.register` dresses those; the hand-written lines come in their own register)."""
    written = {" ".join(t.split()) for t, _, _ in handwritten.read_all()}
    texts = [r["text"] for r in corpus_rows() if r["text"] not in written]
    n = len(texts)
    assert sum("https://t.co/" in t for t in texts) / n >= 0.4
    assert sum(t.count("https://t.co/") == 2 for t in texts) >= 200
    assert sum(bool(re.search(r" #[a-z]+ #[a-z]+ #[a-z]+$", t)) for t in texts) >= 150
    assert sum(bool(re.match(r"\$[A-Z]+( \$[A-Z]+)? - ", t)) for t in texts) >= 200
    assert sum(" via @" in t or " by @" in t for t in texts) >= 50
    assert sum("…" in t for t in texts) >= 60
    assert sum(t.isupper() for t in texts) >= 50


@pytest.mark.parametrize("seed", range(40))
def test_register_keeps_the_words_that_carry_the_news(seed: int) -> None:
    rng = random.Random(seed)
    text, slots = grammar.render(
        "{co} [wins|loses] {money} [order|contract] from {co2} & partners", rng, POOLS["train"]
    )
    out = style.register(text, slots, rng)
    if "…" not in out:
        assert text.lower() in out.lower().replace("&amp;", "&"), out


def test_label_words_do_not_leak_the_answer() -> None:
    leaky = re.compile(r"\b(positive|negative|neutral|bullish|bearish)\b", re.IGNORECASE)
    share = sum(bool(leaky.search(r["text"])) for r in corpus_rows()) / len(corpus_rows())
    assert share < 0.02


def test_no_sentence_shape_carries_two_sentiments() -> None:
    """Label noise check: the same structure with other names and numbers never flips sentiment."""
    labels: dict[str, set[str]] = {}
    for r in corpus_rows():
        if r["sentiment"]:
            labels.setdefault(shape(r["text"]), set()).add(r["sentiment"])
    # Exempt: flashes whose sentiment is the comparison of two numbers ("EPS $1.12 vs $0.98 est").
    numeric = re.compile(r"\$?0%? vs \$?0|to \$?0%?( billion)? from \$?0")
    conflicts = {s: sorted(v) for s, v in labels.items() if len(v) > 1 and not numeric.search(s)}
    assert not conflicts, f"shapes with conflicting sentiment: {list(conflicts.items())[:5]}"


def test_no_single_word_gives_the_sentiment_away() -> None:
    """No word both covers a large slice of one sentiment and (almost) never occurs in the others."""
    rows = [r for r in corpus_rows() if r["sentiment"]]
    per_label = Counter(r["sentiment"] for r in rows)
    words: dict[str, Counter] = {}
    for r in rows:
        for w in set(re.findall(r"[a-z']+", r["text"].lower())):
            words.setdefault(w, Counter())[r["sentiment"]] += 1
    for w, counts in words.items():
        label, n = counts.most_common(1)[0]
        if n / sum(counts.values()) > 0.9:
            assert n / per_label[label] < 0.10, f"{w!r} marks {label} ({n} of {per_label[label]} rows)"


def test_phrase_tables_cover_every_cell_with_many_templates() -> None:
    table = all_phrases()
    build.check_table(table)
    for topic in TOPICS:
        for sentiment in SENTIMENTS:
            templates = table[topic][sentiment]
            assert len(templates) >= MIN_TEMPLATES_PER_CELL, (
                f"{topic}/{sentiment}: {len(templates)} templates"
            )
            assert len(set(templates)) == len(templates), f"{topic}/{sentiment}: repeated template"


def test_check_table_names_the_missing_topic() -> None:
    table = all_phrases()
    del table["IPO"]
    with pytest.raises(ValueError, match="IPO"):
        build.check_table(table)


# --- the phrase grammar -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_ordered_pairs_never_invert(seed: int) -> None:
    rng = random.Random(seed)
    for base in ("eps", "target", "rate", "pct", "cpi", "div", "money"):
        text, _ = grammar.render(f"{{{base}_lo}}|{{{base}_hi}}", rng, POOLS["train"])
        lo, hi = (float(re.sub(r"[^\d.]", "", part)) for part in text.split("|"))
        assert lo < hi, f"{base}: {text}"


def test_ticker_belongs_to_the_company_it_follows() -> None:
    rng = random.Random(3)
    for _ in range(50):
        text, slots = grammar.render("{bank} ${tk} and {co2} ${tk2}", rng, POOLS["train"])
        first, second = slots.companies
        assert text == f"{first.name} ${first.ticker} and {second.name} ${second.ticker}"
        assert first.sector == "bank" and first != second


def test_possessives_of_plural_names() -> None:
    assert grammar.tidy("Lathom Airways's appeal; Moody's view; the Fed's call") == (
        "Lathom Airways' appeal; Moody's view; the Fed's call"
    )
    assert (
        grammar.possessive("Foxley Labs") == "Foxley Labs'"
        and grammar.possessive("Ivorine Air") == "Ivorine Air's"
    )


def test_unknown_slot_is_reported_by_name() -> None:
    with pytest.raises(KeyError, match="nonsense"):
        grammar.render("{co} does {nonsense}", random.Random(0), POOLS["train"])


def test_entity_pools_are_disjoint() -> None:
    assert not set(POOLS["train"].names()) & set(POOLS["holdout"].names())


# --- the recorded feeds -------------------------------------------------------------------------


def test_committed_feeds_rebuild_identically(tmp_path: Path) -> None:
    feeds.write_feeds(tmp_path)
    for name in ("calm_day.jsonl", "spike_day.jsonl", "spike_day.meta.json"):
        assert (tmp_path / name).read_bytes() == (FEEDS / name).read_bytes(), (
            f"{FEEDS / name} differs from its generator: run `python -m training.corpus.feeds --out-dir tests/feeds`"
        )


@pytest.mark.parametrize("name", ["calm_day", "spike_day"])
def test_feed_messages_are_well_formed_and_sorted(name: str) -> None:
    messages = feed(name)
    assert (FEEDS / f"{name}.jsonl").stat().st_size < 1_500_000
    ids = [m["id"] for m in messages]
    assert len(set(ids)) == len(ids), "ids must be unique"
    stamps = []
    for m in messages:
        assert ("headline" in m) != ("text" in m), f"{m['id']}: exactly one of headline/text"
        assert message_text(m).strip(), m["id"]
        when = datetime.fromisoformat(m["published_at"])
        assert when.utcoffset() == timedelta(0), f"{m['id']}: timestamp needs a UTC offset"
        assert re.search(r"\.\d{3}\+00:00$", m["published_at"]), m["published_at"]
        assert m["truth"]["topic"] in TOPICS and m["truth"]["sentiment"] in SENTIMENTS, m["id"]
        assert isinstance(m["tickers"], list) and all(isinstance(t, str) for t in m["tickers"])
        assert isinstance(m["source"], str) and m["source"]
        stamps.append(when)
    assert stamps == sorted(stamps), "messages must be sorted by published_at"
    day_start, day_end = (
        datetime.fromisoformat("2026-03-02T07:00:00+00:00"),
        datetime.fromisoformat("2026-03-02T19:00:00+00:00"),
    )
    assert day_start <= stamps[0] and stamps[-1] < day_end
    assert sum("text" in m for m in messages) >= 100 and sum("body" in m for m in messages) >= 100


def test_calm_day_covers_every_topic_with_a_balanced_mix() -> None:
    messages = feed("calm_day")
    assert 2300 <= len(messages) <= 2700
    assert all(m["id"].startswith("calm-") for m in messages)
    by_topic: dict[str, Counter] = {}
    for m in messages:
        by_topic.setdefault(m["truth"]["topic"], Counter())[m["truth"]["sentiment"]] += 1
    assert set(by_topic) == set(TOPICS)
    for topic, counts in by_topic.items():
        total = sum(counts.values())
        for sentiment in SENTIMENTS:
            assert 0.2 <= counts[sentiment] / total <= 0.45, f"{topic}: {dict(counts)}"


def test_calm_day_volume_follows_the_trading_day() -> None:
    hours = Counter(datetime.fromisoformat(m["published_at"]).hour for m in feed("calm_day"))
    assert hours[13] > 2 * hours[10], "US open must be busier than the European late morning"
    assert hours[8] > hours[10] and hours[13] > hours[18]


def max_in_window(stamps: list[datetime], width: timedelta) -> int:
    best, j = 0, 0
    for i in range(len(stamps)):
        while stamps[i] - stamps[j] > width:
            j += 1
        best = max(best, i - j + 1)
    return best


def negatives_by_topic(messages: list[dict]) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    for m in messages:
        if m["truth"]["sentiment"] == "negative":
            out.setdefault(m["truth"]["topic"], []).append(datetime.fromisoformat(m["published_at"]))
    return out


def test_calm_day_has_no_negative_surge_but_has_isolated_negatives() -> None:
    negatives = negatives_by_topic(feed("calm_day"))
    worst = {t: max_in_window(s, timedelta(minutes=10)) for t, s in negatives.items()}
    assert max(worst.values()) <= 5, f"negative clusters in the calm day: {worst}"
    # Quiet topics still carry lone negatives (at least one with no other negative within 20 minutes).
    for topic in ("IPO", "Dividend"):
        stamps = negatives[topic]
        assert any(
            all(abs(s - other) > timedelta(minutes=20) for other in stamps if other is not s) for s in stamps
        ), topic


def test_spike_meta_matches_the_file() -> None:
    meta = json.loads((FEEDS / "spike_day.meta.json").read_text(encoding="utf-8"))
    start, end = (datetime.fromisoformat(meta["interval"][k]) for k in ("start", "end"))
    messages = feed("spike_day")
    planted = [m for m in messages if m["id"].startswith(meta["id_prefix"])]
    assert len(planted) == meta["planted"] == sum(meta["planted_per_minute"]) >= 140
    assert len(messages) == meta["total_messages"] == meta["calm_messages"] + meta["planted"]
    assert meta["topic"] == "Energy | Oil" and meta["sentiment"] == "negative"
    assert meta["surge"] == {"topic": meta["topic"], "sentiment": meta["sentiment"], **meta["interval"]}
    assert (end - start) == timedelta(minutes=20) and start.hour == 13 and start.minute == 0
    per_minute = Counter(
        int((datetime.fromisoformat(m["published_at"]) - start).total_seconds() // 60) for m in planted
    )
    assert [per_minute[i] for i in range(len(meta["planted_per_minute"]))] == meta["planted_per_minute"]
    assert max(meta["planted_per_minute"]) == meta["peak_per_minute"] >= 6
    assert meta["planted_per_minute"][0] < meta["peak_per_minute"], "the surge ramps up"
    for m in planted:
        assert start <= datetime.fromisoformat(m["published_at"]) < end
        assert m["truth"] == {"topic": meta["topic"], "sentiment": meta["sentiment"]}
    calm_in_window = [m for m in feed("calm_day") if start <= datetime.fromisoformat(m["published_at"]) < end]
    assert len(calm_in_window) == meta["calm_in_interval"]


def test_spike_day_is_the_calm_day_plus_the_planted_story() -> None:
    calm = {json.dumps(m, sort_keys=True) for m in feed("calm_day")}
    spike_day = feed("spike_day")
    rest = {json.dumps(m, sort_keys=True) for m in spike_day if not m["id"].startswith("spike-")}
    assert rest == calm
    # The surge stands out: only the planted topic has a dense negative window.
    worst = {t: max_in_window(s, timedelta(minutes=10)) for t, s in negatives_by_topic(spike_day).items()}
    assert worst["Energy | Oil"] >= 60
    assert max(v for t, v in worst.items() if t != "Energy | Oil") <= 5


def test_feeds_use_held_out_names_and_never_repeat_training_rows() -> None:
    corpus = {" ".join(r["text"].lower().split()) for r in corpus_rows()}
    train_companies = {c.name for c in POOLS["train"].companies}
    holdout_companies = {c.name for c in POOLS["holdout"].companies}
    pattern = re.compile("|".join(re.escape(n) for n in sorted(train_companies, key=len, reverse=True)))
    seen_holdout = 0
    for m in feed("spike_day"):
        text = message_text(m)
        assert " ".join(text.lower().split()) not in corpus, f"{m['id']} repeats a training row"
        assert not pattern.search(text), f"{m['id']} names a training-pool company"
        seen_holdout += any(name in text for name in holdout_companies)
    assert seen_holdout >= 1000


# --- the hand-written lines ------------------------------------------------------------------------


def test_hand_written_lines_are_valid_and_all_in_the_corpus() -> None:
    written = handwritten.read_all()
    # a few hundred per file; what the written lines are for (register, neutral-heavy) needs volume
    assert len(written) >= 1500, len(written)
    topics = Counter(t for _, t, _ in written)
    assert set(topics) == set(TOPICS), f"topics without hand-written lines: {set(TOPICS) - set(topics)}"
    neutral = sum(1 for _, _, s in written if s == "neutral") / len(written)
    assert 0.4 <= neutral <= 0.65, f"hand-written lines are {neutral:.0%} neutral"
    corpus = {" ".join(r["text"].lower().split()) for r in corpus_rows()}
    missing = [t for t, _, _ in written if " ".join(t.lower().split()) not in corpus]
    # only repeats and lines outside the length bounds may be left out
    assert len(missing) <= len(written) // 50, (
        f"{len(missing)} hand-written lines not in the corpus: {missing[:3]}"
    )


def test_templates_only_build_skips_the_hand_written_lines() -> None:
    few = {"negative": 2, "neutral": 2, "positive": 2}
    assert len(build.build_rows(seed=3, per_topic=few, written=[])) == 20 * 6
    extra = [
        ("Quillmere Foods opens its third bakery in Tartu this spring", "Company | Product News", "neutral")
    ]
    rows = build.build_rows(seed=3, per_topic=few, written=extra)
    assert len(rows) == 20 * 6 + 1 and extra[0][0] in {r.text for r in rows}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\nhello there,Markets\n", "header must be text,topic,sentiment"),
        ("text,topic,sentiment\nRates steady at the bank,Fed,neutral\n", "2: unknown topic 'Fed'"),
        (
            "text,topic,sentiment\nok line,Markets,neutral\nStocks up,Markets,bullish\n",
            "3: unknown sentiment",
        ),
        ("text,topic,sentiment\n,Markets,neutral\n", "2: empty text"),
        ("text,topic,sentiment\nStocks up,Markets\n", "2: expected 3 fields"),
    ],
)
def test_a_bad_hand_written_row_names_its_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(handwritten.WrittenRowError, match=re.escape(message)) as err:
        handwritten.read_all(tmp_path)
    assert str(path) in str(err.value)


# --- the realistic dev feed ------------------------------------------------------------------------

DEV_FEED = ROOT / "data" / "dev_feed.csv"


def test_dev_feed_is_fully_labelled_neutral_heavy_and_covers_every_topic() -> None:
    with open(DEV_FEED, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 700
    assert all(r["topic"] in TOPICS and r["sentiment"] in SENTIMENTS for r in rows)
    topics = Counter(r["topic"] for r in rows)
    assert min(topics[t] for t in TOPICS) >= 15, topics  # enough per class for a per-class F1
    neutral = sum(r["sentiment"] == "neutral" for r in rows) / len(rows)
    assert 0.55 <= neutral <= 0.7, f"a real feed is mostly neutral; the dev feed is {neutral:.0%}"


def test_dev_feed_is_written_apart_from_the_training_rows() -> None:
    """Model selection on rows that echo the training text would reward memorising it."""
    from bench.overlap import shared_runs

    with open(DEV_FEED, newline="", encoding="utf-8") as fh:
        dev = [r["text"] for r in csv.DictReader(fh)]
    shared = shared_runs(dev, [r["text"] for r in corpus_rows()], 9)
    assert not shared, f"dev rows sharing nine words in a row with the corpus: {shared[:3]}"


# --- what the docs say about the corpus -----------------------------------------------------------


def test_readme_states_the_corpus_as_built() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    rows = [build.Row(r["text"], r["topic"], r["sentiment"]) for r in corpus_rows()]
    stated = " ".join(build.distribution(rows).split())
    assert stated in readme, f"README's corpus paragraph is stale; it should say: {stated}"


# --- real-news figures for the model card --------------------------------------------------------


def _fake_record() -> dict:
    return {
        "model_version": "20260301-120000",
        "data_fingerprint": "sha256:abc",
        "real_sets": [
            {"data": "topics.csv", "heads": {"topic": {"accuracy": 0.7123, "macro_f1": 0.61, "rows": 1700}}},
            {"data": "tone.csv", "heads": {"sentiment": {"accuracy": 0.8011, "macro_f1": 0.7, "rows": 950}}},
        ],
    }


def test_model_card_states_real_figures_only_for_the_data_they_were_measured_on() -> None:
    matching = "\n".join(real_eval.model_card_section({"data_fingerprint": "sha256:abc"}, _fake_record()))
    assert "| `topics.csv` | topic | 1,700 | 0.712 | 0.610 |" in matching
    assert "| `tone.csv` | sentiment | 950 | 0.801 | 0.700 |" in matching
    assert "a split of the training data itself" in matching
    # validated on a separate file: the card says which, and that it is not real news
    on_dev = {"data_fingerprint": "sha256:abc", "training_config": {"valid": "data/dev_feed.csv"}}
    assert "`data/dev_feed.csv`, rows written for the project" in "\n".join(
        real_eval.model_card_section(on_dev, _fake_record())
    )
    other = "\n".join(real_eval.model_card_section({"data_fingerprint": "sha256:def"}, _fake_record()))
    assert "Not measured for this training data" in other and "0.712" not in other
    assert "Not measured" in "\n".join(real_eval.model_card_section({"data_fingerprint": "x"}, {}))
    # same data, another recipe (here: without the feed prior the record was measured with)
    record = {**_fake_record(), "training": {"feed_prior": "data/feed_prior.json", "rdrop": 0.5}}
    shifted = {
        "data_fingerprint": "sha256:abc",
        "training_config": {"feed_prior": "data/feed_prior.json", "rdrop": 0.5},
    }
    assert "0.712" in "\n".join(real_eval.model_card_section(shifted, record))
    plain = {"data_fingerprint": "sha256:abc", "training_config": {"feed_prior": None, "rdrop": 0.5}}
    assert "Not measured for this training data and recipe" in "\n".join(
        real_eval.model_card_section(plain, record)
    )


def test_record_is_built_from_evaluate_output(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    manifest = {
        "version": "v1",
        "data_fingerprint": "sha256:abc",
        "base_model": "base",
        "training_config": {"epochs": 3, "seed": 0},
        "metrics": {"topic_accuracy": 0.97},
    }
    (artifact / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    report = {"n": 40, "accuracy": 0.75, "macro": {"f1": 0.5}}
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text(
        json.dumps({"data": "/x/topics.csv", "variant": "int8", "heads": {"topic": report}}), encoding="utf-8"
    )
    corpus = tmp_path / "c.csv"
    corpus.write_text("text,topic,sentiment\n", encoding="utf-8")
    record = real_eval.build_record(artifact, [out], corpus)
    assert record["data_fingerprint"] == "sha256:abc" and record["model_version"] == "v1"
    assert record["real_sets"] == [
        {
            "data": "topics.csv",
            "variant": "int8",
            "heads": {"topic": {"accuracy": 0.75, "macro_f1": 0.5, "rows": 40}},
        }
    ]
    assert record["corpus_sha256"] == real_eval.file_sha256(corpus)
    (out / "metrics.json").write_text(json.dumps({"heads": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="no head"):
        real_eval.build_record(artifact, [out], corpus)


def test_recorded_real_figures_belong_to_the_committed_corpus_and_are_in_the_docs() -> None:
    record = real_eval.load_record()
    assert record is not None, f"{real_eval.RECORD} is missing"
    assert record["corpus_sha256"] == real_eval.file_sha256(CORPUS), (
        "the corpus changed since the default model was measured on real news: retrain, re-measure "
        "(see training/corpus/real_eval.py) and update docs/BENCHMARKS.md"
    )
    benchmarks = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    for s in record["real_sets"]:
        for head, f in s["heads"].items():
            assert f"{f['accuracy']:.3f}" in benchmarks, f"{s['data']} {head} accuracy not in BENCHMARKS.md"


def test_readme_quotes_the_recorded_real_figures() -> None:
    record = real_eval.load_record()
    assert record is not None
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    figures = {head: f["accuracy"] for s in record["real_sets"] for head, f in s["heads"].items()}
    stated = f"topic accuracy {figures['topic']:.3f} and sentiment accuracy {figures['sentiment']:.3f}"
    assert stated in readme, f"README should say: {stated}"


def test_the_measured_artifacts_card_gets_the_new_figures_in_place_of_the_old(tmp_path: Path) -> None:
    record = {**_fake_record(), "model_version": "20260301-130000"}
    manifest = {"version": "20260301-130000", "data_fingerprint": "sha256:abc"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = real_eval.model_card_section(manifest, {**_fake_record(), "real_sets": []})
    card = "\n".join(["# finsent model", "", "## int8 variant", "plan", "", *old, "## Intended use", "text"])
    (tmp_path / "MODEL_CARD.md").write_text(card + "\n", encoding="utf-8")
    assert real_eval.refresh_card(tmp_path, record)
    new = (tmp_path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert new.count(real_eval.SECTION_TITLE) == 1
    assert "| `topics.csv` | topic | 1,700 | 0.712 | 0.610 |" in new
    assert new.index("## int8 variant") < new.index(real_eval.SECTION_TITLE) < new.index("## Intended use")
    assert new.rstrip().endswith("text")
    # a card without the section gets it appended; an artifact without a card is left alone
    assert "0.801" in real_eval.with_card_section("# card\n", real_eval.model_card_section(manifest, record))
    (tmp_path / "MODEL_CARD.md").unlink()
    assert not real_eval.refresh_card(tmp_path, record)
