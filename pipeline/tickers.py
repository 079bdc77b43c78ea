"""Tickers of a message: the input's `tickers` field merged with the cashtags in its text. Pure.

A cashtag is `$` then a letter and up to five more letters, with an optional share-class suffix
(`$AAPL`, `$BRK.B`); `$5`, `$1.2bn` and `US$40` are amounts, not tickers. Everything is upper-cased,
a leading `$` dropped, duplicates removed (first occurrence kept: the input's own list first, then
the cashtags in text order), and at most `MAX_TICKERS` kept: a message naming more is a roundup, and
the bound keeps one message from bloating every record downstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_TICKERS = 16
MAX_TICKER_CHARS = 32  # longer is not a symbol but a producer bug (a sentence in the wrong field)

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![A-Za-z0-9])")


def cashtags(text: str) -> list[str]:
    """The cashtags in `text`, upper-cased, in order of appearance (repeats kept). Pure."""
    return [m.group(1).upper() for m in _CASHTAG.finditer(text)]


def normalise_ticker(value: str) -> str:
    """`" $aapl "` -> `"AAPL"`; an empty result means the entry held no symbol."""
    return value.strip().lstrip("$").strip().upper()


def merge_tickers(given: Iterable[str], text: str, limit: int = MAX_TICKERS) -> tuple[str, ...]:
    """The input's tickers (normalised, blanks dropped) then the text's cashtags, de-duplicated,
    at most `limit`. Pure."""
    out: dict[str, None] = {}
    for t in [normalise_ticker(g) for g in given] + cashtags(text):
        if t and len(out) < limit:
            out.setdefault(t, None)
    return tuple(out)
