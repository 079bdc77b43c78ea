"""The starter corpus: financial-news headlines written for finsent, generated from our own phrase grammar.

`build` writes `data/starter_corpus.csv` (text, topic, sentiment); `feeds` writes the recorded JSONL
feeds that the streaming tests replay. Both are deterministic: a fixed seed gives byte-identical files.
"""

from training.corpus.labels import SENTIMENTS, TOPICS

__all__ = ["SENTIMENTS", "TOPICS"]
