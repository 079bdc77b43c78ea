"""Swapping the model of a running daemon: watch `--model`, load a candidate off the hot path, hand
it to the score stage between two batches.

The score stage calls `between_batches(scorer)` before each batch. That call only looks at the clock
and, at most every `model_check_interval_s` (or at once after SIGHUP), stats the model path; when
the target changed it starts a loader thread and returns at once. The loader verifies the artifact
completely (checksums and labels via `load_artifact`, then the topic-label rule and a probe batch,
`model_swap`) and leaves the new scorer in a slot; the next `between_batches` takes it. So a swap
never stalls a batch behind a model load, every batch is scored by exactly one model, and the
commit logic is untouched: nothing is lost or scored twice because of a swap. A refused candidate
is logged with the file at fault and the old model keeps serving; the same target is not retried
until it changes again or an operator sends SIGHUP.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.artifact import MANIFEST_NAME
from pipeline.model_swap import (
    PROBE_TEXTS,
    REFUSED_INVALID,
    SWAPPED,
    Verdict,
    label_verdict,
    probe_verdict,
)

log = logging.getLogger(__name__)

Fingerprint = tuple[str, int, int, int]  # resolved directory, manifest inode, size, mtime (ns)


def fingerprint(path: str | os.PathLike[str]) -> Fingerprint:
    """What identifies the artifact `path` points at now: re-pointing `latest` or rewriting the
    manifest in place both change it. A missing manifest gives zeros (a load then says why)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(Path(real) / MANIFEST_NAME)
    except OSError:
        return (real, 0, 0, 0)
    return (real, st.st_ino, st.st_size, st.st_mtime_ns)


class ModelReloader:
    """Owned by the score stage; `request()` may be called from a signal handler."""

    def __init__(
        self,
        model_path: str,
        current: Any,
        *,
        make_scorer: Callable[[Path], Any],
        interval_s: float,
        allow_label_change: bool,
        on_outcome: Callable[[str, Any], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_path = model_path
        self.make_scorer = make_scorer
        self.interval_s = interval_s  # 0: only on request (SIGHUP)
        self.allow_label_change = allow_label_change
        self.on_outcome = on_outcome  # (outcome, new scorer or None): metrics
        self.clock = clock
        self._current = current
        self._current_fp = fingerprint(model_path)
        self._refused_fp: Fingerprint | None = None
        self._requested = threading.Event()
        self._lock = threading.Lock()
        self._ready: Any = None
        self._loader: threading.Thread | None = None
        self._next_check = clock() + interval_s

    def request(self) -> None:
        """Re-read the model path at the next batch boundary, even a target refused before."""
        self._requested.set()

    def between_batches(self, scorer: Any) -> Any:
        """The scorer for the next batch: a verified candidate if one is ready, else `scorer`."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            new, fp = ready
            log.info("model swapped: %s -> %s (between two batches)", scorer.version, new.version)
            self._current, self._current_fp = new, fp
            self.on_outcome(SWAPPED, new)
            return new
        self.check(self.clock())
        return scorer

    def check(self, now: float) -> None:
        """Start a load when one is due and the target changed (or was requested)."""
        if self._loader is not None and self._loader.is_alive():
            return
        forced = self._requested.is_set()
        if not forced and (self.interval_s <= 0 or now < self._next_check):
            return
        self._requested.clear()
        self._next_check = now + self.interval_s
        fp = fingerprint(self.model_path)
        if fp == self._current_fp:
            if forced:
                log.info("model reload requested: %s still serves version %s", fp[0], self._current.version)
            return
        if fp == self._refused_fp and not forced:
            return
        self._loader = threading.Thread(target=self._load, args=(fp,), name="model-loader", daemon=True)
        self._loader.start()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Tests and shutdown: wait for a running load to finish."""
        if self._loader is not None:
            self._loader.join(timeout)

    def _load(self, fp: Fingerprint) -> None:
        real = Path(fp[0])
        verdict, scorer = self.verify(real)
        if verdict.accepted:
            if verdict.reason:
                log.warning("model %s: %s", real, verdict.reason)
            log.info("model %s (version %s) verified; swapping at the next batch", real, scorer.version)
            with self._lock:
                self._ready = (scorer, fp)
            return
        self._refused_fp = fp
        log.error("model reload refused: %s; still serving version %s", verdict.reason, self._current.version)
        self.on_outcome(verdict.outcome, None)

    def verify(self, path: Path) -> tuple[Verdict, Any]:
        """Load `path` completely and judge it against the running model. Never raises."""
        try:
            scorer = self.make_scorer(path)  # load_artifact: checksums of every file, label files
        except Exception as exc:  # FinsentError names the file; anything else is a broken artifact too
            return Verdict(REFUSED_INVALID, f"{path}: {exc}" if str(path) not in str(exc) else str(exc)), None
        verdict = label_verdict(
            self._current.artifact.topic_labels,
            scorer.artifact.topic_labels,
            allow_change=self.allow_label_change,
        )
        if not verdict.accepted:
            return Verdict(verdict.outcome, f"{path}: {verdict.reason}"), None
        try:
            topic_p, sent_p = scorer.probabilities(list(PROBE_TEXTS))
        except Exception as exc:  # ONNX Runtime raises its own types for a graph that cannot run
            return Verdict(REFUSED_INVALID, f"{path}: probe batch failed: {type(exc).__name__}: {exc}"), None
        probe = probe_verdict(topic_p, sent_p, len(PROBE_TEXTS), len(scorer.artifact.topic_labels))
        if not probe.accepted:
            return Verdict(probe.outcome, f"{path}: {probe.reason}"), None
        return verdict, scorer
