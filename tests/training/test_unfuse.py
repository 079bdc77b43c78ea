"""The CPU graphs' plain ops (training/unfuse.py): same arithmetic as the fused ops, and they stay
plain in the session the daemon builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.runtime import session_kwargs, session_options
from training.unfuse import unfuse_file, unfuse_for_cpu

HIDDEN = 8


def _fused_block(with_bias: bool = True) -> onnx.ModelProto:
    """x -> BiasGelu(x, b1) -> SkipLayerNormalization(·, skip=x, gamma, beta[, bias]) -> y."""
    rng = np.random.default_rng(0)
    inits = {
        "b1": rng.normal(size=HIDDEN),
        "gamma": 1 + 0.1 * rng.normal(size=HIDDEN),
        "beta": rng.normal(size=HIDDEN),
        "b2": rng.normal(size=HIDDEN),
    }
    sln_inputs = ["g", "x", "gamma", "beta"] + (["b2"] if with_bias else [])
    nodes = [
        helper.make_node("BiasGelu", ["x", "b1"], ["g"], name="layer.0/gelu", domain="com.microsoft"),
        helper.make_node(
            "SkipLayerNormalization", sln_inputs, ["y"], name="layer.0/sln", domain="com.microsoft",
            epsilon=1e-5,
        ),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", HIDDEN])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)  # what ONNX Runtime 1.20+ reads


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = session_options(ort, "cpu", 1)
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"], **session_kwargs("cpu")
    )
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("with_bias", [True, False])
def test_plain_ops_compute_what_the_fused_ones_did(with_bias: bool) -> None:
    fused = _fused_block(with_bias)
    plain = _fused_block(with_bias)
    counts = unfuse_for_cpu(plain)
    assert counts == {"SkipLayerNormalization": 1, "BiasGelu": 1}
    ops = [n.op_type for n in plain.graph.node]
    assert ops == ["Add", "Gelu"] + (["Add"] if with_bias else []) + ["Add", "LayerNormalization"]
    onnx.checker.check_model(plain)
    x = np.random.default_rng(1).normal(size=(3, 5, HIDDEN)).astype(np.float32)
    np.testing.assert_allclose(_run(plain, x), _run(fused, x), rtol=0, atol=2e-5)
    # nothing left to split: a second pass changes nothing
    assert unfuse_for_cpu(plain) == {"SkipLayerNormalization": 0, "BiasGelu": 0}


def _session_ops(path: Path, tmp_path: Path, **kwargs: object) -> set[str]:
    """The op types of the graph ONNX Runtime actually runs (its optimised graph, written out)."""
    opts = session_options(ort, "cpu", 1)
    out = tmp_path / f"optimised-{len(list(tmp_path.iterdir()))}.onnx"
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], **kwargs)
    return {n.op_type for n in onnx.load(str(out)).graph.node}


def test_the_cpu_session_keeps_the_plain_ops_which_it_would_otherwise_fuse_back(tmp_path: Path) -> None:
    path = tmp_path / "block.onnx"
    onnx.save(_fused_block(), str(path))
    assert unfuse_file(path) == {"SkipLayerNormalization": 1, "BiasGelu": 1}
    kept = _session_ops(path, tmp_path, **session_kwargs("cpu"))
    assert {"LayerNormalization", "Gelu"} <= kept
    assert not kept & {"SkipLayerNormalization", "BiasGelu"}
    # without the daemon's list, ONNX Runtime fuses them back: the list is what keeps them plain
    assert {"SkipLayerNormalization", "BiasGelu"} <= _session_ops(path, tmp_path)
    assert session_kwargs("cuda") == {}
