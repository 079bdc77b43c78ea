"""Phrase tables: topic -> sentiment -> templates in the `grammar` mini-language.

Each module covers a few topics; `feeds` adds templates to every cell in the register of real
finance feeds (see its docstring). The sentiment of a template must follow from what it says (a beat,
a cut, a fine, a rally), not from a label word, and every cell holds many sentence shapes.
"""

from __future__ import annotations

from training.corpus.phrases import company, feeds, macro, markets, sectors, world

Table = dict[str, dict[str, list[str]]]


def all_phrases() -> Table:
    table: Table = {}
    for module in (company, markets, macro, sectors, world):
        for topic, cells in module.PHRASES.items():
            if topic in table:
                raise ValueError(f"topic {topic!r} defined twice (second time in {module.__name__})")
            table[topic] = {sentiment: list(templates) for sentiment, templates in cells.items()}
    for sentiment, templates in company.RESULTS.items():
        table["Financials"][sentiment] += templates  # results as numbers: see company.RESULTS
    for topic, cells in feeds.MORE.items():
        for sentiment, templates in cells.items():
            table[topic][sentiment] += templates  # KeyError names a topic or sentiment the base lacks
    return table
