"""What both int8 modes need to hand our graphs to optimum's `ORTQuantizer`.

The export's graphs are fused by ONNX Runtime's transformer optimizer, whose contrib ops
(Attention, EmbedLayerNormalization, SkipLayerNormalization) ONNX cannot type; and they are bare
`.onnx` files, with no Hugging Face config beside them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def typed_graph(model: Any) -> Any:
    """The graph with an element type on every tensor: ONNX's shape inference, plus float for the
    outputs of Microsoft contrib ops it cannot infer (EmbedLayerNormalization's mask index is int32)."""
    from onnx import TensorProto, helper, shape_inference

    for _ in range(4):  # each pass lets inference continue past the ops typed by the last one
        model = shape_inference.infer_shapes(model)
        graph = model.graph
        known = {v.name for v in (*graph.value_info, *graph.input, *graph.output)}
        known |= {i.name for i in graph.initializer}
        added = 0
        for node in graph.node:
            if node.domain != "com.microsoft":
                continue
            for k, out in enumerate(node.output):
                if out and out not in known:
                    int32 = node.op_type == "EmbedLayerNormalization" and k == 1
                    elem = TensorProto.INT32 if int32 else TensorProto.FLOAT
                    graph.value_info.append(helper.make_tensor_value_info(out, elem, None))
                    added += 1
        if not added:
            break
    return model


def open_quantizer(directory: Path, file_name: str) -> Any:
    """optimum's `ORTQuantizer` for a graph with no Hugging Face config beside it. None is needed
    here, and optimum warns about it on every quantizer it opens (a dozen times per export), so
    that one warning is kept out of the output. Its logger is set after the import, which resets it."""
    from optimum.onnxruntime import ORTQuantizer

    quiet = logging.getLogger("optimum.onnxruntime.quantization")
    saved = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return ORTQuantizer.from_pretrained(directory, file_name=file_name)
    finally:
        quiet.setLevel(saved)
