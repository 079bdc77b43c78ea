"""`finsent retrain`'s pure step and the schedules that run it (compose profile, Kubernetes CronJob).

The whole loop runs in tests/pipeline/test_lifecycle_e2e.py."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

from pipeline.cli import build_parser
from pipeline.retrain import drop_eval_stories

REPO = Path(__file__).resolve().parents[2]


def test_training_rows_of_evaluation_stories_are_dropped_however_they_are_written() -> None:
    rows = [
        {"text": t, "topic": "", "sentiment": "negative"} for t in ("Oil falls!", "Gold rises", "oil  FALLS")
    ]
    kept, dropped = drop_eval_stories(rows, ["OIL falls"])
    assert dropped == 2 and [r["text"] for r in kept] == ["Gold rises"]


def _retrain_args(shell_command: str) -> list[str]:
    """The finsent arguments of a scheduled shell command, with its reviewed-files glob expanded to two."""
    line = shell_command.replace("$$(", "$(")
    line = line.replace("$(ls /app/data/reviewed/*.csv 2>/dev/null)", "a.csv b.csv")
    words = shlex.split(line)
    assert words[0] == "finsent"
    return words[1:]


def _default_recipe(data_dir: str) -> list[str]:
    """`make train-export`'s flags between the data and the output, as make would run them."""
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "train-export", "VENV=/nonexistent"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in dry.splitlines() if " train --data " in ln)
    words = shlex.split(line)
    flags = words[words.index("--data") + 2 : words.index("--out")]
    return [w.replace("data/", data_dir, 1) if w.startswith("data/") else w for w in flags]


def test_make_retrain_carries_the_default_recipe() -> None:
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "retrain", "EVAL=e.csv", "VENV=/nonexistent"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = shlex.split(next(ln for ln in dry.splitlines() if " retrain --data " in ln))
    recipe = _default_recipe("data/")
    assert "--pooling" in recipe and "--fgm" in recipe  # the recipe the default model is made with
    assert words[words.index("--") + 1 :] == recipe


def test_compose_profile_and_cronjob_run_the_same_valid_retrain_command() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["retrain"]
    assert service["profiles"] == ["retrain"] and service["image"] == "finsent-train:local"
    dockerfile = (REPO / "deploy/Dockerfile.retrain").read_text(encoding="utf-8")
    assert "finsent-train:local" in dockerfile and "finsent retrain --help" in dockerfile
    job = yaml.safe_load((REPO / "deploy/kubernetes/retrain-cronjob.yaml").read_text(encoding="utf-8"))
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    from_compose = _retrain_args(service["command"][0])
    from_k8s = _retrain_args(container["args"][0])
    assert from_compose == from_k8s
    args = build_parser().parse_args(from_compose)
    assert args.command == "retrain" and args.reviewed == ["a.csv", "b.csv"] and args.root == "/app/artifacts"
    # the schedule retrains the default with the default's recipe (the Makefile's train-export line)
    assert [a for a in args.train_args if a != "--"] == _default_recipe("/app/data/")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/app/artifacts", "/app/data"} <= mounts
