"""The `finsent` command: one entry point, subcommands contributed by the packages that own them.

Each command module exposes `register(subparsers)` and keeps its heavy imports (torch, onnxruntime)
inside the handlers, so `finsent --help` is instant and the streaming commands never pull in torch.
A handler returns an exit code; user errors are raised as `FinsentError` and printed without a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from models.errors import FinsentError

# Modules that contribute subcommands, in the order they appear in `finsent --help`.
COMMAND_MODULES = (
    "training.commands",  # train, distill, export, evaluate, fetch-base
    "models.commands",  # score
    "models.promote",  # promote
    "pipeline.commands",  # consume, replay
    "pipeline.review_cli",  # review export|merge
    "pipeline.retrain",  # retrain
)


def finsent_argv(*args: str) -> list[str]:
    """The command line of `finsent ARGS...` for a child process: this interpreter running this module
    (not the console script, which imports whatever checkout the environment was installed from)."""
    return [sys.executable, "-m", "pipeline.cli", *args]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finsent",
        description="Streaming financial-news sentiment monitor.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A module not written yet, or an install without that half: skip its commands.
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except FinsentError as exc:
        print(f"finsent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
