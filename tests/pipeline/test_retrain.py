"""`finsent retrain`'s pure step and the schedules that run it (compose profile, Kubernetes CronJob).

The whole loop runs in tests/pipeline/test_lifecycle_e2e.py."""

from __future__ import annotations

import shlex
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
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/app/artifacts", "/app/data"} <= mounts
