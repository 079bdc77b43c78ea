"""Static (QDQ) int8: activation ranges calibrated once on training texts, weights per channel.

optimum does the parts it has: `AutoCalibrationConfig` (minmax / entropy / percentiles) and
`ORTQuantizer.fit` collect the activation ranges; `AutoQuantizationConfig` for the target CPU
(`ExportOptions.int8_isa`) gives the weight and activation types. The graph is then
rewritten by ONNX Runtime's `QDQQuantizer` with those settings, because `ORTQuantizer.quantize`
(optimum-onnx 0.1.0) fixes the quantizer's extra options and two are needed here:
`OpTypesToExcludeOutputQuantization` (without it each MatMul's output is requantised to 8 bits
before the residual add: topic agreement 92.7% instead of 97.2% on the default model, and
slower) and `DefaultTensorType` (the fused contrib ops have no ONNX type inference; without a
type for their outputs the quantizer silently skips every activation after them).

Only MatMul is quantised statically: ONNX Runtime's QDQ format has no quantised fused Attention,
so the attention layers' QKV projections stay fp32 here (`export.quantize_int8`'s dynamic mode
runs them as QAttention).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from training.quantizer import open_quantizer, typed_graph

CALIBRATION_METHODS = ("minmax", "entropy", "percentiles")


def calibration_ranges(
    fp32: Path,
    encoded: Sequence[Sequence[int]],
    method: str = "minmax",
    workdir: Path | None = None,
    pad_id: int = 0,
) -> dict[str, Any]:
    """Activation ranges of the MatMul inputs of `fp32`, observed on `encoded`, one text per run."""
    import datasets
    import onnx
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}"
        )
    if not encoded:
        raise ConfigError(f"{fp32}: static int8 needs calibration texts, got none")
    ids = [list(x) for x in encoded]
    mask = [[1] * len(x) for x in encoded]
    if method != "minmax":
        # ONNX Runtime's histogram collector stacks every run's tensors into one array, so all
        # rows must have one width: right-pad (masked) to the longest. minmax keeps exact lengths,
        # so no padding token's activations widen its ranges.
        width = max(len(x) for x in ids)
        mask = [m + [0] * (width - len(m)) for m in mask]
        ids = [x + [pad_id] * (width - len(x)) for x in ids]
    data = datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": mask})
    make = {
        "minmax": lambda: AutoCalibrationConfig.minmax(data),
        "entropy": lambda: AutoCalibrationConfig.entropy(data),
        "percentiles": lambda: AutoCalibrationConfig.percentiles(data, percentile=99.99),
    }
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        typed = Path(tmp) / "model.onnx"
        onnx.save(typed_graph(onnx.load(str(fp32))), str(typed))
        quantizer = open_quantizer(Path(tmp), typed.name)
        ranges: dict[str, Any] = quantizer.fit(
            dataset=data,
            calibration_config=make[method](),
            onnx_augmented_model_name=Path(tmp) / "augmented.onnx",
            operators_to_quantize=["MatMul"],
            batch_size=1,
        )
    return ranges


def quantize_static_int8(
    fp32: Path, dst: Path, exclude: Sequence[str], ranges: dict[str, Any], isa: str = "avx512_vnni"
) -> None:
    """QDQ int8 of every MatMul of `fp32` not in `exclude`, with calibrated `ranges`, in the
    types optimum's `AutoQuantizationConfig` gives the CPU `isa`."""
    import onnx
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = getattr(AutoQuantizationConfig, isa)(is_static=True, per_channel=True)
    quantizer = QDQQuantizer(
        typed_graph(onnx.load(str(fp32))),
        config.per_channel,
        config.reduce_range,
        config.weights_dtype,
        config.activations_dtype,
        ranges,
        [],
        list(exclude),
        ["MatMul"],
        extra_options={
            "WeightSymmetric": config.weights_symmetric,
            "ActivationSymmetric": config.activations_symmetric,
            "OpTypesToExcludeOutputQuantization": ["MatMul"],
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(dst))
