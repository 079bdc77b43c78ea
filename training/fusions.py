"""The exported graph made ready to run: optimum's `ORTOptimizer`, once per target.

ONNX Runtime's transformer optimizer (which `ORTOptimizer` drives with an `OptimizationConfig`)
fuses an encoder's attention, embeddings, residual add + LayerNorm (`SkipLayerNormalization`) and
bias add + GELU (`BiasGelu`). On the GPU all of those are the fast path. On the CPU (ONNX Runtime
1.31) the last two are slower than the plain ops they replace: profiled on the int8 default model,
`SkipLayerNormalization` took 16% of the kernel time and `BiasGelu` 10%, while `Add` +
`LayerNormalization` + `Add` + `Gelu` doing the same arithmetic took about a quarter of that
(docs/BENCHMARKS.md, "Plain ops instead of two fused ones").

So the export asks for two graphs:
- for the CPU (`model.onnx`, and `model.int8.onnx` made from it): every fusion but those two;
  the CPU session keeps them off at load too (`models.runtime.CPU_UNFUSED`);
- for CUDA (`model.fp16.onnx`): every fusion, then fp16 with fp32 inputs and outputs.

optimum reads the number of heads and the hidden size from a Hugging Face config beside the graph,
which the encoder's own config is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from models.errors import ConfigError

TARGETS = ("cpu", "cuda")
# The fusions the CPU graphs leave out (OptimizationConfig fields); models.runtime.CPU_UNFUSED
# names the same two for ONNX Runtime's load-time optimizer.
CPU_LEFT_PLAIN = (
    "disable_skip_layer_norm_fusion",
    "disable_bias_skip_layer_norm_fusion",
    "disable_bias_gelu_fusion",
)


def optimization_config(target: str) -> Any:
    """optimum's `OptimizationConfig` for one target. Level 1 (ONNX Runtime's basic rewrites:
    constant folding, redundant nodes) plus the transformer fusions, with the embeddings fused too
    (optimum leaves `EmbedLayerNormalization` off by default; ONNX Runtime's optimizer has it on)."""
    from optimum.onnxruntime.configuration import OptimizationConfig

    if target not in TARGETS:
        raise ConfigError(f"graph target must be one of {', '.join(TARGETS)}, got {target!r}")
    common: dict[str, Any] = {
        "optimization_level": 1,
        "enable_transformers_specific_optimizations": True,
        "disable_embed_layer_norm_fusion": False,
    }
    if target == "cpu":
        return OptimizationConfig(**common, **dict.fromkeys(CPU_LEFT_PLAIN, True))
    # Not `optimize_for_gpu`: at level 1 it changes nothing in the graph (same nodes, same weights), but
    # it makes ONNX Runtime open a CUDA session, which on a CPU-only exporting machine prints an error.
    return OptimizationConfig(**common, fp16=True)


def supported(encoder_config: Any) -> bool:
    """Whether optimum knows how to fuse this encoder type (BERT, MPNet, RoBERTa, DeBERTa, ...)."""
    from optimum.onnxruntime.utils import ORTConfigManager

    return getattr(encoder_config, "model_type", None) in ORTConfigManager._conf


def optimize_graph(raw: Path, encoder_config: Any, dst: Path, target: str, config: Any = None) -> Path:
    """`raw` (the exporter's graph) optimised for `target` (or by `config`, an `OptimizationConfig`),
    written to `dst`."""
    from optimum.onnxruntime import ORTOptimizer

    if not supported(encoder_config):
        raise ConfigError(
            f"ONNX Runtime's transformer fusions do not know encoders of type "
            f"{getattr(encoder_config, 'model_type', None)!r}; export with --no-optimize"
        )
    config = config or optimization_config(target)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        shutil.copyfile(raw, src / "model.onnx")
        encoder_config.save_pretrained(src)  # config.json: optimum reads heads and hidden size from it
        optimizer = ORTOptimizer.from_pretrained(src, file_names=["model.onnx"])
        out = optimizer.optimize(config, save_dir=Path(tmp) / "out", file_suffix=None)
        shutil.move(str(Path(out) / "model.onnx"), str(dst))
    return dst


def plain_graphs(raw: Path, cpu: Path, cuda: Path | None) -> None:
    """`--no-optimize`: the exporter's graph as it is for the CPU, and in fp16 for CUDA."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    shutil.copyfile(raw, cpu)
    if cuda is not None:
        half = OnnxModel(onnx.load(str(raw)))
        half.convert_float_to_float16(keep_io_types=True)  # fp32 inputs/outputs, as every variant
        half.save_model_to_file(str(cuda))
