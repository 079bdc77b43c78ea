"""`finsent distill`: a smaller student from a fine-tuned teacher, exported like any artifact."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.artifact import load_artifact
from models.errors import ConfigError
from models.runtime import Scorer
from pipeline.cli import main
from training.data import MISSING
from training.distill import build_student, distillation_loss, pick_layers, teacher_logits

TOPICS = ("Earnings", "Dividend", "IPO", "Macro")


@dataclass
class Teacher:
    root: Path
    checkpoint: Path  # runs/<version>
    artifact: Path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Teacher:
    """A 2-layer BERT fine-tuned for seconds, with its artifact and its PyTorch checkpoint."""
    from tests.support.tiny_models import tiny_config
    from training.train import train_and_export

    root = tmp_path_factory.mktemp("teacher")
    config = tiny_config(root, TOPICS, seed=2)
    config.checkpoint_dir = str(root / "runs")
    artifact = train_and_export(config, say=lambda _msg: None)
    (checkpoint,) = (root / "runs").iterdir()
    return Teacher(root, checkpoint, artifact)


def _attention_nodes(path: Path) -> int:
    return sum(n.op_type == "Attention" for n in onnx.load(str(path)).graph.node)


def test_layers_are_picked_first_or_spread_and_bad_counts_are_refused() -> None:
    assert pick_layers(6, 3) == (0, 1, 2)
    assert pick_layers(6, 3, "spread") == (0, 2, 4)
    assert pick_layers(6, 2, "spread") == (0, 3)
    assert pick_layers(2, 1, "spread") == (0,)
    assert pick_layers(6, 6, "spread") == tuple(range(6))
    with pytest.raises(ConfigError, match=r"--layers 7: the teacher has only 6 encoder layers"):
        pick_layers(6, 7)
    with pytest.raises(ConfigError, match="--layers must be at least 1"):
        pick_layers(6, 0)


def test_teacher_logits_give_back_the_teachers_softened_distribution() -> None:
    logits = torch.tensor([[4.0, 1.0, -2.0, 0.5], [0.0, 0.0, 9.0, -3.0]])
    recovered = torch.from_numpy(teacher_logits(torch.softmax(logits, -1).numpy()))
    for temperature in (1.0, 2.0, 4.0):
        torch.testing.assert_close(
            torch.softmax(recovered / temperature, -1), torch.softmax(logits / temperature, -1)
        )


def test_distillation_loss_is_zero_on_the_teacher_and_teaches_unlabelled_rows() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(4, 3)
    targets = torch.tensor([0, MISSING, 2, MISSING])
    # a student equal to the teacher has nothing left to learn from it
    assert distillation_loss(teacher.clone(), teacher, targets, 2.0, 1.0).item() == pytest.approx(
        0.0, abs=1e-6
    )

    student = torch.randn(4, 3, requires_grad=True)
    distillation_loss(student, teacher, targets, 2.0, 0.5).backward()
    assert student.grad is not None and bool(torch.all(student.grad[[1, 3]].abs().sum(1) > 0))

    hard_only = torch.randn(4, 3, requires_grad=True)
    distillation_loss(hard_only, teacher, targets, 2.0, 0.0).backward()
    assert hard_only.grad is not None and torch.all(hard_only.grad[[1, 3]] == 0)
    # alpha 0 is the plain masked cross-entropy of `finsent train`
    expected = torch.nn.functional.cross_entropy(hard_only.detach()[[0, 2]], targets[[0, 2]])
    assert distillation_loss(hard_only.detach(), teacher, targets, 2.0, 0.0).item() == pytest.approx(
        expected.item()
    )


def test_student_starts_as_the_teachers_chosen_layers(teacher: Teacher) -> None:
    from training.checkpoint import load_checkpoint

    model, _tok, _meta = load_checkpoint(teacher.checkpoint)
    student = build_student(model, (1,))
    assert len(student.encoder.encoder.layer) == 1 and student.encoder.config.num_hidden_layers == 1
    assert len(model.encoder.encoder.layer) == 2  # the teacher itself is untouched
    for (name, got), want in zip(
        student.encoder.encoder.layer[0].state_dict().items(),
        model.encoder.encoder.layer[1].state_dict().values(),
        strict=True,
    ):
        assert torch.equal(got, want), name
    assert torch.equal(student.topic_head.weight, model.topic_head.weight)
    assert student.encoder.embeddings.word_embeddings.weight.data_ptr() != (
        model.encoder.embeddings.word_embeddings.weight.data_ptr()
    )


def test_cli_distils_a_servable_one_layer_student(
    teacher: Teacher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "students"
    args = ["distill", "--teacher", str(teacher.checkpoint), "--layers", "1", "--select", "spread"]
    args += ["--data", str(teacher.root / "train.csv"), "--out", str(out), "--epochs", "4"]
    args += ["--lr", "3e-3", "--head-lr", "3e-3", "--threads", "1", "--no-progress"]
    args += ["--checkpoint-dir", str(tmp_path / "runs")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "student: layers 0;" in printed and "export validated: fp32 vs PyTorch" in printed

    art = load_artifact(out / "latest")  # checksums, files and labels verified
    tutor = load_artifact(teacher.artifact)
    assert art.variants == ("fp32", "fp16", "int8")
    assert art.topic_labels == tutor.topic_labels
    manifest = art.manifest
    assert manifest["distilled_from"]["layers"] == [0]
    assert manifest["distilled_from"]["teacher_layers"] == 2
    assert manifest["max_length"] == tutor.manifest["max_length"]
    checks = manifest["export_validation"]
    assert max(checks["fp32_vs_torch_max_abs_diff"].values()) <= 1e-4
    for rates in checks["agreement_with_fp32"].values():
        assert min(rates.values()) >= 0.99
    # validated on the teacher's own validation rows, none of which it trained on
    teacher_valid = json.loads((teacher.checkpoint / "checkpoint.json").read_text())["valid"]["texts"]
    assert manifest["valid_rows"] == len(teacher_valid)
    assert manifest["train_rows"] + len(teacher_valid) <= 80 * len(TOPICS)
    assert _attention_nodes(art.path / "model.onnx") == 1
    assert _attention_nodes(teacher.artifact / "model.onnx") == 2
    assert "distilled from" in (art.path / "MODEL_CARD.md").read_text()

    from tests.support.tiny_models import TinyVocabulary

    vocab = TinyVocabulary(TOPICS, seed=2)
    rng = np.random.default_rng(7)
    cases = [(t, s) for t in TOPICS for s in ("negative", "neutral", "positive")]
    texts = [vocab.headline(t, s, rng) for t, s in cases]
    preds = Scorer(art, provider="cpu", variant="int8").score(texts)
    assert np.mean([p.topic == t for p, (t, _) in zip(preds, cases, strict=True)]) >= 0.75
    assert np.mean([p.sentiment == s for p, (_, s) in zip(preds, cases, strict=True)]) >= 0.75

    # the student's checkpoint re-exports and could teach in turn
    (ckpt,) = (tmp_path / "runs").iterdir()
    assert json.loads((ckpt / "encoder" / "config.json").read_text())["num_hidden_layers"] == 1


def test_students_go_to_their_own_root_so_the_default_model_stays_the_teacher() -> None:
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["distill", "--teacher", "runs/v1"])
    assert args.out == "artifacts/students" and args.layers == 3 and args.select == "first"
    assert build_parser().parse_args(["train", "--data", "x.csv"]).out == "artifacts"


def test_an_artifact_names_its_teacher_through_its_checkpoint(teacher: Teacher, tmp_path: Path) -> None:
    from training.distill import resolve_teacher

    assert resolve_teacher(teacher.artifact) == teacher.root / "runs" / teacher.checkpoint.name
    lone = tmp_path / "artifacts" / "v1"
    shutil.copytree(teacher.artifact, lone)
    with pytest.raises(ConfigError, match=r"no PyTorch checkpoint for artifact .*--checkpoint-dir runs"):
        resolve_teacher(lone)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teacher", "{missing}"], "--teacher {missing}: no such directory"),
        (["--teacher", "{checkpoint}", "--layers", "3"], "--layers 3: the teacher has only 2 encoder layers"),
        (["--teacher", "{data}"], "--teacher {data}: neither a training checkpoint"),
        (["--teacher", "{checkpoint}", "--alpha", "1.5"], "--alpha must be within [0, 1]"),
    ],
)
def test_bad_inputs_exit_2_with_a_clear_message(
    teacher: Teacher, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    names = {"missing": tmp_path / "nope", "checkpoint": teacher.checkpoint, "data": teacher.root / "base"}
    args = ["distill", *(a.format(**names) for a in extra), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_students_card_does_not_claim_the_full_models_real_news_figures() -> None:
    from training.corpus import real_eval

    record = {
        "model_version": "20260301-120000",
        "data_fingerprint": "sha256:abc",
        "real_sets": [
            {"data": "t.csv", "heads": {"topic": {"accuracy": 0.7123, "macro_f1": 0.6, "rows": 9}}}
        ],
    }
    full = "\n".join(real_eval.model_card_section({"data_fingerprint": "sha256:abc"}, record))
    assert "0.712" in full
    manifest = {"data_fingerprint": "sha256:abc", "distilled_from": {"teacher": "runs/v0"}}
    student = "\n".join(real_eval.model_card_section(manifest, record))
    assert "0.712" not in student and "student distilled from `runs/v0`" in student
