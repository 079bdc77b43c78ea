"""Wire-style surface variation applied on top of a rendered headline.

Real feeds mix plain headlines with wire prefixes ("UPDATE 2-"), attributions ("- sources"),
title case, short flashes cut at the first clause, ticker-led social posts and two-item roundups.
None of these changes what happened, so none changes the label: the cut only happens before a
clause that starts in lower case (a continuation, not a new subject), and a roundup joins two
headlines of the same topic and sentiment.
"""

from __future__ import annotations

import random
import re

from training.corpus.grammar import Slots

PREFIXES = (
    "UPDATE 1-",
    "UPDATE 2-",
    "UPDATE 3-",
    "BREAKING: ",
    "EXCLUSIVE-",
    "RPT-",
    "CORRECTED-",
    "FOCUS-",
    "BRIEF-",
    "FLASH: ",
    "WRAPUP 1-",
    "INSIGHT-",
)
SUFFIXES = (
    " - sources",
    " - source",
    " - report",
    " - filing",
    " - statement",
    " - spokesperson",
    " - memo",
    " - people familiar",
    " -sources",
    " - document",
)
ATTRIBUTIONS = (", company says", ", statement says", ", filing shows", ", sources say", ", executives say")
GENERAL_ATTRIBUTIONS = (", sources say", ", officials say", ", analysts say")
GENERAL_SUFFIXES = (" - sources", " - source", " - report", " -sources")
_SMALL = {
    "a",
    "an",
    "and",
    "as",
    "at",
    "by",
    "for",
    "from",
    "in",
    "of",
    "on",
    "or",
    "the",
    "to",
    "vs",
    "with",
}
_CUT = re.compile(r"[,;] (?=[a-z])")

# Probabilities of each decoration; independent draws, a few rows get more than one.
P_CUT = 0.10
P_PREFIX = 0.06
P_SUFFIX = 0.05
P_ATTRIB = 0.03
P_TITLE = 0.07
P_TWEET = 0.05
P_LOWER = 0.03


def title_case(text: str) -> str:
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        if w.isupper() or not w[:1].isalpha() or (i > 0 and w in _SMALL):
            out.append(w)
        else:
            out.append(w[:1].upper() + w[1:])
    return " ".join(out)


def cut_first_clause(text: str, min_words: int = 4) -> str:
    """A flash: the headline up to its first continuation clause, if that leaves enough words."""
    match = _CUT.search(text)
    if match is None or len(text[: match.start()].split()) < min_words:
        return text
    return text[: match.start()]


def tweet(text: str, slots: Slots, rng: random.Random) -> str:
    """A social-media item: lower case, usually led by the first company's cashtag."""
    if slots.companies and "$" + slots.companies[0].ticker not in text:
        lead = "$" + slots.companies[0].ticker
        return f"{lead} {text.lower()}" if rng.random() < 0.5 else f"{lead}: {text}"
    return text.lower()


def decorate(text: str, slots: Slots, rng: random.Random) -> str:
    if rng.random() < P_CUT:
        text = cut_first_clause(text)
    if rng.random() < P_TWEET:
        return tweet(text, slots, rng)
    if rng.random() < P_LOWER:
        return text.lower()
    if rng.random() < P_TITLE:
        text = title_case(text)
    if rng.random() < P_ATTRIB and "," not in text and ":" not in text:
        text += rng.choice(ATTRIBUTIONS if slots.companies else GENERAL_ATTRIBUTIONS)
    elif rng.random() < P_SUFFIX:
        text += rng.choice(SUFFIXES if slots.companies else GENERAL_SUFFIXES)
    if rng.random() < P_PREFIX and not text.startswith("$"):
        text = rng.choice(PREFIXES) + text
    return text


def roundup(first: str, second: str) -> str:
    """Two same-topic, same-sentiment headlines in one wire line."""
    return f"{first}; {second}"


# --- the social-feed register -------------------------------------------------------------------
# Real feeds (wire accounts on social media, news aggregators) wrap a headline in noise that says
# nothing about its topic or sentiment: shortened links, hashtags, "$TICK - " leads, "via @handle"
# credits, all-caps flashes, HTML-escaped ampersands, and a "…" where a long line was cut. A model
# that never saw them during training mistakes them for signal, so a share of the corpus carries them.
P_LINK = 0.5
P_SECOND_LINK = 0.3
P_HASHTAGS = 0.08
P_CASHTAG_LEAD = 0.12
P_CREDIT = 0.04
P_CAPS = 0.03
P_FEED_PREFIX = 0.04
P_ELLIPSIS = 0.3
ELLIPSIS_CHARS = 100  # lines longer than this may be cut to it, as aggregators do
FEED_PREFIXES = ("JUST IN: ", "ICYMI: ", "NEW: ", "WATCH: ", "MORE: ", "DEVELOPING: ")
HASHTAGS = (
    "#stocks", "#markets", "#investing", "#trading", "#economy", "#finance", "#business",
    "#stockmarket", "#news", "#wallstreet",
)  # fmt: skip
_LINK_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Words a register decoration adds at most (two links, three hashtags, a credit, a lead), so length
# checks can allow for them.
MAX_REGISTER_WORDS = 10


def link(rng: random.Random) -> str:
    return "https://t.co/" + "".join(rng.choice(_LINK_CHARS) for _ in range(10))


def handle(slots: Slots, rng: random.Random) -> str:
    first, last = rng.choice(slots.pool.people).split(" ", 1)
    return "@" + rng.choice((first[0] + last, first + last[0], first + "_" + last, last + "News"))


def cut_with_ellipsis(text: str, limit: int = ELLIPSIS_CHARS) -> str:
    """Cut a long line at a word boundary before `limit` characters and mark the cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:-") + "…"


def register(text: str, slots: Slots, rng: random.Random) -> str:
    """The headline as a social feed would carry it; the words that carry the news are unchanged."""
    if "&" in text and rng.random() < 0.5:
        text = text.replace("&", "&amp;")
    if rng.random() < P_CASHTAG_LEAD and slots.companies and not text.startswith("$"):
        tags = " ".join("$" + c.ticker for c in slots.companies[: rng.choice((1, 1, 2))])
        text = f"{tags} - {text}" if rng.random() < 0.7 else f"{tags}: {text}"
    elif rng.random() < P_FEED_PREFIX and not text.startswith(("$", *PREFIXES)):
        text = rng.choice(FEED_PREFIXES) + text
    if rng.random() < P_CAPS:
        text = text.upper()
    if rng.random() < P_ELLIPSIS:
        text = cut_with_ellipsis(text)
    if rng.random() < P_CREDIT:
        who = handle(slots, rng)
        text += rng.choice((f" via {who}", f" by {who}", f" (via {who})"))
    if rng.random() < P_LINK:
        text += rng.choice((" ", "  ")) + link(rng)
        if rng.random() < P_SECOND_LINK:
            text += "  " + link(rng)
    if rng.random() < P_HASHTAGS:
        text += " " + " ".join(rng.sample(HASHTAGS, 3))
    return text
