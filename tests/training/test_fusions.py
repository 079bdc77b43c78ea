"""The graphs optimum's ORTOptimizer writes per target (training/fusions.py): the CPU graph keeps
residual add + LayerNorm and bias add + GELU as plain ops, computes what the fully fused graph
computes, and stays plain in the session the daemon builds; the CUDA graph is fused and fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.errors import ConfigError
from models.runtime import session_kwargs, session_options
from training.export import export_raw
from training.fusions import CPU_LEFT_PLAIN, optimization_config, optimize_graph

PLAIN = {"LayerNormalization", "Gelu"}
FUSED = {"SkipLayerNormalization", "BiasGelu"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A random one-layer BERT with the two heads, as the exporter writes it."""
    from tests.support.tiny_models import tiny_encoder
    from training.model import TwoHeadClassifier

    model = TwoHeadClassifier(tiny_encoder(), n_topics=3, n_sentiments=3).eval()
    path = tmp_path_factory.mktemp("fusions") / "raw.onnx"
    export_raw(model, path, 17)
    return path, model.encoder.config


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _session_ops(path: Path, tmp_path: Path, **kwargs: Any) -> set[str]:
    """The op types of the graph ONNX Runtime actually runs (its optimised graph, written out)."""
    opts = session_options(ort, "cpu", 1)
    out = tmp_path / f"optimised-{len(list(tmp_path.iterdir()))}.onnx"
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], **kwargs)
    return _ops(out)


def _run(path: Path, **kwargs: Any) -> list[np.ndarray]:
    session = ort.InferenceSession(
        str(path), session_options(ort, "cpu", 1), providers=["CPUExecutionProvider"], **kwargs
    )
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 50, size=(4, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1:, 6:] = 0
    return session.run(None, {"input_ids": ids, "attention_mask": mask})


def test_the_cpu_graph_is_fused_except_the_two_plain_ops(raw: tuple[Path, Any], tmp_path: Path) -> None:
    cpu = optimize_graph(*raw, tmp_path / "cpu.onnx", "cpu")
    ops = _ops(cpu)
    assert {"Attention", "EmbedLayerNormalization"} <= ops  # the other fusions are there
    assert ops >= PLAIN
    assert not ops & FUSED
    onnx.checker.check_model(str(cpu))


def test_the_cuda_graph_is_fully_fused_fp16_with_fp32_inputs_and_outputs(
    raw: tuple[Path, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cuda = optimize_graph(*raw, tmp_path / "cuda.onnx", "cuda")
    assert "CUDAExecutionProvider" not in capfd.readouterr().err  # made without opening a CUDA session
    graph = onnx.load(str(cuda)).graph
    assert {"Attention", "EmbedLayerNormalization"} | FUSED <= {n.op_type for n in graph.node}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert {o.type.tensor_type.elem_type for o in graph.output} == {onnx.TensorProto.FLOAT}


def test_plain_ops_compute_what_the_fused_ones_do(raw: tuple[Path, Any], tmp_path: Path) -> None:
    from optimum.onnxruntime.configuration import OptimizationConfig

    cpu = optimize_graph(*raw, tmp_path / "cpu.onnx", "cpu")
    every = OptimizationConfig(**(optimization_config("cpu").__dict__ | dict.fromkeys(CPU_LEFT_PLAIN, False)))
    fused = optimize_graph(*raw, tmp_path / "fused.onnx", "cpu", config=every)  # every fusion, fp32
    assert _ops(fused) >= FUSED
    for plain_out, fused_out in zip(_run(cpu, **session_kwargs("cpu")), _run(fused), strict=True):
        np.testing.assert_allclose(plain_out, fused_out, rtol=0, atol=2e-5)


def test_the_cpu_session_keeps_the_plain_ops_which_it_would_otherwise_fuse_back(
    raw: tuple[Path, Any], tmp_path: Path
) -> None:
    cpu = optimize_graph(*raw, tmp_path / "cpu.onnx", "cpu")
    kept = _session_ops(cpu, tmp_path, **session_kwargs("cpu"))
    assert kept >= PLAIN
    assert not kept & FUSED
    # without the daemon's list, ONNX Runtime fuses them back: the list is what keeps them plain
    assert _session_ops(cpu, tmp_path) >= FUSED
    assert session_kwargs("cuda") == {}


def test_an_encoder_type_the_fusions_do_not_know_is_a_clear_error(
    raw: tuple[Path, Any], tmp_path: Path
) -> None:
    from transformers import PretrainedConfig

    odd = PretrainedConfig()
    odd.model_type = "my-encoder"
    with pytest.raises(ConfigError, match="my-encoder.*--no-optimize"):
        optimize_graph(raw[0], odd, tmp_path / "cpu.onnx", "cpu")
    with pytest.raises(ConfigError, match="graph target"):
        optimization_config("tpu")


def test_no_optimize_keeps_the_exporters_graph_and_halves_it_for_cuda(
    raw: tuple[Path, Any], tmp_path: Path
) -> None:
    from training.fusions import plain_graphs

    cpu, cuda = tmp_path / "cpu.onnx", tmp_path / "cuda.onnx"
    plain_graphs(raw[0], cpu, cuda)
    assert _ops(cpu) == _ops(raw[0])
    assert not _ops(cpu) & {"Attention", "EmbedLayerNormalization"}
    graph = onnx.load(str(cuda)).graph
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    assert {o.type.tensor_type.elem_type for o in graph.output} == {onnx.TensorProto.FLOAT}
    probs = _run(cpu, **session_kwargs("cpu"))
    np.testing.assert_allclose([p.sum(axis=1) for p in probs], 1.0, atol=1e-5)


def test_an_encoder_type_optimum_does_not_know_still_exports_unfused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.tiny_models import tiny_encoder
    from training.export import ExportOptions, write_variants
    from training.model import TwoHeadClassifier

    model = TwoHeadClassifier(tiny_encoder(), n_topics=3, n_sentiments=3).eval()
    model.encoder.config.model_type = "my-encoder"
    with caplog.at_level("WARNING", logger="training.export"):
        paths = write_variants(model, tmp_path, ExportOptions(variants=("fp32",)))
    assert "'my-encoder'" in caplog.text and "without transformer fusions" in caplog.text
    assert not _ops(paths["fp32"]) & {"Attention", "EmbedLayerNormalization"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # the raw graph is not left behind
