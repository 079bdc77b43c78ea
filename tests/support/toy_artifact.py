"""A toy model artifact built by hand (no torch): a masked mean of token embeddings and two softmax
heads over a word-level tokenizer, with the same inputs and outputs as an exported encoder, and rows
of input made of its words. Shared by the artifact, scoring, daemon and replay tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from models.artifact import (  # noqa: F401 - point_latest is re-exported for the swap tests
    TOKENIZER_FILE,
    new_version,
    point_latest,
    publish,
    write_labels,
    write_manifest,
)
from pipeline.records import iso_utc

TOPICS = ["Energy | Oil", "Earnings", "Macro"]
SENTIMENTS = ["negative", "neutral", "positive"]
WORDS = "oil crude refinery profit quarter beats misses inflation jobs rates falls rises".split()


def _graph(vocab: int, dim: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=(vocab, dim)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.normal(size=(dim, len(TOPICS))).astype(np.float32), "w_topic"),
        numpy_helper.from_array(rng.normal(size=(dim, len(SENTIMENTS))).astype(np.float32), "w_sent"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w_topic"], ["lt"]),
        helper.make_node("Softmax", ["lt"], ["topic_probs"], axis=-1),
        helper.make_node("MatMul", ["pooled", "w_sent"], ["ls"]),
        helper.make_node("Softmax", ["ls"], ["sentiment_probs"], axis=-1),
    ]
    dyn = ["batch_size", "sequence_length"]
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, dyn),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dyn),
        ],
        [
            helper.make_tensor_value_info("topic_probs", TensorProto.FLOAT, ["batch_size", len(TOPICS)]),
            helper.make_tensor_value_info("sentiment_probs", TensorProto.FLOAT, ["batch_size", 3]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_toy_artifact(root: Path) -> Path:
    staging = root / "staging"
    (staging / "tokenizer").mkdir(parents=True)
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    )
    tok.save(str(staging / TOKENIZER_FILE))
    onnx.save(_graph(tok.get_vocab_size(), 8), str(staging / "model.onnx"))
    write_labels(staging, TOPICS, SENTIMENTS)
    write_manifest(
        staging,
        {
            "version": new_version(),
            "base_model": "toy",
            "labels": {"topic": TOPICS, "sentiment": SENTIMENTS},
            "max_length": 16,
            "pad_token_id": 0,
        },
    )
    return publish(staging, root / "artifacts", "v1")


T0_MS = 1_772_445_600_000  # 2026-03-02T10:00Z


def good_rows(n: int, prefix: str = "g") -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "headline": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(4)),
            "published_at": iso_utc(T0_MS + i * 10_000),
            "source": "test",
        }
        for i in range(n)
    ]


OTHER_TOPICS = ["Energy | Oil", "Earnings", "Crypto"]


def toy_version(
    root: Path, version: str, *, seed: int = 0, topics: list[str] | None = None, **manifest_extra: Any
) -> Path:
    """A toy artifact (hand-built ONNX graph with 3 topic columns) at `root/<version>`."""
    topics = topics or TOPICS
    staging = root / f".staging-{version}"
    (staging / "tokenizer").mkdir(parents=True)
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    )
    tok.save(str(staging / TOKENIZER_FILE))
    onnx.save(_graph(tok.get_vocab_size(), 8, seed=seed), str(staging / "model.onnx"))
    write_labels(staging, topics, SENTIMENTS)
    manifest = {
        "version": version,
        "base_model": "toy",
        "max_length": 16,
        "pad_token_id": 0,
        **manifest_extra,
    }
    write_manifest(staging, {**manifest, "labels": {"topic": topics, "sentiment": SENTIMENTS}})
    final = root / version
    staging.rename(final)
    return final


def corrupt(artifact: Path) -> Path:
    """Overwrite the last bytes of the ONNX graph, as a half-finished copy would leave it."""
    with open(artifact / "model.onnx", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    return artifact / "model.onnx"
