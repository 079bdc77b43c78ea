"""The CUDA path of the Scorer: CUDA execution provider, fp16 variant, IO binding.

Needs a CUDA GPU: skipped (with the reason printed by `pytest -ra`) everywhere else, which on the
2-core development machines means always. `make bench` on a GPU machine runs the same path at scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact
from models.runtime import Scorer, gpu_present

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not gpu_present(),
        reason="no CUDA GPU on this machine: the CUDA provider / fp16 / IO binding path is not run",
    ),
]


def test_cuda_fp16_with_io_binding_agrees_with_cpu_fp32(tiny_artifact: Path) -> None:
    from tests.support.tiny_models import TinyVocabulary
    from training.data import DEFAULT_TOPICS

    art = load_artifact(tiny_artifact)
    gpu = Scorer(art, provider="auto")
    assert (gpu.provider, gpu.variant) == ("cuda", "fp16"), "auto must pick CUDA + fp16 when a GPU is present"
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    assert gpu._io_binding

    vocab = TinyVocabulary(DEFAULT_TOPICS, seed=0)
    rng = np.random.default_rng(7)
    texts = [vocab.headline(t, s, rng) for t in DEFAULT_TOPICS for s in vocab.sentiments] * 40
    cpu = Scorer(art, provider="cpu", variant="fp32")
    gt, gs = gpu.probabilities(texts)
    ct, cs = cpu.probabilities(texts)
    assert gt.shape == ct.shape and gs.shape == cs.shape
    np.testing.assert_allclose(gs.sum(axis=1), 1.0, atol=1e-2)
    assert (gt.argmax(1) == ct.argmax(1)).mean() >= 0.99
    assert (gs.argmax(1) == cs.argmax(1)).mean() >= 0.99
    # A large batch (several GPU sub-batches) keeps input order.
    preds = gpu.score(texts)
    assert [p.topic for p in preds] == [art.topic_labels[i] for i in gt.argmax(1)]
