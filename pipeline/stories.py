"""Stories, not reprints: group near-duplicate headlines within an event-time horizon. Pure.

The same story reaches the firehose many times: wire updates (`UPDATE 2-`), flashes (`BREAKING:`),
retweets (`RT @desk:`), syndication with a credit (`- sources`, `(Reuters)`), a link appended. Fifty
copies of one headline are one piece of news, so each scored record carries the key of its story and
whether it is the first of that story.

- `normalise` strips what a reprint adds (wire prefixes, retweet and `via @x` credits, trailing source
  credits, URLs) and folds case, punctuation and spacing.
- `story_key(text)` is a digest of the normalised text: the same text under any of those disguises
  has one key, in every process (blake2b, never Python's salted `hash()`).
- `StoryIndex` remembers recent texts as shingle sets (content words and word pairs) and finds
  near-duplicates with MinHash + LSH bands, then checks each candidate exactly (Jaccard similarity, or
  containment for an update that appends a clause). A text joins the story of its closest match
  seen within `horizon_ms` of event time, else it starts a story whose key is its own `story_key`.
  Memory is bounded: entries older than the horizon (behind the newest event time seen) are evicted,
  like `windows.DedupIndex`, and at most `capacity` are kept.

Hand-written rather than datasketch: we need eviction by event time and stable keys, and datasketch
would bring scipy into the torch-free daemon image.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

HOUR_MS = 3_600_000
DEFAULT_HORIZON_MS = 6 * HOUR_MS  # a wire story's updates usually follow within hours
DEFAULT_CAPACITY = 50_000  # entries kept whatever the horizon (a burst cannot grow memory without end)
JACCARD_MIN = 0.5  # shingle-set similarity at which two texts are one story (docs/BENCHMARKS.md)
CONTAINMENT_MIN = 0.8  # ... or this share of the shorter text's shingles in the longer one,
CONTAINMENT_MIN_SHINGLES = 9  # when the shorter has at least this many (about five content words)
OTHER_LEAD_MIN = 0.8  # Jaccard needed when their first content words differ (`match_score`)
NUM_PERM = 32
ROWS_PER_BAND = 2  # 16 bands of 2: a pair at Jaccard 0.5 becomes a candidate with p = 0.99

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_RT = re.compile(r"^\s*RT\s+@\w+\s*:?\s*", re.IGNORECASE)
_VIA = re.compile(r"\s*\b(?:via|h/t)\s+@\w+\s*$", re.IGNORECASE)
_WIRE_PREFIX = re.compile(
    r"^\s*(?:(?:update\s*\d*|refile|corrected|correction|rpt|repeat|exclusive|breaking(?:\s+news)?|"
    r"flash|alert|urgent|wrapup\s*\d*|just\s+in|developing|market\s+talk)\s*(?:[-:|\u2013\u2014]+|\s-\s)\s*)+",
    re.IGNORECASE,
)
_CREDIT = (
    r"sources?(?:\s+(?:say|said|says))?|report(?:s|ed)?|people\s+familiar|filing|statement|memo|"
    r"reuters|bloomberg|dow\s+jones|ap|afp|wsj|ft|cnbc|marketwatch"
)
_TRAILING_CREDIT = re.compile(
    rf"\s*(?:[-|:\u2013\u2014]+\s*(?:{_CREDIT})|\((?:{_CREDIT})\))\s*[.!]*\s*$", re.I
)
_CREDIT_MARKS = frozenset("-|:\u2013\u2014(")  # a trailing credit starts with one of these
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# Words that carry no story: dropping them keeps "X falls as Y" and "X falls on Y" close and stops
# two unrelated headlines from matching on their glue words.
_STOP = frozenset(
    "a an the of to in on at for from by with and or as is are was were be been it its this that "
    "after over amid into than says said say".split()
)


def _strip(text: str) -> str:
    """The text without what a reprint adds, case kept."""
    t = unicodedata.normalize("NFKC", text)
    # Each guard is a literal its pattern cannot match without: the unanchored patterns scan every
    # position, and most texts carry none of these marks (the story index runs on every message).
    if "://" in t or "www." in t.casefold():
        t = _URL.sub(" ", t)
    for _ in range(3):  # "RT @x: UPDATE 2-... - sources via @y": peel every layer, in any order
        before = t
        t = _RT.sub("", t)
        t = _WIRE_PREFIX.sub("", t)
        if "@" in t:
            t = _VIA.sub("", t)
        if _CREDIT_MARKS.intersection(t):
            t = _TRAILING_CREDIT.sub("", t)
        if t == before:
            break
    return t


def _fold(stripped: str) -> str:
    return _NON_WORD.sub(" ", stripped.casefold()).strip()


def normalise(text: str) -> str:
    """The text without what a reprint adds, case, punctuation and spacing folded. Pure."""
    return _fold(_strip(text))


def names(stripped: str) -> frozenset[str] | None:
    """Capitalised words after the first (places, companies, people) of a text already without its
    reprint marks, folded; None when the case says nothing (title case, capitals). Pure."""
    words = [w for w in _NON_WORD.split(stripped) if w and w[0].isalpha()]
    capitalised = sum(w[0].isupper() for w in words)
    if not words or capitalised > 0.6 * len(words) or all(w.isupper() for w in words):
        return None
    return frozenset(w.casefold() for w in words[1:] if w[0].isupper())


def story_key(text: str, normalised: str | None = None) -> str:
    """The key of a text's own story: a digest of its normalised form, stable across processes
    (`normalised`: `normalise(text)` when the caller has it already)."""
    folded = (normalise(text) if normalised is None else normalised) or _NON_WORD.sub(
        " ", text.casefold()
    ).strip()
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=10).hexdigest()


def _h32(s: str) -> int:
    # CRC-32: in the standard library, fast and the same in every process; the signature's
    # finaliser below does the mixing MinHash needs.
    return zlib.crc32(s.encode("utf-8"))


# Which way a headline says something moved. Two texts that move opposite ways ("trial succeeds" /
# "trial fails") are two stories however many words they share.
_UP = frozenset(
    "rise rises rising rose gain gains gained jump jumps jumped surge surges surged soar soars soared "
    "climb climbs climbed rally rallies rallied beat beats tops higher up raise raises raised lifts "
    "hike hikes hiked upgrade upgrades upgraded succeeds wins won rebound rebounds".split()
)
_DOWN = frozenset(
    "fall falls fell falling drop drops dropped slide slides slid slip slips slipped tumble tumbles "
    "tumbled plunge plunges plunged sink sinks sank miss misses missed lower down cut cuts lowers "
    "downgrade downgrades downgraded fails failed loses lost weakens slump slumps".split()
)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    shingles: frozenset[int]  # content words and adjacent content-word pairs, as 32-bit digests
    lead: int  # digest of the first content word (0: none): a headline's subject comes first
    numbers: frozenset[str] = frozenset()  # the figures it states
    direction: int = 0  # +1 up, -1 down, 0 neither or both
    names: frozenset[str] | None = None  # see `names`


def fingerprint(text: str, stripped: str | None = None) -> Fingerprint:
    """What near-duplicate matching compares (`stripped`: `_strip(text)` when the caller has it). Pure."""
    stripped = _strip(text) if stripped is None else stripped
    words = [w for w in _fold(stripped).split() if w not in _STOP]
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    up, down = any(w in _UP for w in words), any(w in _DOWN for w in words)
    return Fingerprint(
        frozenset(map(zlib.crc32, map(str.encode, grams))),  # `_h32` of each, without a call per gram
        _h32(words[0]) if words else 0,
        frozenset(w for w in words if w.isdigit()),
        int(up) - int(down),
        names(stripped),
    )


def conflict(a: Fingerprint, b: Fingerprint) -> bool:
    """True when two texts state different facts: other figures (an update may add a figure, not
    change one: "$4 trillion" / "$5 trillion"), opposite directions, or other names on both sides
    ("Markets shut in India" / "... in Japan"; a copy that drops a name is still a copy). Pure."""
    if not (a.numbers <= b.numbers or b.numbers <= a.numbers):
        return True
    if a.names is not None and b.names is not None and a.names - b.names and b.names - a.names:
        return True
    return a.direction * b.direction < 0


# One hash function per signature row: the shingle digest xor a fixed 64-bit seed, then murmur3's
# 64-bit finaliser (wrapping uint64 arithmetic). Seeds from a seeded generator, so every process agrees.
_rng = random.Random(20260302)
_SEEDS = np.array([_rng.getrandbits(64) for _ in range(NUM_PERM)], dtype=np.uint64)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


_BAND_SALT = np.arange(NUM_PERM // ROWS_PER_BAND, dtype=np.uint64) * _M2


def _fmix(v: np.ndarray) -> np.ndarray:
    v ^= v >> _S33
    v *= _M1
    v ^= v >> _S33
    v *= _M2
    v ^= v >> _S33
    return v


def band_keys(sh: Iterable[int]) -> np.ndarray:
    """The LSH band keys of a shingle set: its MinHash signature cut into bands of ROWS_PER_BAND,
    each band (with its number) hashed to one uint64. A collision only adds a candidate to check."""
    x = np.fromiter(sh, dtype=np.uint64)
    if x.size == 0:
        return np.zeros(0, dtype=np.uint64)
    sig = _fmix(x[:, None] ^ _SEEDS[None, :]).min(axis=0).reshape(-1, ROWS_PER_BAND)
    key = _BAND_SALT.copy()
    for row in range(ROWS_PER_BAND):
        key = _fmix(key ^ sig[:, row])
    return key


def band_keys_many(sets: Sequence[Iterable[int]]) -> list[np.ndarray]:
    """`band_keys` of each shingle set, computed for all of them in one pass: one text's set is
    ~30 digests, so per text the work is a dozen small numpy calls whose overhead outweighed the
    hashing (13% of the daemon's busy samples with a fast model). The same keys as `band_keys`."""
    arrays = [np.fromiter(sh, dtype=np.uint64) for sh in sets]
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.uint64)] * len(arrays)
    full = np.flatnonzero(sizes)
    if full.size == 0:
        return out
    x = np.concatenate([arrays[i] for i in full])
    starts = np.concatenate(([0], np.cumsum(sizes[full])[:-1]))
    # (shingles, NUM_PERM) hashes, then the minimum over each text's rows: its signature
    sig = np.minimum.reduceat(_fmix(x[:, None] ^ _SEEDS[None, :]), starts, axis=0)
    sig = sig.reshape(full.size, -1, ROWS_PER_BAND)
    key = np.broadcast_to(_BAND_SALT, sig.shape[:2]).copy()
    for row in range(ROWS_PER_BAND):
        key = _fmix(key ^ sig[:, :, row])
    for j, i in enumerate(full):
        out[i] = key[j]
    return out


def similar(a: frozenset[int], b: frozenset[int], containment: bool = True) -> float:
    """How alike two shingle sets are, 0..1: Jaccard, or (with `containment`) the share of the
    shorter in the longer when it is long enough to mean something (an UPDATE that appends a
    clause). Pure."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    score = inter / (len(a) + len(b) - inter)
    shorter = min(len(a), len(b))
    if containment and shorter >= CONTAINMENT_MIN_SHINGLES and inter / shorter >= CONTAINMENT_MIN:
        score = max(score, inter / shorter)
    return score


def match_score(a: Fingerprint, b: Fingerprint, min_similarity: float = JACCARD_MIN) -> float | None:
    """The similarity of two texts when they are one story, else None. Pure.

    Two headlines that open on different subjects must be far closer to count as one: a template
    with another company in front ("Tellwater Bank profit misses estimates" / "Orrin Aerospace
    profit misses estimates") shares most of its words and is still another story."""
    if conflict(a, b):
        return None
    same_lead = a.lead == b.lead
    s = similar(a.shingles, b.shingles, containment=same_lead)
    bar = min_similarity if same_lead else max(min_similarity, OTHER_LEAD_MIN)
    return s if s >= bar else None


@dataclass(frozen=True, slots=True)
class StoryAssignment:
    story: str  # the key of the first text of this story seen within the horizon
    first: bool  # True when this text started the story


@dataclass(slots=True)
class _Entry:
    seq: int
    event_time_ms: int
    story: str
    shingles: bytes  # packed uint32 digests: a tenth of a frozenset's memory
    rest: Fingerprint  # the fingerprint without its shingles
    bands: bytes  # the band keys, packed uint64
    exact: str
    item_id: str | None

    def fingerprint(self) -> Fingerprint:
        shingles = frozenset(np.frombuffer(self.shingles, dtype=np.uint32).tolist())
        r = self.rest  # built field by field: dataclasses.replace was 13% of assign's time
        return Fingerprint(shingles, r.lead, r.numbers, r.direction, r.names)


class StoryIndex:
    """Texts seen within a horizon of event time, grouped into stories. Deterministic for a given
    order of input; one per score-stage process, so it sees only that process's partitions."""

    def __init__(
        self,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        capacity: int = DEFAULT_CAPACITY,
        min_similarity: float = JACCARD_MIN,
    ) -> None:
        if horizon_ms <= 0 or capacity <= 0:
            raise ValueError("story horizon and capacity must be positive")
        self.horizon_ms = horizon_ms
        self.capacity = capacity
        self.min_similarity = min_similarity
        self._entries: dict[int, _Entry] = {}
        self._by_time: list[tuple[int, int]] = []  # (event time, seq): eviction order
        # band key -> the entry (seq) with it, or a list of them when several: most keys have one
        self._buckets: dict[int, int | list[int]] = {}
        self._exact: dict[str, int] = {}  # normalised-text key -> newest entry with it
        self._ids: dict[str, StoryAssignment] = {}
        self._seq = 0
        self._newest_ms: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def assign(self, text: str, event_time_ms: int, item_id: str | None = None) -> StoryAssignment:
        """The story of `text` at `event_time_ms`; remembers it. An id seen before (a re-delivery)
        gets its earlier answer, so a re-read message never turns its own story into a reprint."""
        stripped = _strip(text)
        fp = fingerprint(text, stripped)
        return self._assign_one(
            fp, story_key(text, _fold(stripped)), band_keys(fp.shingles), event_time_ms, item_id
        )

    def assign_many(self, items: Sequence[tuple[str, int, str | None]]) -> list[StoryAssignment]:
        """`assign` for each (text, event time, id) in order, with the pure per-text work (strip,
        fingerprint, MinHash bands) done for the whole batch first: the same answers as calling
        `assign` one by one, for a fraction of the cost per text."""
        stripped = [_strip(text) for text, _, _ in items]
        exacts = [story_key(text, _fold(st)) for (text, _, _), st in zip(items, stripped, strict=True)]
        fps = [fingerprint(text, st) for (text, _, _), st in zip(items, stripped, strict=True)]
        bands = band_keys_many([fp.shingles for fp in fps])
        return [
            self._assign_one(fp, exact, keys, event_time_ms, item_id)
            for (_, event_time_ms, item_id), exact, fp, keys in zip(items, exacts, fps, bands, strict=True)
        ]

    def _assign_one(
        self, fp: Fingerprint, exact: str, keys: np.ndarray, event_time_ms: int, item_id: str | None
    ) -> StoryAssignment:
        if item_id is not None and item_id in self._ids:
            return self._ids[item_id]
        self._newest_ms = event_time_ms if self._newest_ms is None else max(self._newest_ms, event_time_ms)
        cutoff = self._newest_ms - self.horizon_ms
        self._evict(cutoff)
        match = self._match(exact, fp, keys.tolist(), event_time_ms)
        result = StoryAssignment(exact, True) if match is None else StoryAssignment(match.story, False)
        packed = np.fromiter(fp.shingles, dtype=np.uint32).tobytes()
        rest = Fingerprint(frozenset(), fp.lead, fp.numbers, fp.direction, fp.names)
        entry = _Entry(self._seq, event_time_ms, result.story, packed, rest, keys.tobytes(), exact, item_id)
        self._add(entry, result)
        self._evict(cutoff)  # an event already beyond the horizon is answered, not remembered
        return result

    def _match(self, exact: str, fp: Fingerprint, bands: list[int], event_time_ms: int) -> _Entry | None:
        def within(e: _Entry) -> bool:
            return abs(e.event_time_ms - event_time_ms) <= self.horizon_ms

        seq = self._exact.get(exact)
        if seq is not None and within(self._entries[seq]):
            return self._entries[seq]
        candidates: set[int] = set()
        for b in bands:
            found = self._buckets.get(b)
            if isinstance(found, int):
                candidates.add(found)
            elif found is not None:
                candidates.update(found)
        best: tuple[float, int] | None = None
        for c in candidates:
            e = self._entries[c]
            # conflict() needs no shingles: most candidates end here, before unpacking them
            if not within(e) or conflict(fp, e.rest):
                continue
            s = match_score(fp, e.fingerprint(), self.min_similarity)
            # the closest match wins; between equals the earliest, so the outcome never depends on set order
            if s is not None and (best is None or (s, -c) > (best[0], -best[1])):
                best = (s, c)
        return None if best is None else self._entries[best[1]]

    def _add(self, e: _Entry, result: StoryAssignment) -> None:
        self._seq += 1
        self._entries[e.seq] = e
        heapq.heappush(self._by_time, (e.event_time_ms, e.seq))
        for b in np.frombuffer(e.bands, dtype=np.uint64).tolist():
            found = self._buckets.get(b)
            if found is None:
                self._buckets[b] = e.seq
            elif isinstance(found, int):
                self._buckets[b] = [found, e.seq]
            else:
                found.append(e.seq)
        self._exact[e.exact] = e.seq
        if e.item_id is not None:
            self._ids[e.item_id] = result
        while len(self._entries) > self.capacity:
            self._pop()

    def _evict(self, cutoff_ms: int) -> None:
        while self._by_time and self._by_time[0][0] < cutoff_ms:
            self._pop()

    def _pop(self) -> None:
        _, seq = heapq.heappop(self._by_time)
        e = self._entries.pop(seq)
        for b in np.frombuffer(e.bands, dtype=np.uint64).tolist():
            found = self._buckets[b]
            if isinstance(found, int):
                del self._buckets[b]
                continue
            found.remove(seq)  # usually at the front: the oldest entries go first
            if len(found) == 1:
                self._buckets[b] = found[0]
        if self._exact.get(e.exact) == seq:
            del self._exact[e.exact]
        if e.item_id is not None:
            self._ids.pop(e.item_id, None)
