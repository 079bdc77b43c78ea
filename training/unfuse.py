"""Undo two of ONNX Runtime's transformer fusions in the graphs the CPU runs.

`onnxruntime.transformers.optimize_model` fuses each residual add + LayerNorm into one
`SkipLayerNormalization` and each bias add + GELU into one `BiasGelu`. On the GPU those fused
kernels are the fast path. On the CPU (ONNX Runtime 1.31) they are slower than the plain ops they
replace: profiled on the int8 default model, `SkipLayerNormalization` took 16% of the kernel time and
`BiasGelu` 10%, while `Add` + `LayerNormalization` + `Add` + `Gelu` doing the same arithmetic took
about a quarter of that (docs/BENCHMARKS.md, "Plain ops instead of two fused ones").

So the CPU variants (model.onnx, model.int8.onnx) are written with the plain ops, and the CPU
session is told not to fuse them back (`models.runtime.CPU_UNFUSED`). The fp16 variant, which is
for CUDA, keeps the fused ops; a GPU session fuses the plain ones back anyway.

The rewrite changes only the order of float additions: (x + bias) + skip instead of one fused sum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MS_DOMAIN = "com.microsoft"


def unfuse_for_cpu(model: Any) -> dict[str, int]:
    """Rewrite `model` (an onnx ModelProto) in place; returns how many nodes of each kind were split.

    - `SkipLayerNormalization(x, skip, gamma, beta[, bias])` -> `Add(x, bias)`, `Add(·, skip)`,
      `LayerNormalization(·, gamma, beta)` over the last axis with the same epsilon. Nodes that
      also output the mean, inverse std or the sum before normalising are left fused (the encoder
      export never asks for them).
    - `BiasGelu(x, bias)` -> `Add(x, bias)`, `Gelu` (com.microsoft, exact erf form, as BiasGelu).
    """
    from onnx import helper

    graph = model.graph
    counts = {"SkipLayerNormalization": 0, "BiasGelu": 0}
    rebuilt = []
    for node in graph.node:
        if node.op_type == "SkipLayerNormalization" and node.domain == MS_DOMAIN and _plain_sln(node):
            rebuilt += _split_skip_layer_norm(node, helper)
            counts["SkipLayerNormalization"] += 1
        elif node.op_type == "BiasGelu" and node.domain == MS_DOMAIN:
            summed = f"{node.name}_biased"
            rebuilt += [
                helper.make_node("Add", list(node.input), [summed], name=f"{node.name}_add"),
                helper.make_node("Gelu", [summed], list(node.output), name=node.name, domain=MS_DOMAIN),
            ]
            counts["BiasGelu"] += 1
        else:
            rebuilt.append(node)
    if any(counts.values()):
        del graph.node[:]
        graph.node.extend(rebuilt)
        if not any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in model.opset_import):
            raise ValueError("LayerNormalization needs ONNX opset 17 or newer")
    return counts


def _plain_sln(node: Any) -> bool:
    """Only the first output is used (the others are training-time extras)."""
    return len([o for o in node.output if o]) == 1


def _split_skip_layer_norm(node: Any, helper: Any) -> list[Any]:
    x, skip, gamma = node.input[0], node.input[1], node.input[2]
    beta = node.input[3] if len(node.input) > 3 and node.input[3] else None
    bias = node.input[4] if len(node.input) > 4 and node.input[4] else None
    epsilon = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-12)
    nodes = []
    if bias is not None:
        biased = f"{node.name}_biased"
        nodes.append(helper.make_node("Add", [x, bias], [biased], name=f"{node.name}_bias"))
        x = biased
    summed = f"{node.name}_sum"
    nodes.append(helper.make_node("Add", [x, skip], [summed], name=f"{node.name}_skip"))
    ln_inputs = [summed, gamma] + ([beta] if beta is not None else [])
    nodes.append(
        helper.make_node(
            "LayerNormalization", ln_inputs, [node.output[0]], name=node.name, axis=-1, epsilon=epsilon
        )
    )
    return nodes


def unfuse_file(path: Path) -> dict[str, int]:
    """`unfuse_for_cpu` on an ONNX file, rewritten in place (only when something was split)."""
    import onnx

    model = onnx.load(str(path))
    counts = unfuse_for_cpu(model)
    if any(counts.values()):
        onnx.save(model, str(path))
    return counts
