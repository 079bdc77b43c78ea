"""Small real models for tests: built locally in seconds, exported through the real training path.

Nothing here is a stand-in: `build_tiny_artifact` trains a 2-layer BERT (hidden 32) with a WordPiece
tokenizer learnt on generated words, and `build_corpus_artifact` a 2-layer BERT (hidden 128) with a
tokenizer learnt on the starter corpus; both go through `training.train.train_and_export`, i.e.
the same data checks, loop, ONNX export, validation and artifact writing as `finsent train`.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def generated_words(n: int, seed: int) -> list[str]:
    """n distinct pronounceable nonsense words (CV syllables), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        syllables = int(rng.integers(2, 4))
        word = "".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class TinyVocabulary:
    """Keywords that decide a generated headline's topic and sentiment; the rest is filler.

    Tests can build a text of a known class with `headline(topic, sentiment)`.
    """

    def __init__(self, topics: Sequence[str], seed: int = 0, per_class: int = 4, filler: int = 160) -> None:
        words = generated_words(len(topics) * per_class + 3 * per_class + filler, seed)
        self.topics = tuple(topics)
        self.sentiments = ("negative", "neutral", "positive")
        self.topic_words = {t: words[i * per_class : (i + 1) * per_class] for i, t in enumerate(self.topics)}
        off = len(self.topics) * per_class
        self.sentiment_words = {
            s: words[off + i * per_class : off + (i + 1) * per_class] for i, s in enumerate(self.sentiments)
        }
        self.filler = words[off + 3 * per_class :]

    def headline(self, topic: str, sentiment: str, rng: np.random.Generator | None = None) -> str:
        rng = rng or np.random.default_rng(0)
        parts = list(rng.choice(self.topic_words[topic], size=2))
        parts += list(rng.choice(self.sentiment_words[sentiment], size=2))
        parts += list(rng.choice(self.filler, size=int(rng.integers(2, 7))))
        rng.shuffle(parts)
        return " ".join(parts)

    def rows(self, per_topic: int, seed: int) -> list[dict[str, str]]:
        """Labelled rows; every 10th row lacks its sentiment and every 13th its topic (masking)."""
        rng = np.random.default_rng(seed)
        out = []
        for i in range(per_topic * len(self.topics)):
            topic = self.topics[i % len(self.topics)]
            sentiment = self.sentiments[(i // len(self.topics)) % 3]
            out.append(
                {
                    "text": self.headline(topic, sentiment, rng),
                    "topic": "" if i % 13 == 5 else topic,
                    "sentiment": "" if i % 10 == 3 else sentiment,
                }
            )
        return out


def write_csv(path: Path, rows: Iterable[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "topic", "sentiment"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def wordpiece_vocab(texts: Iterable[str], size: int, normalizer: Any, pre: Any) -> dict[str, int]:
    """A WordPiece vocabulary learnt from `texts`: special tokens, every character (alone and as a
    continuation piece, so any word can be spelled), then the most frequent whole words.

    The `tokenizers` WordPieceTrainer breaks ties between equally frequent pieces in hash order,
    which differs from run to run; ranking by (count, word) here keeps test artifacts reproducible.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        words = pre.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(word for word, _span in words)
    chars = sorted({c for word in counts for c in word})
    tokens = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    ranked = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens += ranked[: max(0, size - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def tiny_encoder() -> Any:
    """A one-layer, 16-wide random BERT in eval mode, seeded: for unit tests of what sits on an encoder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    return BertModel(config).eval()


def build_base_model(
    directory: Path,
    texts: Iterable[str],
    *,
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    seed: int,
    max_positions: int = 128,
    arch: str = "bert",
) -> Path:
    """A randomly initialised BERT (or, `arch="mpnet"`, MPNet: no token types, relative position
    buckets, the larger optional base's architecture) + a WordPiece fast tokenizer learnt on
    `texts`, saved as a HF dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    _offline()
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(texts, vocab_size, normalizer, pre)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(directory))
    shape = dict(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    if arch == "mpnet":
        from transformers import MPNetConfig, MPNetModel

        # MPNet numbers positions from pad_token_id + 1, hence the extra room
        MPNetModel(
            MPNetConfig(**shape, max_position_embeddings=max_positions + shape["pad_token_id"] + 2)
        ).save_pretrained(str(directory))
    else:
        BertModel(BertConfig(**shape, max_position_embeddings=max_positions)).save_pretrained(str(directory))
    return directory


def build_tiny_artifact(out_root: Path, *, topics: Sequence[str] | None = None, seed: int = 0) -> Path:
    """A tiny trained-for-seconds model as a real artifact (fp32, fp16, int8); returns its directory."""
    from training.config import TrainConfig
    from training.data import DEFAULT_TOPICS
    from training.train import train_and_export

    _offline()
    topics = tuple(topics or DEFAULT_TOPICS)
    vocab = TinyVocabulary(topics, seed=seed)
    rows = vocab.rows(per_topic=30, seed=seed)
    data = write_csv(out_root / "tiny.csv", rows)
    base = build_base_model(
        out_root / "base",
        (r["text"] for r in rows),
        vocab_size=600,
        # hidden 64, not 32: at 32 dims int8 dynamic quantisation flips ~1% of predictions, which
        # the export check (rightly) rejects; at 64 the tiny model quantises as cleanly as MiniLM
        hidden=64,
        layers=2,
        heads=2,
        seed=seed,
    )
    config = TrainConfig(
        data=str(data),
        out=str(out_root / "artifacts"),
        base_model=str(base),
        topics=",".join(topics),
        max_length=32,
        # >= 100 validation rows: the 99% agreement check then tolerates one borderline flip
        valid_fraction=0.2,
        # trained well past "good enough", so few validation rows sit near a decision boundary
        # where int8 rounding could flip them
        epochs=20,
        batch_size=16,
        lr=3e-3,
        head_lr=3e-3,
        warmup_ratio=0.05,
        patience=20,
        seed=seed,
        threads=1,
        freeze_embeddings=False,  # random embeddings must learn; only pre-trained ones stay frozen
        progress=False,
        rdrop=0.0,  # the tests' models as tuned; R-Drop has its own tests (test_regularize.py)
    )
    return train_and_export(config, say=lambda _msg: None)


def tiny_config(
    out_root: Path, topics: Sequence[str], *, seed: int = 0, per_topic: int = 80, arch: str = "bert"
) -> Any:
    """Data + base model (`arch`: bert or mpnet) + TrainConfig for a small topic set; fit() on it takes seconds."""
    from training.config import TrainConfig

    vocab = TinyVocabulary(topics, seed=seed)
    rows = vocab.rows(per_topic=per_topic, seed=seed)
    data = write_csv(out_root / "train.csv", rows)
    base = build_base_model(
        out_root / "base",
        (r["text"] for r in rows),
        vocab_size=300,
        hidden=64,
        layers=2,
        heads=2,
        seed=seed,
        arch=arch,
    )
    return TrainConfig(
        data=str(data),
        out=str(out_root / "artifacts"),
        base_model=str(base),
        topics="data",
        max_length=32,
        valid_fraction=0.35,
        epochs=8,
        patience=8,
        lr=3e-3,
        head_lr=3e-3,
        seed=seed,
        threads=1,
        freeze_embeddings=False,  # random embeddings must learn; only pre-trained ones stay frozen
        progress=False,
        rdrop=0.0,  # the tests' models as tuned; R-Drop has its own tests (test_regularize.py)
    )


def read_texts(csv_path: Path, column: str = "text") -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return [row[column] for row in csv.DictReader(fh) if row.get(column)]


def build_corpus_artifact(out_root: Path, corpus_csv: Path, *, epochs: int = 3, seed: int = 0) -> Path:
    """A small BERT trained from scratch on `corpus_csv` (tokenizer learnt on it) as a real artifact.

    The validation split (15%, stratified, seeded) is held out from training; its accuracy is in
    the artifact's manifest (`metrics.topic_accuracy`).
    """
    from training.config import TrainConfig
    from training.train import train_and_export

    _offline()
    base = build_base_model(
        out_root / "base",
        read_texts(corpus_csv),
        vocab_size=4000,
        hidden=128,
        layers=2,
        heads=4,
        seed=seed,
    )
    config = TrainConfig(
        data=str(corpus_csv),
        out=str(out_root / "artifacts"),
        base_model=str(base),
        topics="data",
        max_length=48,
        epochs=epochs,
        batch_size=32,
        lr=1e-3,
        head_lr=2e-3,
        warmup_ratio=0.1,
        patience=epochs,
        seed=seed,
        # the streaming tests' model keeps the weighted loss it was tuned with (product default: off)
        class_weighting=True,
        # one thread: small matrices gain little from two, and on a shared 2-core machine two
        # OpenMP threads spin against each other and the other test processes
        threads=1,
        freeze_embeddings=False,  # random embeddings must learn; only pre-trained ones stay frozen
        progress=False,
        rdrop=0.0,  # the tests' models as tuned; R-Drop has its own tests (test_regularize.py)
    )
    return train_and_export(config, say=lambda _msg: None)
