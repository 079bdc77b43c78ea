"""Reading labelled headlines: CSV, JSONL or Parquet -> a validated, integer-labelled `Dataset`.

Every check that can fail names the file and the row at fault (rows count data records from 1, the
header excluded), because the person fixing it has the file open, not our code. Either label may be
blank on a row: public sets often label only topics or only sentiment, and the model's loss is
masked per head. A row with neither label teaches nothing and is dropped (and counted).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.artifact import SENTIMENT_LABELS
from models.errors import DataError
from training.corpus.labels import TOPICS

log = logging.getLogger(__name__)

# The 20 topics commonly used to label financial news and tweets: the default taxonomy, defined once
# beside the starter corpus that is written in it.
DEFAULT_TOPICS: tuple[str, ...] = TOPICS
# Label value for "this row has no label for this head"; such rows add nothing to that head's loss.
MISSING = -1
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Columns:
    """Which columns of the input file hold the text and the two labels."""

    text: str = "text"
    topic: str = "topic"
    sentiment: str = "sentiment"


@dataclass(frozen=True)
class Dataset:
    """Texts with integer labels (MISSING where a row has no label for a head)."""

    texts: tuple[str, ...]
    topics: np.ndarray  # int64 [n]
    sentiments: np.ndarray  # int64 [n]
    topic_labels: tuple[str, ...]
    sentiment_labels: tuple[str, ...] = SENTIMENT_LABELS
    source: str = ""
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # 1-based source rows

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> Dataset:
        index = np.asarray(index, dtype=np.int64)
        return Dataset(
            texts=tuple(self.texts[i] for i in index),
            topics=self.topics[index],
            sentiments=self.sentiments[index],
            topic_labels=self.topic_labels,
            sentiment_labels=self.sentiment_labels,
            source=self.source,
            rows=self.rows[index] if len(self.rows) else self.rows,
        )

    def fingerprint(self) -> str:
        """sha256 over the normalised rows and label sets: same data, same fingerprint, any format."""
        digest = hashlib.sha256()
        digest.update("\x1e".join(self.topic_labels).encode())
        digest.update(b"\x1d")
        digest.update("\x1e".join(self.sentiment_labels).encode())
        for text, t, s in zip(self.texts, self.topics.tolist(), self.sentiments.tolist(), strict=True):
            digest.update(f"\x1d{text}\x1f{t}\x1f{s}".encode())
        return "sha256:" + digest.hexdigest()

    def label_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for head, ids, labels in (
            ("topic", self.topics, self.topic_labels),
            ("sentiment", self.sentiments, self.sentiment_labels),
        ):
            counts = np.bincount(ids[ids != MISSING], minlength=len(labels))
            out[head] = {label: int(c) for label, c in zip(labels, counts, strict=True)}
        return out


def _read_frame(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .csv, .jsonl or .parquet)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if kind == "csv":
            # keep_default_na=False: a headline reading "NA" or "null" is text, not a missing value
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty dataset (the file has no header and no rows)") from exc
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a malformed file
        raise DataError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from exc


def _cell(value: object) -> str:
    """A cell as stripped text; None/NaN/blank -> ''."""
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    return str(value).strip()


def resolve_topics(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """`--topics`: None/'default' -> the 20 finance topics; 'data' -> whatever the data holds;
    a path -> one topic per line; otherwise a comma-separated list."""
    if spec is None or spec == "default":
        return DEFAULT_TOPICS
    if not isinstance(spec, str):
        return tuple(spec)
    if spec == "data":
        return None
    path = Path(spec)
    if "," not in spec and path.is_file():
        topics = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        if not topics:
            raise DataError(f"{path}: topic list is empty")
        return topics
    return tuple(t.strip() for t in spec.split(",") if t.strip())


def load_dataset(
    path: str | Path,
    *,
    columns: Columns = Columns(),
    topics: Sequence[str] | None = DEFAULT_TOPICS,
) -> Dataset:
    """Read and validate one labelled file.

    `topics` is the allowed topic taxonomy, in output order; a topic outside it is an error naming
    the row. With `topics=None` the label set is whatever topics the file holds, sorted.
    """
    path = Path(path)
    frame = _read_frame(path)
    missing = [c for c in (columns.text, columns.topic, columns.sentiment) if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (columns found: {have})")
    if len(frame) == 0:
        raise DataError(f"{path}: empty dataset (header only, no rows)")

    texts = [_cell(v) for v in frame[columns.text].tolist()]
    raw_topics = [_cell(v) for v in frame[columns.topic].tolist()]
    raw_sents = [_cell(v).lower() for v in frame[columns.sentiment].tolist()]

    topic_labels = tuple(topics) if topics is not None else tuple(sorted({t for t in raw_topics if t}))
    topic_index = {label: i for i, label in enumerate(topic_labels)}
    sent_index = {label: i for i, label in enumerate(SENTIMENT_LABELS)}

    keep_rows: list[int] = []
    t_ids: list[int] = []
    s_ids: list[int] = []
    for i, (text, topic, sent) in enumerate(zip(texts, raw_topics, raw_sents, strict=True)):
        row = i + 1
        if not text:
            raise DataError(f"{path}: row {row}: empty text in column '{columns.text}'")
        if topic and topic not in topic_index:
            raise DataError(
                f"{path}: row {row}: unknown topic label {topic!r} in column '{columns.topic}' "
                f"(known: {', '.join(topic_labels)})"
            )
        if sent and sent not in sent_index:
            raise DataError(
                f"{path}: row {row}: unknown sentiment label {sent!r} in column '{columns.sentiment}' "
                f"(known: {', '.join(SENTIMENT_LABELS)})"
            )
        if not topic and not sent:
            continue
        keep_rows.append(row)
        t_ids.append(topic_index[topic] if topic else MISSING)
        s_ids.append(sent_index[sent] if sent else MISSING)

    dropped = len(texts) - len(keep_rows)
    if not keep_rows:
        raise DataError(
            f"{path}: empty dataset: none of its {len(texts)} rows has a topic or sentiment label"
        )
    if dropped:
        log.warning("%s: dropped %d row(s) with neither a topic nor a sentiment label", path, dropped)
    return Dataset(
        texts=tuple(texts[r - 1] for r in keep_rows),
        topics=np.asarray(t_ids, dtype=np.int64),
        sentiments=np.asarray(s_ids, dtype=np.int64),
        topic_labels=topic_labels,
        source=str(path),
        rows=np.asarray(keep_rows, dtype=np.int64),
    )


def _strata(data: Dataset) -> np.ndarray:
    """Stratum per row: its topic, or (for sentiment-only rows) its sentiment, kept apart."""
    n_topics = len(data.topic_labels)
    return np.where(data.topics != MISSING, data.topics, n_topics + data.sentiments)


def stratified_split(data: Dataset, valid_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded split that keeps every topic's share equal in train and validation.

    Each stratum with at least two rows gives round(n * fraction) rows (at least one) to
    validation, so rare topics are still measured; a singleton stays in training.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {valid_fraction}")
    rng = np.random.default_rng(seed)
    strata = _strata(data)
    valid: list[int] = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        if len(members) < 2:
            continue
        take = min(max(1, round(len(members) * valid_fraction)), len(members) - 1)
        valid.extend(rng.permutation(members)[:take].tolist())
    valid_idx = np.sort(np.asarray(valid, dtype=np.int64))
    train_mask = np.ones(len(data), dtype=bool)
    train_mask[valid_idx] = False
    train_idx = np.flatnonzero(train_mask)
    if len(valid_idx) == 0 or len(train_idx) == 0:
        raise DataError(
            f"{data.source}: too few rows ({len(data)}) to split off a validation set; pass a validation file"
        )
    return data.subset(train_idx), data.subset(valid_idx)
