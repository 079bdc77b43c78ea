"""Tickers: cashtags in the text merged with the input's `tickers` field (pipeline/tickers.py), and
what parse_message makes of them."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pipeline.records import DeadLetter, NewsItem, Origin, parse_message
from pipeline.tickers import MAX_TICKERS, cashtags, merge_tickers

ORIGIN = Origin("news.raw", 0, 7, 1_772_445_600_000)


def test_cashtags_are_symbols_not_amounts() -> None:
    assert cashtags("Buy $AAPL and $brk.b, sell $TSLA.") == ["AAPL", "BRK.B", "TSLA"]
    assert cashtags("($MSFT) and $GM-led rally; RT $nvda!") == ["MSFT", "GM", "NVDA"]
    for amounts in ["$5 off", "a $1.2bn deal", "US$40 a barrel", "$AAPL123", "x$AB", "$ 5", "$$"]:
        assert cashtags(amounts) == [], amounts


def test_merge_normalises_dedups_and_bounds() -> None:
    assert merge_tickers([" vlo ", "$MPC", ""], "Refiners $VLO and $psx rally") == ("VLO", "MPC", "PSX")
    many = [f"T{i}" for i in range(MAX_TICKERS + 5)]
    assert merge_tickers(many, "$ZZZ") == tuple(many[:MAX_TICKERS])


@given(st.text(max_size=80), st.lists(st.text(max_size=8), max_size=30))
def test_merge_is_bounded_upper_case_and_unique(text: str, given_tickers: list[str]) -> None:
    out = merge_tickers(given_tickers, text)
    assert len(out) <= MAX_TICKERS and len(set(out)) == len(out)
    assert all(t and t == t.upper() and not t.startswith("$") for t in out)


def _parse(obj: dict) -> NewsItem | DeadLetter:
    return parse_message(json.dumps(obj).encode(), ORIGIN, max_bytes=65536)


def test_scored_tickers_come_from_the_field_and_the_text() -> None:
    item = _parse({"id": "a", "text": "$AAPL beats; $msft lags", "tickers": ["aapl", "GOOG"]})
    assert isinstance(item, NewsItem) and item.tickers == ("AAPL", "GOOG", "MSFT")
    assert isinstance(item := _parse({"id": "b", "text": "Oil up $2"}), NewsItem) and item.tickers == ()


def test_a_ticker_that_is_not_a_symbol_is_a_clear_dead_letter() -> None:
    out = _parse({"id": "c", "text": "Oil", "tickers": ["VLO", "x" * 40]})
    assert isinstance(out, DeadLetter) and out.reason == "bad_field_type" and "'tickers'[1]" in out.message
