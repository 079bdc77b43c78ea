"""`finsent promote CANDIDATE`: re-point `artifacts/latest` at a candidate that passes the gate.

The candidate is verified like any load, both it and the current model are evaluated on the same
frozen evaluation set (`models.gate`), the report is written beside the candidate (`gate.json`),
and only a pass re-points `latest`, atomically; a running daemon then swaps to it on its next
check of --model (README "Swapping the model").
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.errors import ArtifactError

log = logging.getLogger(__name__)

REPORT_NAME = "gate.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "promote",
        help="point artifacts/latest at a candidate artifact if it passes the evaluation gate",
        description="Evaluate CANDIDATE and the current model (ROOT/latest) on one frozen evaluation "
        "set; re-point ROOT/latest at CANDIDATE unless it is worse on a head by more than the margin.",
    )
    p.add_argument("candidate", metavar="CANDIDATE", help="artifact directory under ROOT")
    p.add_argument("--eval", required=True, metavar="CSV", help="frozen evaluation set: text,topic,sentiment")
    p.add_argument("--root", default="artifacts", help="artifacts directory (default: %(default)s)")
    p.add_argument("--margin", type=float, help="allowed macro-F1 drop per head (default: 0.01)")
    p.add_argument("--provider", default="cpu", choices=("auto", "cuda", "cpu"), help="default: %(default)s")
    p.add_argument("--variant", choices=("fp32", "fp16", "int8"), help="default: per provider (as served)")
    p.add_argument(
        "--allow-label-change",
        action="store_true",
        help="promote even if the topic labels differ (the daemon then needs --allow-label-change too)",
    )
    p.set_defaults(handler=run)


def gate_and_promote(
    candidate: Path,
    root: Path,
    eval_csv: Path,
    *,
    margin: float | None = None,
    provider: str = "cpu",
    variant: str | None = None,
    allow_label_change: bool = False,
    say: Any = print,
) -> tuple[bool, dict[str, Any]]:
    """Run the gate; re-point `root/latest` on a pass. Returns (promoted, report)."""
    from models.artifact import LATEST, load_artifact, point_latest
    from models.gate import DEFAULT_MARGIN, evaluate, judge, read_eval_set, write_report
    from models.runtime import Scorer

    margin = DEFAULT_MARGIN if margin is None else margin
    root = root.resolve()
    cand_art = load_artifact(candidate)
    if cand_art.path.parent != root:
        raise ArtifactError(f"{cand_art.path}: a candidate must be a directory directly under {root}")
    data = read_eval_set(eval_csv)
    latest = root / LATEST
    cur_art = load_artifact(latest) if latest.exists() else None
    if cur_art is not None and cur_art.path == cand_art.path:
        raise ArtifactError(f"{cand_art.path}: is already {latest}")
    if (
        cur_art is not None
        and set(cur_art.topic_labels) != set(cand_art.topic_labels)
        and not allow_label_change
    ):
        raise ArtifactError(
            f"{cand_art.path}: topic labels differ from {cur_art.path}'s; the daemon would refuse the swap "
            "(--allow-label-change on both to accept)"
        )
    cand = evaluate(Scorer(cand_art, provider=provider, variant=variant), data)
    cur = None if cur_art is None else evaluate(Scorer(cur_art, provider=provider, variant=variant), data)
    passed, lines = judge(cur, cand, margin)
    report = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidate": {"path": str(cand_art.path), "version": cand_art.version, "macro_f1": cand},
        "current": None
        if cur_art is None
        else {"path": str(cur_art.path), "version": cur_art.version, "macro_f1": cur},
        "eval_set": {"path": str(data.path.resolve()), "rows": len(data.texts)},
        "margin": margin,
        "passed": passed,
        "verdict": lines,
    }
    write_report(cand_art.path / REPORT_NAME, report)
    for line in lines:
        say(f"gate: {line}")
    if passed:
        point_latest(root, cand_art.path.name)
        say(f"promoted: {latest} -> {cand_art.path.name} (report {cand_art.path / REPORT_NAME})")
    else:
        say(f"not promoted: {latest} unchanged (report {cand_art.path / REPORT_NAME})")
    return passed, report


def run(args: argparse.Namespace) -> int:
    promoted, _report = gate_and_promote(
        Path(args.candidate),
        Path(args.root),
        Path(args.eval),
        margin=args.margin,
        provider=args.provider,
        variant=args.variant,
        allow_label_change=args.allow_label_change,
        say=lambda line: print(line, file=sys.stderr),
    )
    return 0 if promoted else 1
