"""Reading labelled headlines -> a validated, integer-labelled `Dataset`.

Sources: CSV, JSONL or Parquet files (pandas: exact text, no cache written), and through the
`datasets` library a `save_to_disk` directory or a hub dataset (`hf:OWNER/NAME`); several sources
are concatenated, each with its own columns, and integer class ids become names through the
dataset's ClassLabel names or a label map.

Every check that can fail names the file and the row at fault (rows count data records from 1, the
header excluded), because the person fixing it has the file open, not our code. Either label may be
blank on a row: public sets often label only topics or only sentiment, and the model's loss is
masked per head. A row with neither label teaches nothing and is dropped (and counted).
"""

from __future__ import annotations

import hashlib
import json
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


# ---- sources: where rows come from ------------------------------------------------------------------

HF_PREFIX = "hf:"
NO_COLUMN = "-"  # `#sentiment=-`: this source carries no sentiment labels
_OPTION_KEYS = ("text", "topic", "sentiment", "split")


@dataclass(frozen=True)
class Source:
    """One `--data` value: a file, a `save_to_disk` directory or `hf:OWNER/NAME[:SPLIT[:CONFIG]]`,
    with its own columns (`#topic=label#sentiment=-`; `-` means the source has no such labels)."""

    location: str
    columns: Columns = Columns()
    split: str | None = None  # hf: default 'train'; a saved DatasetDict: required unless it has one split

    def __str__(self) -> str:
        return self.location


def parse_source(spec: str | Path, columns: Columns = Columns()) -> Source:
    """`LOCATION[#key=value...]`, keys text/topic/sentiment (column names) and split; `columns` gives
    the columns that the spec does not name."""
    spec = str(spec)
    location, *options = spec.split("#")
    chosen = {"text": columns.text, "topic": columns.topic, "sentiment": columns.sentiment}
    split = None
    for option in options:
        key, sep, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _OPTION_KEYS or not value:
            raise DataError(
                f"{spec}: bad source option {option!r} (use #text=COL, #topic=COL|-, #sentiment=COL|-, "
                "#split=NAME)"
            )
        if key == "split":
            split = value
        else:
            chosen[key] = value
    if chosen["text"] == NO_COLUMN:
        raise DataError(f"{spec}: a source needs a text column")
    if chosen["topic"] == NO_COLUMN and chosen["sentiment"] == NO_COLUMN:
        raise DataError(f"{spec}: a source needs a topic or a sentiment column")
    if location.startswith(HF_PREFIX):
        parts = location[len(HF_PREFIX) :].split(":")
        if not parts[0] or "/" not in parts[0] or len(parts) > 3:
            raise DataError(f"{spec}: expected hf:OWNER/NAME[:SPLIT[:CONFIG]]")
        if split is None and len(parts) > 1 and parts[1]:
            split = parts[1]
    return Source(location=location, columns=Columns(**chosen), split=split)


def split_specs(specs: str | Path | Sequence[str | Path]) -> list[str]:
    """`--data` values (repeatable, each may be a comma-separated list) -> one spec per source."""
    if isinstance(specs, (str, Path)):
        specs = [specs]
    out = [part.strip() for spec in specs for part in str(spec).split(",") if part.strip()]
    if not out:
        raise DataError("no data source given")
    return out


def read_label_map(path: str | Path | None) -> dict[str, dict[str, str]]:
    """`--label-map FILE`: JSON `{"topic": {...}, "sentiment": {...}}`; each head maps a stored value
    (an integer class id, or any text) to a label name, as an object or as a list indexed by id."""
    if path is None:
        return {}
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read label map: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) - {"topic", "sentiment"}:
        raise DataError(f'{path}: a label map is a JSON object with keys "topic" and/or "sentiment"')
    out: dict[str, dict[str, str]] = {}
    for head, mapping in raw.items():
        if isinstance(mapping, list):
            mapping = {str(i): name for i, name in enumerate(mapping)}
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError(f"{path}: {head!r} must map values to label names (an object or a list)")
        out[head] = {str(k).strip(): v for k, v in mapping.items()}
    return out


@dataclass(frozen=True)
class _Raw:
    """A source's rows as text, before validation against the label sets."""

    name: str
    texts: list[str]
    topics: list[str]
    sentiments: list[str]


def _load_hf(source: Source):  # -> (pandas.DataFrame, {column: ClassLabel names})
    """An `hf:` id through the `datasets` cache, or a directory written by `save_to_disk`."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"{source}: reading it needs the `datasets` package (pip install datasets)") from exc

    if source.location.startswith(HF_PREFIX):
        parts = source.location[len(HF_PREFIX) :].split(":")
        name, config = parts[0], (parts[2] if len(parts) > 2 and parts[2] else None)
        split = source.split or "train"
        try:
            ds = datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # offline misses, unknown splits and configs all raise differently
            offline = "HF_HUB_OFFLINE=1 is set; " if _offline() else ""
            raise DataError(
                f"{source}: cannot load split {split!r} through `datasets` ({offline}is it in the local "
                f"cache?): {type(exc).__name__}: {exc}"
            ) from exc
    else:
        try:
            ds = datasets.load_from_disk(source.location)
        except Exception as exc:
            raise DataError(f"{source}: cannot read as a saved dataset: {type(exc).__name__}: {exc}") from exc
        if isinstance(ds, datasets.DatasetDict):
            splits = list(ds)
            if source.split is None and len(splits) != 1:
                raise DataError(f"{source}: saved DatasetDict with splits {splits}: add #split=NAME")
            split = source.split or splits[0]
            if split not in ds:
                raise DataError(f"{source}: no split {split!r} (splits: {', '.join(splits)})")
            ds = ds[split]
    names = {
        col: list(feature.names)
        for col, feature in ds.features.items()
        if isinstance(feature, datasets.ClassLabel)
    }
    return ds.to_pandas(), names


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _read_source(source: Source, label_map: dict[str, dict[str, str]]) -> _Raw:
    path = Path(source.location)
    if source.location.startswith(HF_PREFIX) or path.is_dir():
        frame, class_names = _load_hf(source)
    else:
        frame, class_names = _read_frame(path), {}
    cols = source.columns
    wanted = [c for c in (cols.text, cols.topic, cols.sentiment) if c != NO_COLUMN]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))} (columns found: {have}; "
            f"for a source without one of the labels add #topic=- or #sentiment=-)"
        )
    if len(frame) == 0:
        raise DataError(f"{source}: empty dataset (header only, no rows)")

    def labels(head: str, column: str) -> list[str]:
        if column == NO_COLUMN:
            return [""] * len(frame)
        values = frame[column].tolist()
        mapping = label_map.get(head)
        if mapping is None and column in class_names:
            # the dataset's own ClassLabel names; a missing label is stored as -1
            mapping = {str(i): name for i, name in enumerate(class_names[column])}
            mapping["-1"] = ""
        # a label column with blanks comes back from pandas as floats: 2.0 is class id "2"
        cells = [_cell(int(v) if isinstance(v, float) and v.is_integer() else v) for v in values]
        if mapping is None:
            return cells
        # values the map does not name pass through and are checked against the label set later
        return [mapping.get(cell, cell) if cell else "" for cell in cells]

    return _Raw(
        name=str(source),
        texts=[_cell(v) for v in frame[cols.text].tolist()],
        topics=labels("topic", cols.topic),
        sentiments=[s.lower() for s in labels("sentiment", cols.sentiment)],
    )


def _to_dataset(raw: _Raw, source: Source, topic_labels: tuple[str, ...]) -> Dataset:
    """Validate one source's rows against the label sets (errors name the source and row)."""
    cols = source.columns
    topic_index = {label: i for i, label in enumerate(topic_labels)}
    sent_index = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
    keep_rows: list[int] = []
    t_ids: list[int] = []
    s_ids: list[int] = []
    for i, (text, topic, sent) in enumerate(zip(raw.texts, raw.topics, raw.sentiments, strict=True)):
        row = i + 1
        if not text:
            raise DataError(f"{raw.name}: row {row}: empty text in column '{cols.text}'")
        if topic and topic not in topic_index:
            raise DataError(
                f"{raw.name}: row {row}: unknown topic label {topic!r} in column '{cols.topic}' "
                f"(known: {', '.join(topic_labels)})"
            )
        if sent and sent not in sent_index:
            raise DataError(
                f"{raw.name}: row {row}: unknown sentiment label {sent!r} in column '{cols.sentiment}' "
                f"(known: {', '.join(SENTIMENT_LABELS)})"
            )
        if not topic and not sent:
            continue
        keep_rows.append(row)
        t_ids.append(topic_index[topic] if topic else MISSING)
        s_ids.append(sent_index[sent] if sent else MISSING)

    dropped = len(raw.texts) - len(keep_rows)
    if not keep_rows:
        raise DataError(
            f"{raw.name}: empty dataset: none of its {len(raw.texts)} rows has a topic or sentiment label"
        )
    if dropped:
        log.warning("%s: dropped %d row(s) with neither a topic nor a sentiment label", raw.name, dropped)
    return Dataset(
        texts=tuple(raw.texts[r - 1] for r in keep_rows),
        topics=np.asarray(t_ids, dtype=np.int64),
        sentiments=np.asarray(s_ids, dtype=np.int64),
        topic_labels=topic_labels,
        source=raw.name,
        rows=np.asarray(keep_rows, dtype=np.int64),
    )


def concat(parts: Sequence[Dataset]) -> Dataset:
    """Sources one after another; all must share the label sets. `rows` stay per-source row numbers."""
    first = parts[0]
    if len(parts) == 1:
        return first
    return Dataset(
        texts=tuple(t for p in parts for t in p.texts),
        topics=np.concatenate([p.topics for p in parts]),
        sentiments=np.concatenate([p.sentiments for p in parts]),
        topic_labels=first.topic_labels,
        sentiment_labels=first.sentiment_labels,
        source=" + ".join(p.source for p in parts),
        rows=np.concatenate([p.rows for p in parts]),
    )


def load_dataset(
    path: str | Path | Sequence[str | Path],
    *,
    columns: Columns = Columns(),
    topics: Sequence[str] | None = DEFAULT_TOPICS,
    label_map: str | Path | dict[str, dict[str, str]] | None = None,
) -> Dataset:
    """Read and validate one or more labelled sources, concatenated in the order given.

    Each source is a file, a `save_to_disk` directory or `hf:OWNER/NAME[:SPLIT[:CONFIG]]`, optionally
    with its own columns (`file.csv#text=headline#sentiment=-`); `columns` gives the rest. Every
    source is read and checked before any rows are returned, so a bad one stops the run before work.
    `topics` is the allowed topic taxonomy, in output order; a topic outside it is an error naming the
    source and row. With `topics=None` the label set is whatever topics the sources hold, sorted.
    """
    mapping = label_map if isinstance(label_map, dict) else read_label_map(label_map)
    sources = [parse_source(spec, columns) for spec in split_specs(path)]
    raws = [_read_source(source, mapping) for source in sources]
    if topics is None:
        topic_labels = tuple(sorted({t for raw in raws for t in raw.topics if t}))
    else:
        topic_labels = tuple(topics)
    return concat([_to_dataset(raw, src, topic_labels) for raw, src in zip(raws, sources, strict=True)])


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
