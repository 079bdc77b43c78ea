"""Stories, not reprints (pipeline/stories.py): normalisation, keys, near-duplicate grouping within an
event-time horizon, bounded memory, determinism across processes; and the grouping's precision and
recall on the written reprint feed (tests/feeds/reprints.jsonl, bench/reprint_feed.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.stories import FEED, measure, pairwise, read_feed
from pipeline import stories as S
from pipeline.stories import HOUR_MS, StoryIndex, fingerprint, match_score, normalise, story_key
from pipeline.tickers import MAX_TICKER_CHARS, MAX_TICKERS

T0 = 1_772_600_000_000
BASE = "Oil jumps 4% after fire shuts Gulf Coast refinery"


def test_normalise_strips_what_a_reprint_adds() -> None:
    want = normalise(BASE)
    assert want == "oil jumps 4 after fire shuts gulf coast refinery"
    for reprint in [
        "UPDATE 2-Oil jumps 4% after fire shuts Gulf Coast refinery",
        "BREAKING: OIL JUMPS 4% AFTER FIRE SHUTS GULF COAST REFINERY",
        "RT @tapewatch: Oil jumps 4% after fire shuts Gulf Coast refinery https://t.co/abc123",
        "Oil jumps 4% after fire shuts Gulf Coast refinery - sources",
        "Oil jumps 4% after fire shuts Gulf Coast refinery (Reuters)",
        "REFILE-UPDATE 1-Oil jumps 4% after fire shuts Gulf Coast refinery via @marketdesk",
        "  oil jumps 4 %  after fire shuts gulf-coast refinery!! www.example.com/x ",
    ]:
        assert normalise(reprint) == want, reprint
        assert story_key(reprint) == story_key(BASE)


def test_normalise_keeps_what_tells_stories_apart() -> None:
    assert story_key("Oil jumps 4% after refinery fire") != story_key("Oil jumps 5% after refinery fire")
    # a headline may start with "Update" or end in a dash clause that is not a credit
    assert normalise("Update on Acme merger talks due Friday") == "update on acme merger talks due friday"
    assert normalise("Oil falls - OPEC meets Monday") == "oil falls opec meets monday"


def test_reprints_join_the_first_story_and_other_stories_do_not() -> None:
    index = StoryIndex()
    first = index.assign(BASE, T0, "a")
    assert first.first and first.story == story_key(BASE)
    texts = [
        "UPDATE 1-Oil jumps 4% after fire shuts Gulf Coast refinery; gasoline futures surge",  # a clause
        "Oil jumps 4% after fire shuts Gulf Coast refinery. https://news.example/a/1",
        "Oil jumps after fire shuts Gulf Coast refinery",  # a rewrite drops a word
    ]
    for i, text in enumerate(texts):
        got = index.assign(text, T0 + (i + 1) * 60_000, f"r{i}")
        assert (got.story, got.first) == (first.story, False), text
    for i, other in enumerate(
        [
            "Oil slides 3% as inventories build for a fourth week",  # same subject, other news
            "Gasoline jumps 4% after fire shuts Gulf Coast refinery",  # another subject in front
        ]
    ):
        got = index.assign(other, T0 + HOUR_MS, f"o{i}")
        assert got.first and got.story == story_key(other), other


def test_a_template_with_another_company_in_front_is_another_story() -> None:
    a = fingerprint("Tellwater Bank third-quarter profit misses estimates")
    b = fingerprint("Orrin Aerospace third-quarter profit misses estimates")
    dropped = fingerprint("Tellwater third-quarter profit misses estimates")
    assert match_score(a, b) is None and match_score(dropped, b) is None
    assert match_score(a, dropped) is not None


def test_other_figures_names_or_directions_are_other_stories() -> None:
    def same(a: str, b: str) -> bool:
        return match_score(fingerprint(a), fingerprint(b)) is not None

    assert not same("Global stocks add $4 trillion in rebound", "Global stocks add $5 trillion in rebound")
    assert same("Oil jumps after refinery fire", "UPDATE 1-Oil jumps after refinery fire, Brent up 4%")
    assert not same("Markets shut in India for public holiday", "Markets shut in Japan for public holiday")
    assert not same(
        "Ravenhill Biosciences drug succeeds in late-stage trial",
        "Ravenhill Biosciences drug fails in late-stage trial",
    )
    assert same(
        "Kestrel Software shares jump on cloud revenue", "Kestrel Software shares surge on cloud revenue"
    )


def test_a_redelivered_id_gets_its_first_answer_back() -> None:
    index = StoryIndex()
    first = index.assign(BASE, T0, "a")
    assert index.assign(BASE, T0, "a") == first  # a re-read after a rebalance: still the first
    assert not index.assign(BASE, T0 + 1000, "b").first  # the same text under another id is a reprint
    assert len(index) == 2


def test_the_horizon_forgets_old_stories_and_bounds_memory() -> None:
    index = StoryIndex(horizon_ms=HOUR_MS)
    a = index.assign(BASE, T0, "a")
    later = index.assign(BASE, T0 + 2 * HOUR_MS, "b")  # beyond the horizon: a story again
    assert later.first and later.story == a.story  # ... with the same key, its text's own
    assert len(index) == 1
    # an event out of order but older than the horizon behind the newest is not matched to it
    old = index.assign(BASE, T0 - HOUR_MS - 1, "c")
    assert old.first


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10 * HOUR_MS), min_size=1, max_size=60), st.integers(1, 40))
def test_memory_never_exceeds_capacity_nor_holds_events_beyond_the_horizon(
    offsets: list[int], capacity: int
) -> None:
    horizon = 2 * HOUR_MS
    index = StoryIndex(horizon_ms=horizon, capacity=capacity)
    for i, off in enumerate(offsets):
        index.assign(f"headline number {i} about {off % 7}", T0 + off, f"id{i}")
        newest = T0 + max(offsets[: i + 1])
        assert len(index) <= capacity
        assert all(e.event_time_ms >= newest - horizon for e in index._entries.values())


def test_a_batch_gets_the_answers_of_one_text_at_a_time() -> None:
    """`assign_many` (what the score stage calls per micro-batch) hashes a batch at once; the stories
    must be those of `assign` in the same order, whatever the batch boundaries."""
    from pipeline.records import parse_published_at

    rows = read_feed(FEED)
    items = [(r["text"], parse_published_at(r["published_at"]), r["id"]) for r in rows]
    # a re-delivery inside one batch, an empty text; at the end, a reprint from beyond the horizon
    items[10:10] = [items[3], ("", items[9][1], "empty")]
    items += [(items[0][0], items[-1][1] + 20 * HOUR_MS, "late"), (items[1][0], items[-1][1], "old")]
    one, many = StoryIndex(horizon_ms=12 * HOUR_MS), StoryIndex(horizon_ms=12 * HOUR_MS)
    want = [one.assign(*it) for it in items]
    got = [a for i in range(0, len(items), 7) for a in many.assign_many(items[i : i + 7])]
    assert got == want
    assert sum(not a.first for a in want) > len(rows) // 2  # the feed is mostly reprints: a real check
    assert many.assign_many([]) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.frozensets(st.integers(0, 2**32 - 1), max_size=40), max_size=12))
def test_band_keys_of_a_batch_are_each_sets_own(sets: list[frozenset[int]]) -> None:
    got = S.band_keys_many(sets)
    assert len(got) == len(sets)
    for sh, keys in zip(sets, got, strict=True):
        assert keys.tolist() == S.band_keys(sh).tolist()
        assert keys.size == (S.NUM_PERM // S.ROWS_PER_BAND if sh else 0)


words = st.sampled_from("oil gold shares fall rise acme bank profit misses beats rates fed cut".split())


@settings(max_examples=100, deadline=None)
@given(st.lists(words, min_size=1, max_size=10), st.sampled_from(["", "UPDATE 2-", "BREAKING: ", "RT @x: "]))
def test_identical_normalised_text_is_one_story(ws: list[str], prefix: str) -> None:
    text = " ".join(ws)
    index = StoryIndex()
    first = index.assign(text, T0, "a")
    again = index.assign(prefix + text.upper() + "!", T0 + 1, "b")
    assert again.story == first.story and first.first and not again.first


def test_keys_are_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the keys and the grouping must not depend on it.
    code = (
        "from pipeline.stories import StoryIndex, story_key\n"
        "ix = StoryIndex()\n"
        f"print(story_key({BASE!r}), ix.assign({BASE!r}, 0, 'a').story,"
        " ix.assign('UPDATE 1-' + " + repr(BASE) + " + '; more', 1, 'b').story)\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert outs == {f"{story_key(BASE)} {story_key(BASE)} {story_key(BASE)}\n"}


def test_pairwise_precision_and_recall() -> None:
    assert pairwise(["a", "a", "b"], ["x", "x", "y"]) == (1.0, 1.0)
    assert pairwise(["a", "a", "b"], ["x", "x", "x"]) == (1 / 3, 1.0)  # one true pair of three grouped
    assert pairwise(["a", "a", "a"], ["x", "x", "y"]) == (1.0, 1 / 3)


# Floors below the measured figures (docs/BENCHMARKS.md "Stories"), so a change that groups worse fails.
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.85


def test_grouping_on_the_reprint_feed_is_above_its_floors() -> None:
    rows = read_feed(FEED)
    g = measure(rows)
    assert g.messages >= 300 and g.true_stories >= 50
    assert g.precision >= PRECISION_FLOOR, g
    assert g.recall >= RECALL_FLOOR, g
    # fifty copies of a headline are one story: the firsts are close to the true story count
    assert g.true_stories <= g.firsts <= 1.25 * g.true_stories, g


def test_the_readme_states_the_numbers_the_code_uses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Stories and tickers")
    section = readme[start : readme.index("\n## ", start)]
    for stated in [
        f"within {S.DEFAULT_HORIZON_MS // HOUR_MS} hours of event time",
        f"({S.NUM_PERM} rows in {S.NUM_PERM // S.ROWS_PER_BAND} LSH bands)",
        f"at least {S.JACCARD_MIN}",
        f"{S.CONTAINMENT_MIN:.0%} of the shorter",
        f"subject; {S.OTHER_LEAD_MIN} otherwise",
        f"at most {S.DEFAULT_CAPACITY:,} are kept",
        f"at most {MAX_TICKERS} (",
    ]:
        assert stated in " ".join(section.split()), stated
    assert f"an entry over {MAX_TICKER_CHARS} characters is `bad_field_type`" in readme
