"""`finsent train --teacher ARTIFACT`: a model of one base taught by a finished model of another
(the teacher read through ONNX Runtime), every row getting soft targets for both heads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact
from models.errors import ConfigError
from models.runtime import Scorer
from pipeline.cli import main
from training.inference import scorer_probabilities
from training.teacher import artifact_soft_targets, label_columns

TOPICS = ("Earnings", "Dividend", "IPO", "Macro")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A 2-layer, 64-wide teacher artifact and the config it was made with."""
    from tests.support.tiny_models import tiny_config
    from training.train import train_and_export

    root = tmp_path_factory.mktemp("teacher")
    config = tiny_config(root, TOPICS, seed=5)
    return train_and_export(config, say=lambda _m: None), config


def test_label_columns_follow_the_students_order_and_name_what_is_missing() -> None:
    assert label_columns(("A", "B", "C"), ("C", "A"), "topic", "t") == [2, 0]
    with pytest.raises(ConfigError, match=r"--teacher t: its topic head has no 'D' \(it has A, B, C\)"):
        label_columns(("A", "B", "C"), ("A", "D"), "topic", "t")


def test_soft_targets_are_the_teachers_probabilities_in_the_students_order(teacher) -> None:
    from training.data import load_dataset

    artifact_path, config = teacher
    artifact = load_artifact(artifact_path)
    data = load_dataset(config.data, topics=("Macro", "Earnings", "IPO", "Dividend"))
    t_logits, s_logits = artifact_soft_targets(artifact, data)
    # int8 activation scales are per sub-batch, and a Scorer sizes its sub-batches by measurement
    # when it starts, so two Scorers agree to int8's rounding, not bit for bit
    t_ref, s_ref = scorer_probabilities(Scorer(artifact, provider="cpu"), list(data.texts))
    order = [artifact.topic_labels.index(t) for t in data.topic_labels]
    assert order != list(range(4))  # the test asks for a reordering
    np.testing.assert_allclose(np.exp(t_logits), t_ref[:, order], atol=0.02)
    np.testing.assert_allclose(np.exp(s_logits), s_ref, atol=0.02)
    assert (t_logits.argmax(1) == t_ref[:, order].argmax(1)).mean() > 0.99


def test_a_narrower_student_learns_from_the_teacher(teacher, tmp_path: Path) -> None:
    """Soft targets only (alpha 1): what the student knows it has from the teacher, so it must
    mostly agree with it, and the artifact records where its knowledge came from."""
    from tests.support.tiny_models import TinyVocabulary, build_base_model
    from training.train import train_and_export

    artifact_path, config = teacher
    rows = TinyVocabulary(TOPICS, seed=5).rows(per_topic=80, seed=5)
    base = build_base_model(
        tmp_path / "narrow", (r["text"] for r in rows), vocab_size=300, hidden=32, layers=1, heads=2, seed=1
    )
    student_config = replace(
        config,
        base_model=str(base),
        out=str(tmp_path / "students"),
        teacher=str(artifact_path),
        teacher_alpha=1.0,
    )
    student = train_and_export(student_config, say=lambda _m: None)
    manifest = load_artifact(student).manifest
    assert manifest["training_config"]["teacher"] == str(artifact_path)
    assert manifest["training_config"]["teacher_alpha"] == 1.0
    texts = [r["text"] for r in rows]
    t_teacher, _ = Scorer(load_artifact(artifact_path), provider="cpu").probabilities(texts)
    t_student, _ = Scorer(load_artifact(student), provider="cpu").probabilities(texts)
    agree = float((t_teacher.argmax(1) == t_student.argmax(1)).mean())
    assert agree > 0.8, agree


def test_bad_teacher_flags_stop_before_training(teacher, tmp_path: Path, capsys) -> None:
    artifact_path, config = teacher
    base = ["train", "--data", str(config.data), "--base-model", str(config.base_model)]
    base += ["--out", str(tmp_path / "out"), "--no-progress", "--topics", "data"]
    assert main([*base, "--teacher", str(tmp_path / "nowhere")]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main([*base, "--teacher", str(artifact_path), "--teacher-alpha", "1.5"]) == 2
    assert "--teacher-alpha must be within [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
