"""Scoring with ONNX Runtime: texts in, topic and sentiment out. No torch, no transformers.

The session is built once per process (provider, variant, threads); `Scorer.score` is then a pure
function of the batch of texts. Texts are tokenized in one call to the Rust fast tokenizer, then
run length-sorted in sub-batches, each padded only to its own longest text (`models.batching`).

`ModelSession` is the ONNX half of the Scorer (session options, providers, IO binding, batching)
over token ids; export validation runs it on the exported graphs before they ship, so what is
validated is the code that scores the firehose.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import OUTPUT_NAMES, Artifact, load_artifact
from models.batching import RUN_OVERHEAD_TOKENS, SUB_BATCH_CANDIDATES, choose_sub_batch, run_sub_batches
from models.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cuda", "cpu")
_ORT_PROVIDER = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
# Preferred variant per provider: fp16 runs on the GPU's tensor cores; int8 dynamic quantisation is
# the fast path on CPU (fp16 on the CPU provider is emulated and slow).
DEFAULT_VARIANT = {"cuda": "fp16", "cpu": "int8"}


@dataclass(frozen=True, slots=True)
class Prediction:
    topic: str
    topic_confidence: float
    sentiment: str
    sentiment_probs: dict[str, float]
    score: float  # p(positive) - p(negative), in [-1, 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "topic_confidence": self.topic_confidence,
            "sentiment": self.sentiment,
            "sentiment_probs": self.sentiment_probs,
            "score": self.score,
        }


def gpu_present() -> bool:
    """True when the CUDA driver reports at least one device.

    onnxruntime-gpu lists CUDAExecutionProvider as available even on machines without a GPU, so
    the provider list alone cannot decide; asking the driver is cheap and loads no CUDA runtime.
    """
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) != 0:
                return False
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return False
        except AttributeError:
            return False
        return count.value > 0
    return False


def resolve_provider(requested: str, available: Sequence[str], has_gpu: bool) -> str:
    """Pick "cuda" or "cpu" for a requested provider ("auto" | "cuda" | "cpu")."""
    if requested not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, got {requested!r}")
    cuda_ok = has_gpu and _ORT_PROVIDER["cuda"] in available
    if requested == "auto":
        return "cuda" if cuda_ok else "cpu"
    if requested == "cuda" and not cuda_ok:
        why = "no CUDA device found" if not has_gpu else "this onnxruntime build has no CUDA provider"
        log.warning("provider 'cuda' requested but %s; falling back to the CPU provider", why)
        return "cpu"
    return requested


def pick_variant(artifact: Artifact, provider: str, requested: str | None) -> str:
    if requested:
        artifact.variant_path(requested)  # raises with the list of variants it has
        return requested
    for variant in (DEFAULT_VARIANT[provider], "fp32", *artifact.variants):
        if variant in artifact.variants:
            return variant
    raise ArtifactError(f"{artifact.path}: no usable ONNX variant")


class ModelSession:
    """An ONNX Runtime session over one model file, run the way the daemon runs it: session options
    for a stream of small batches, IO binding on the GPU, length-sorted padded sub-batches.

    `provider` is a resolved one ("cpu" or "cuda"); if CUDA fails to initialise it becomes "cpu".
    """

    def __init__(
        self,
        model_path: Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        sub_batch: int | None = None,
        parallel_runs: int | None = None,
        pad_id: int = 0,
        what: str = "model",
        log_severity: int | None = None,
    ) -> None:
        import onnxruntime as ort

        if provider not in _ORT_PROVIDER:
            raise ConfigError(f"provider must be one of {', '.join(_ORT_PROVIDER)}, got {provider!r}")
        self.provider = provider
        self.pad_id = int(pad_id)
        # GPU: large sub-batches fill the device. CPU: measured below once the session exists.
        self.sub_batch = int(sub_batch or (256 if self.provider == "cuda" else 32))
        self.sub_batch_measured: dict[int, float] = {}
        self.parallel_runs, intra = run_layout(self.provider, threads, parallel_runs)
        # One session, several runs at once: ONNX Runtime's Run is thread-safe and releases the GIL.
        self._pool = ThreadPoolExecutor(self.parallel_runs, "ort-run") if self.parallel_runs > 1 else None
        opts = session_options(ort, self.provider, intra)
        if log_severity is not None:
            opts.log_severity_level = log_severity
        providers: list[Any] = [_ORT_PROVIDER[self.provider]]
        if self.provider == "cuda":
            providers.append(_ORT_PROVIDER["cpu"])
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=providers, **session_kwargs(self.provider)
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"{model_path}: ONNX Runtime cannot load the {what}: {exc}") from exc
        if self.provider == "cuda" and self.session.get_providers()[0] != _ORT_PROVIDER["cuda"]:
            log.warning("CUDA provider failed to initialise; using the CPU provider")
            self.provider = "cpu"
        self._input_names = {i.name for i in self.session.get_inputs()}
        self._outputs = list(OUTPUT_NAMES)
        # On the GPU, IO binding lets ORT place the outputs itself instead of allocating per run.
        self._io_binding = self.provider == "cuda"
        if sub_batch is None and self.provider == "cpu":
            self.sub_batch_measured = measure_sub_batch(self._run, self.pad_id, pool=self._pool)
            self.sub_batch = choose_sub_batch(self.sub_batch_measured)
            log.info(
                "sub-batch %d, %d run(s) at once, measured at start-up (ms per row: %s)",
                self.sub_batch,
                self.parallel_runs,
                ", ".join(f"{k}: {v * 1e3:.2f}" for k, v in self.sub_batch_measured.items()),
            )

    def encoded_probabilities(self, encoded: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Topic and sentiment probabilities for token ids (at least one row), in input order."""
        # CPU: cuts planned against padding; a GPU's fixed cost per run dwarfs padding: the biggest runs win
        overhead = RUN_OVERHEAD_TOKENS if self.provider == "cpu" else None
        topic, sentiment = run_sub_batches(
            encoded, self._run, self.pad_id, self.sub_batch, overhead=overhead, pool=self._pool
        )
        return topic, sentiment

    def _run(self, input_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        if not self._io_binding:
            t, s = self.session.run(self._outputs, feeds)
            return t, s
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in self._outputs:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        t, s = binding.copy_outputs_to_cpu()
        return t, s


def synthetic_lengths(rows: int) -> list[int]:
    """Token lengths of a news-like batch: three in five headlines of 10-24 tokens, the rest short
    articles of 30-64 (the bench corpus: p50 20, p95 58). Deterministic."""
    return [10 + (i * 7) % 15 if i % 5 < 3 else 30 + (i * 11) % 35 for i in range(rows)]


def measure_sub_batch(
    run: Any,
    pad_id: int,
    candidates: Sequence[int] = SUB_BATCH_CANDIDATES,
    rows: int = 64,
    budget_s: float = 1.0,
    pool: Executor | None = None,
) -> dict[int, float]:
    """Seconds per row of scoring a synthetic news-like batch (`synthetic_lengths`) through
    `run_sub_batches`, as the daemon does, at each candidate sub-batch size: one warm-up per
    size, then rounds over all sizes, the best time per size kept.

    The best size depends on the serving machine (cores, caches, int8 kernels), not on the one
    that exported the model, so it is measured where the model runs, at start-up. Mixed lengths
    matter: a batch of equal rows favoured 8 on the bench machine, where real batches ran fastest
    at 64 (the planner's runs differ). Rounds visit every size in turn, so a burst of other work on
    a shared machine slows one round of all sizes, not one size; they stop when `budget_s` is spent
    (at most three), and sizes not warmed up within it are left out.
    """
    encoded = [[pad_id] * n for n in synthetic_lengths(rows)]
    sizes = sorted(candidates)
    deadline = time.perf_counter() + budget_s

    def score(size: int) -> float:
        start = time.perf_counter()
        run_sub_batches(encoded, run, pad_id, size, overhead=RUN_OVERHEAD_TOKENS, pool=pool)
        return time.perf_counter() - start

    warmed: list[int] = []
    for size in sizes:
        if warmed and time.perf_counter() > deadline:
            break
        score(size)  # warm-up: ORT picks kernels and allocates for the new shapes
        warmed.append(size)
    best = {size: float("inf") for size in warmed}
    for rnd in range(3):
        if rnd and time.perf_counter() > deadline:
            break
        for size in warmed:
            best[size] = min(best[size], score(size))
    return {size: t / rows for size, t in best.items()}


class Scorer(ModelSession):
    """An artifact's tokenizer and labels over a `ModelSession` of its chosen variant."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        provider: str = "auto",
        variant: str | None = None,
        threads: int | None = None,
        sub_batch: int | None = None,
        parallel_runs: int | None = None,
        max_length: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.artifact = artifact
        self.requested_provider = provider
        resolved = resolve_provider(provider, ort.get_available_providers(), gpu_present())
        self.variant = pick_variant(artifact, resolved, variant)
        self.topic_labels = artifact.topic_labels
        self.sentiment_labels = artifact.sentiment_labels
        self._neg = self.sentiment_labels.index("negative")
        self._pos = self.sentiment_labels.index("positive")
        self.max_length = int(max_length or artifact.max_length)

        try:
            self.tokenizer = Tokenizer.from_file(str(artifact.tokenizer_path))
        except Exception as exc:  # the tokenizers library raises plain Exception subclasses
            raise ArtifactError(f"{artifact.tokenizer_path}: cannot load tokenizer: {exc}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad = artifact.pad_token_id
        if pad is None:
            pad = self.tokenizer.token_to_id("[PAD]")

        model_path = artifact.variant_path(self.variant)
        super().__init__(
            model_path,
            provider=resolved,
            threads=threads,
            sub_batch=sub_batch,
            parallel_runs=parallel_runs,
            pad_id=int(pad or 0),
            what=f"{self.variant} model",
        )
        log.info(
            "model %s loaded: provider=%s variant=%s file=%s",
            self.version,
            self.provider,
            self.variant,
            model_path.name,
        )

    @property
    def version(self) -> str:
        return self.artifact.version

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Topic and sentiment probabilities, one row per text, in input order."""
        if len(texts) == 0:
            return (
                np.zeros((0, len(self.topic_labels)), dtype=np.float32),
                np.zeros((0, len(self.sentiment_labels)), dtype=np.float32),
            )
        return self.encoded_probabilities(self.encode(texts))

    def score(self, texts: Sequence[str]) -> list[Prediction]:
        """Score a batch of texts; one Prediction per text, in input order."""
        topic, sentiment = self.probabilities(texts)
        # Whole-array work first, then one pass of plain Python floats: per-row numpy indexing
        # costs more than the row's share of the model run on short headlines.
        top = topic.argmax(axis=1)
        conf = topic[np.arange(len(texts)), top].tolist()
        sent = sentiment.argmax(axis=1).tolist()
        margin = (sentiment[:, self._pos] - sentiment[:, self._neg]).tolist()
        labels_t, labels_s = self.topic_labels, self.sentiment_labels
        return [
            Prediction(
                topic=labels_t[t],
                topic_confidence=c,
                sentiment=labels_s[si],
                sentiment_probs=dict(zip(labels_s, probs, strict=True)),
                score=m,
            )
            for t, c, si, m, probs in zip(top.tolist(), conf, sent, margin, sentiment.tolist(), strict=True)
        ]


def cpu_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_layout(provider: str, threads: int | None, parallel_runs: int | None) -> tuple[int, int | None]:
    """(runs at once, intra-op threads per run) for `threads` cores in all.

    On the CPU the default is one single-threaded run per core: a sub-batch of news is a chain of
    small kernels (LayerNorm, GELU, the quantisation of each activation, 16-64-row GEMMs) that two
    threads split badly, each hand-off costing a wake-up, while two sub-batches side by side keep
    both cores busy. Measured on the 2-core bench machine with the int8 default (BENCHMARKS,
    "Runs side by side"): 1.4-1.6x the messages per second of one run on two threads.
    `parallel_runs` = 1 restores one run over all the threads. A GPU runs one at a time.
    """
    if provider != "cpu":
        return 1, threads
    cores = int(threads or cpu_cores())
    runs = max(1, min(int(parallel_runs or cores), cores))
    return runs, max(1, cores // runs)


def session_options(ort: Any, provider: str, threads: int | None) -> Any:
    """ORT session options for a latency-bound stream of small batches.

    - intra-op threads = the cores we may use (ORT's own default counts the host's cores, which
      oversubscribes a CPU-limited container);
    - sequential execution, one inter-op thread: an encoder is a chain of ops, parallel branches
      buy nothing and cost a second thread pool;
    - no spinning: between runs the worker threads would otherwise busy-wait and take the cores
      from the Kafka and JSON work the daemon does between two batches.
    FINSENT_ORT_SPIN=1 turns spinning back on (for a machine with cores to spare).
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if provider == "cpu":
        opts.intra_op_num_threads = int(threads or cpu_cores())
        spin = os.environ.get("FINSENT_ORT_SPIN", "").strip().lower() in ("1", "true", "yes", "on")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    elif threads:
        opts.intra_op_num_threads = int(threads)
    return opts


# ONNX Runtime's graph fusions kept off on the CPU: its fused SkipLayerNormalization and BiasGelu
# kernels are slower there than the Add + LayerNormalization and Add + Gelu they replace (together
# about 20% of the int8 model's CPU time; docs/BENCHMARKS.md, "Plain ops instead of two fused ones").
# The export writes the CPU variants with the plain ops (training/fusions.py); without this list the
# session would fuse them back at load. Graphs exported fused before that keep their fused nodes.
CPU_UNFUSED = ("SkipLayerNormFusion", "BiasGeluFusion")


def session_kwargs(provider: str) -> dict[str, Any]:
    """Extra `InferenceSession` arguments for a provider (the fusions the CPU keeps off)."""
    return {"disabled_optimizers": list(CPU_UNFUSED)} if provider == "cpu" else {}


def load_scorer(path: str | os.PathLike[str], **kwargs: Any) -> Scorer:
    return Scorer(load_artifact(path), **kwargs)
