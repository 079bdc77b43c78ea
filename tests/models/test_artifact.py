"""The artifact contract and the Scorer, without torch: a small ONNX graph built by hand.

The graph is a masked mean of token embeddings followed by two softmax heads — the same inputs and
outputs as an exported encoder, so loading, verification, length-grouped batching and provider
selection run through real ONNX Runtime and a real fast tokenizer.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from devstack.finsent import finsent_argv
from models.artifact import MANIFEST_NAME, TOKENIZER_FILE, verify_artifact
from models.errors import ArtifactError, ConfigError
from models.runtime import Scorer, resolve_provider
from tests.support.toy_artifact import TOPICS, build_toy_artifact


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return build_toy_artifact(tmp_path)


def test_publish_points_latest_at_the_new_version(toy: Path) -> None:
    latest = toy.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == toy.resolve()
    art = verify_artifact(latest)
    assert art.topic_labels == tuple(TOPICS) and art.variants == ("fp32",)
    manifest = json.loads((toy / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"labels/topic.txt", "labels/sentiment.txt", TOKENIZER_FILE}


def test_tampered_onnx_bytes_are_refused(toy: Path) -> None:
    with open(toy / "model.onnx", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    with pytest.raises(ArtifactError, match=r"model.onnx: checksum mismatch for fp32 ONNX model"):
        verify_artifact(toy)


def test_missing_label_file_is_refused(toy: Path) -> None:
    (toy / "labels" / "topic.txt").unlink()
    with pytest.raises(ArtifactError, match=r"topic.txt.*missing"):
        verify_artifact(toy)


def test_edited_label_file_is_refused(toy: Path) -> None:
    (toy / "labels" / "sentiment.txt").write_text("bad\nneutral\ngood\n")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        verify_artifact(toy)


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        verify_artifact(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="manifest missing"):
        verify_artifact(tmp_path)


def test_scorer_groups_by_length_but_returns_input_order(toy: Path) -> None:
    scorer = Scorer(verify_artifact(toy), provider="cpu", sub_batch=2)
    assert (scorer.provider, scorer.variant) == ("cpu", "fp32")
    texts = ["oil falls", "quarter profit beats rises rises rises oil", "jobs", "inflation rates rises falls"]
    topic, sent = scorer.probabilities(texts)
    # Each text alone (no batching, no padding) must give the same rows: grouping is invisible.
    for i, text in enumerate(texts):
        t1, s1 = scorer.probabilities([text])
        np.testing.assert_allclose(topic[i], t1[0], atol=1e-6)
        np.testing.assert_allclose(sent[i], s1[0], atol=1e-6)
    preds = scorer.score(texts)
    assert [p.topic for p in preds] == [TOPICS[int(r.argmax())] for r in topic]
    for p, row in zip(preds, sent, strict=True):
        assert p.score == pytest.approx(float(row[2] - row[0]), abs=1e-6)
        assert sum(p.sentiment_probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert scorer.score([]) == []


def test_provider_resolution() -> None:
    avail = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_provider("auto", avail, has_gpu=False) == "cpu"
    assert resolve_provider("auto", avail, has_gpu=True) == "cuda"
    assert resolve_provider("cuda", ["CPUExecutionProvider"], has_gpu=True) == "cpu"
    with pytest.raises(ConfigError):
        resolve_provider("tpu", avail, has_gpu=True)


def test_missing_variant_is_a_clear_error(toy: Path) -> None:
    with pytest.raises(ArtifactError, match="has no 'int8' variant"):
        Scorer(verify_artifact(toy), provider="cpu", variant="int8")


def test_score_cli_prints_json_and_refuses_bad_artifacts(toy: Path, tmp_path: Path) -> None:
    finsent = finsent_argv()
    out = subprocess.run(
        [*finsent, "score", "--model", str(toy.parent / "latest"), "oil falls", "profit beats"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["oil falls", "profit beats"]
    assert all(r["model_version"] and r["topic"] in TOPICS for r in rows)
    bad = subprocess.run(
        [*finsent, "score", "--model", str(tmp_path / "missing"), "x"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "no such artifact directory" in bad.stderr and "Traceback" not in bad.stderr
