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
