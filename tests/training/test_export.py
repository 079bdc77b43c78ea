"""ONNX export validation: it accepts a faithful export and fails loudly when a variant differs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from models.errors import ConfigError, ExportValidationError
from training.export import ExportOptions, run_onnx, validate_variants, write_variants


@dataclass
class Exported:
    model: Any
    paths: dict[str, Path]
    encoded: list[list[int]]  # the validation rows, tokenized


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny BERT trained for seconds on generated headlines, exported to all three variants."""
    from tests.support.tiny_models import tiny_config
    from training.inference import tokenize
    from training.train import fit

    root = tmp_path_factory.mktemp("export")
    config = tiny_config(root, ("Earnings", "Dividend", "IPO", "Macro"), seed=2)
    result = fit(config, say=lambda _msg: None)
    paths = write_variants(result.model, root / "onnx")
    encoded = tokenize(result.tokenizer, result.valid.texts, config.max_length)
    return Exported(result.model, paths, encoded)


def test_graph_contract(exported: Exported) -> None:
    paths = exported.paths
    assert sorted(paths) == ["fp16", "fp32", "int8"]
    graph = onnx.load(str(paths["fp32"]))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.graph.output] == ["topic_probs", "sentiment_probs"]
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", "sequence_length"]
    assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) >= 17
    ops = {node.op_type for node in graph.graph.node}
    assert "Attention" in ops or "MultiHeadAttention" in ops  # transformer fusions applied
    half = onnx.load(str(paths["fp16"]))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size


def test_int8_quantises_the_encoder_projections_and_leaves_the_heads_fp32(
    exported: Exported, tmp_path: Path
) -> None:
    from training.export import quantize_int8

    def quantised(path: Path) -> set[str]:
        return {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulInteger"}

    full = quantised(exported.paths["int8"])
    assert full and not any("head" in name for name in full)
    # Keeping the lowest layer fp32 removes exactly that layer's projections from the int8 set.
    kept = quantize_int8(exported.paths["fp32"], tmp_path / "q.onnx", fp32_layers=1)
    fewer = quantised(tmp_path / "q.onnx")
    assert fewer < full and not any("layer.0/" in name for name in fewer) and kept >= 3
    # All layers fp32 (and the heads): nothing left to quantise.
    quantize_int8(exported.paths["fp32"], tmp_path / "none.onnx", fp32_layers=99)
    assert not quantised(tmp_path / "none.onnx")


def test_optimum_writes_onnx_runtimes_own_dynamic_graph_for_vnni_and_uint8_weights_for_avx2(
    exported: Exported, tmp_path: Path
) -> None:
    """`quantize_int8` goes through optimum's `ORTQuantizer` with the target CPU's
    `AutoQuantizationConfig`; for the default target that is the graph ONNX Runtime's own
    `quantize_dynamic` writes (what the export called before), weight for weight."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from training.export import quantize_int8

    fp32 = exported.paths["fp32"]
    heads = [f"{n.name}_MatMul" for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gemm"]
    quantize_dynamic(
        str(fp32), str(tmp_path / "ort.onnx"), weight_type=QuantType.QInt8, per_channel=True,
        nodes_to_exclude=heads, op_types_to_quantize=["MatMul", "Attention"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )  # fmt: skip
    quantize_int8(fp32, tmp_path / "vnni.onnx", fp32_layers=0, isa="avx512_vnni")
    quantize_int8(fp32, tmp_path / "avx2.onnx", fp32_layers=0, isa="avx2")

    def weights(path: Path) -> dict[str, np.ndarray]:
        graph = onnx.load(str(path)).graph
        return {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    ort, vnni, avx2 = (
        weights(tmp_path / "ort.onnx"),
        weights(tmp_path / "vnni.onnx"),
        weights(tmp_path / "avx2.onnx"),
    )
    assert ort.keys() == vnni.keys() and all(np.array_equal(ort[k], vnni[k]) for k in ort)
    ops = [[n.op_type for n in onnx.load(str(tmp_path / f)).graph.node] for f in ("ort.onnx", "vnni.onnx")]
    assert ops[0] == ops[1] and "MatMulInteger" in ops[0]
    quantised = [k for k in ort if k.endswith("_quantized")]
    assert quantised and all(ort[k].dtype == np.int8 for k in quantised)
    # u8u8 for AVX2 without VNNI: the same tensors, unsigned weights around zero point 128
    assert all(avx2[k].dtype == np.uint8 for k in quantised)
    assert all(avx2[k.replace("_quantized", "_zero_point")].min() > 0 for k in quantised)


def test_the_int8_target_is_recorded_and_auto_is_this_machine(exported: Exported, tmp_path: Path) -> None:
    from models.cpu import cpu_flags, isa_features, quantization_target
    from training.export import fit_int8

    rows = exported.encoded
    plan = fit_int8(exported.paths["fp32"], tmp_path / "a.onnx", rows, 0, ExportOptions(int8_isa="avx2"), [])
    assert plan["isa"] == "avx2" and plan["weights"] == "uint8"
    assert min(plan["agreement"].values()) >= 0.99
    auto = fit_int8(exported.paths["fp32"], tmp_path / "b.onnx", rows, 0, ExportOptions(int8_isa="auto"), [])
    assert auto["isa"] == quantization_target(isa_features(cpu_flags()))
    assert ExportOptions().int8_isa == "avx512_vnni"


def test_one_named_projection_can_stay_fp32(exported: Exported, tmp_path: Path) -> None:
    from training.export import _projections, quantize_int8

    graph = onnx.load(str(exported.paths["fp32"]))
    layer0 = _projections(graph, 0)
    assert layer0 and all("layer.0/" in n or n == "Attention_0" for n in layer0)
    kept = quantize_int8(exported.paths["fp32"], tmp_path / "one.onnx", fp32_layers=0, also_fp32=[layer0[-1]])
    out = onnx.load(str(tmp_path / "one.onnx")).graph.node
    # the named node is still a float MatMul / Attention; its layer's others are quantised
    assert any(n.name == layer0[-1] and n.op_type in ("MatMul", "Attention") for n in out)
    assert kept == 1 + sum(1 for n in graph.graph.node if n.op_type == "Gemm")


def test_refinement_keeps_one_projection_of_the_top_fp32_layer_when_that_suffices(tmp_path: Path) -> None:
    """The node step of the plan search, with the quantiser and the agreement check stubbed by
    their outcomes (the real ones are exercised by the tests above and below)."""
    from training.export import _refine_top_layer

    names = [
        "/encoder/layer.1/attention/output/dense/MatMul",
        "Attention_1",
        "/encoder/layer.1/output/dense/MatMul",
    ]
    fake_graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul" if "MatMul" in n else "Attention", [], [], name=n) for n in names],
        "g", [], [],
    )  # fmt: skip
    onnx.save(onnx.helper.make_model(fake_graph), str(tmp_path / "src.onnx"))
    outcome = {names[0]: 0.97, names[1]: 0.993, names[2]: 0.996}
    made: dict[Path, str] = {}

    def quantize(keep: int, alpha: float | None, out: Path, also: list[str]) -> int:
        assert keep == 1 and alpha == 0.8
        out.write_text(also[0])
        made[out] = also[0]
        return len(also)

    def rates_of(out: Path) -> dict[str, float]:
        return {"topic": outcome[made[out]], "sentiment": 1.0}

    plan = {"fp32_layers": 2, "smooth_alpha": 0.8, "fp32_nodes": 8, "agreement": {"topic": 0.995}}
    dst = tmp_path / "int8.onnx"
    got = _refine_top_layer(plan, quantize, rates_of, {0.8: tmp_path / "src.onnx"}, dst, [], bar=0.992)
    assert got["fp32_layers"] == 1 and got["also_fp32"] == [names[2]] and got["fp32_nodes"] == 1
    assert dst.read_text() == names[2]  # the chosen try became the int8 file
    # nothing clears the bar: the whole-layer plan stands, the file untouched
    dst.write_text("layer plan")
    assert (
        _refine_top_layer(plan, quantize, rates_of, {0.8: tmp_path / "src.onnx"}, dst, [], bar=0.999) == plan
    )
    assert dst.read_text() == "layer plan"


def test_faithful_export_passes_and_reports_numbers(exported: Exported) -> None:
    report = validate_variants(exported.model, exported.paths, exported.encoded, pad_id=0)
    assert max(report["fp32_vs_torch_max_abs_diff"].values()) <= 1e-4
    assert set(report["agreement_with_fp32"]) == {"fp16", "int8"}
    for rates in report["agreement_with_fp32"].values():
        assert min(rates.values()) >= 0.99
    topic, sentiment = run_onnx(exported.paths["fp32"], exported.encoded[:7], pad_id=0, batch_size=3)
    assert topic.shape == (7, 4) and sentiment.shape == (7, 3)
    np.testing.assert_allclose(topic.sum(axis=1), 1.0, atol=1e-5)  # probabilities, not logits


def _negate_head(src: Path, dst: Path, head: str) -> None:
    """Flip the sign of one head's weight matrix in an ONNX file (a corrupted weight)."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.name.endswith(f"{head}_head.weight"):
            init.CopyFrom(numpy_helper.from_array(-arr, init.name))
            break
    else:
        raise AssertionError("head weight not found")
    onnx.save(model, str(dst))


def test_corrupted_variant_fails_naming_variant_and_head(exported: Exported, tmp_path: Path) -> None:
    bad = dict(exported.paths)
    bad["int8"] = tmp_path / "model.int8.onnx"
    _negate_head(exported.paths["fp32"], bad["int8"], "sentiment")
    with pytest.raises(ExportValidationError) as err:
        validate_variants(exported.model, bad, exported.encoded, pad_id=0)
    message = str(err.value)
    assert "int8 variant disagrees with fp32 on the sentiment head" in message
    assert f"of {len(exported.encoded)} validation predictions agree" in message


def test_fp32_that_drifts_from_pytorch_fails(exported: Exported) -> None:
    drifted = copy.deepcopy(exported.model)
    with torch.no_grad():
        drifted.sentiment_head.bias.add_(torch.tensor([0.05, 0.0, -0.05]))
    with pytest.raises(
        ExportValidationError, match=r"fp32 ONNX vs PyTorch: sentiment probabilities differ by up to"
    ):
        validate_variants(drifted, exported.paths, exported.encoded, pad_id=0)


def test_export_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="opset"):
        ExportOptions(opset=13)
    with pytest.raises(ConfigError, match="fp32"):
        ExportOptions(variants=("int8",))
    with pytest.raises(ConfigError, match="int8 mode"):
        ExportOptions(int8="fast")
    with pytest.raises(ConfigError, match="calibration method"):
        ExportOptions(int8="static", calibration="mean")
    with pytest.raises(ConfigError, match="int8 target must be auto or one of avx512_vnni"):
        ExportOptions(int8_isa="sse4")


def test_static_int8_is_calibrated_qdq_and_passes_the_gate(exported: Exported, tmp_path: Path) -> None:
    from training.export import fit_int8

    calibration = exported.encoded[::2]  # stands in for training texts: any tokenized rows
    options = ExportOptions(int8="static", calibration="minmax")
    plan = fit_int8(exported.paths["fp32"], tmp_path / "s.onnx", exported.encoded, 0, options, calibration)
    assert plan["mode"] == "static" and plan["calibration"] == "minmax"
    assert plan["calibration_rows"] == len(calibration) and plan["isa"] in (
        "avx2",
        "avx512",
        "avx512_vnni",
        "arm64",
    )
    assert min(plan["agreement"].values()) >= options.min_agreement
    graph = onnx.load(str(tmp_path / "s.onnx")).graph
    ops = [n.op_type for n in graph.node]
    if plan["fp32_layers"] < plan["of_layers"]:
        # activations quantised with fixed calibrated scales (QuantizeLinear), not per batch
        assert "QuantizeLinear" in ops and "DynamicQuantizeLinear" not in ops
        quantised = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        # each MatMul output stays float for the residual add: no QuantizeLinear on a MatMul output
        assert not any(name.endswith("MatMul_output_0") for name in quantised)
    assert ops.count("Gemm") == 2  # the heads stay fp32


def test_static_int8_needs_calibration_rows(exported: Exported, tmp_path: Path) -> None:
    from training.export import fit_int8

    with pytest.raises(ConfigError, match="calibration texts"):
        fit_int8(
            exported.paths["fp32"], tmp_path / "s.onnx", exported.encoded, 0, ExportOptions(int8="static"), []
        )


def test_model_card_says_how_int8_was_made() -> None:
    from training.package import calibration_sample, int8_card_lines

    static = {"mode": "static", "calibration": "entropy", "calibration_rows": 256, "isa": "avx512_vnni",
              "fp32_layers": 1, "of_layers": 6, "agreement": {"topic": 0.995, "sentiment": 1.0}}  # fmt: skip
    text = "\n".join(int8_card_lines({"export_validation": {"int8_plan": static}}))
    smoothed = {
        "mode": "dynamic",
        "smooth_alpha": 0.8,
        "calibration_rows": 256,
        "fp32_layers": 0,
        "of_layers": 6,
    }
    card = "\n".join(int8_card_lines({"export_validation": {"int8_plan": smoothed}}))
    assert "after smoothing (alpha 0.8" in card and "0 of 6 encoder layers kept fp32" in card
    assert "static (QDQ)" in text and "(entropy) on 256 training texts for avx512_vnni" in text
    assert "1 of 6 encoder layers kept fp32" in text and "topic 99.50%, sentiment 100.00%" in text
    dynamic = {"mode": "dynamic", "fp32_layers": 2, "of_layers": 6}
    assert "dynamic quantisation" in "\n".join(int8_card_lines({"export_validation": {"int8_plan": dynamic}}))
    avx2 = {**dynamic, "isa": "avx2", "weights": "uint8"}
    card = "\n".join(int8_card_lines({"export_validation": {"int8_plan": avx2}}))
    assert "per batch) for avx2; weights uint8 per channel" in card
    assert int8_card_lines({}) == []
    assert calibration_sample([str(i) for i in range(10)], 3) == ["0", "3", "6"]
    assert calibration_sample(["a"], 5) == ["a"]


@pytest.mark.gpu
def test_fp16_on_cuda_agrees_with_fp32_on_cpu(tiny_artifact: Path) -> None:
    from models.artifact import load_artifact
    from models.runtime import Scorer, gpu_present
    from tests.support.tiny_models import TinyVocabulary
    from training.data import DEFAULT_TOPICS

    if not gpu_present():
        pytest.skip("no CUDA device")
    art = load_artifact(tiny_artifact)
    gpu = Scorer(art, provider="cuda", variant="fp16")
    if gpu.provider != "cuda":
        pytest.skip("CUDA execution provider did not initialise")
    rows = TinyVocabulary(DEFAULT_TOPICS).rows(per_topic=10, seed=11)
    texts = [r["text"] for r in rows]
    ref_t, ref_s = Scorer(art, provider="cpu", variant="fp32").probabilities(texts)
    got_t, got_s = gpu.probabilities(texts)
    assert float((ref_t.argmax(1) == got_t.argmax(1)).mean()) >= 0.99
    assert float((ref_s.argmax(1) == got_s.argmax(1)).mean()) >= 0.99
    assert float(np.abs(ref_t - got_t).max()) < 1e-2


def test_smoothing_scales_move_activation_outliers_into_the_weights() -> None:
    from training.smoothing import SCALE_RANGE, smoothing_scales

    act = np.array([16.0, 1.0, 1.0, 0.0])
    w = np.array([1.0, 1.0, 4.0, 1.0])
    s = smoothing_scales(act, w, alpha=0.5)
    # s_j = sqrt(act_j / w_j): the outlier channel is divided by 4, the weight row multiplied by 4
    np.testing.assert_allclose(s[:3], [4.0, 1.0, 0.5], rtol=1e-6)
    assert s[3] == np.float32(SCALE_RANGE[0])  # a channel that never fires: clipped, never 0
    np.testing.assert_allclose(smoothing_scales(act, w, alpha=1.0)[:3], [16.0, 1.0, 1.0], rtol=1e-6)
    # after smoothing, activation and weight maxima per channel meet at alpha 0.5
    np.testing.assert_allclose((act / s)[:3], (w * s)[:3], rtol=1e-6)


def test_smoothed_graph_is_the_same_function_and_int8_records_its_alpha(
    exported: Exported, tmp_path: Path
) -> None:
    from training.export import _layer_of, fit_int8
    from training.smoothing import activation_maxima, smooth_graph

    fp32 = exported.paths["fp32"]
    rows = exported.encoded[::2]
    maxima = activation_maxima(fp32, rows, _layer_of)
    n = smooth_graph(fp32, tmp_path / "smooth.onnx", maxima, 0.8, _layer_of)
    assert n == 2 * 4  # two layers x (fused attention + attention output + two feed-forward projections)
    before = run_onnx(fp32, exported.encoded, pad_id=0)
    after = run_onnx(tmp_path / "smooth.onnx", exported.encoded, pad_id=0)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # exact in real arithmetic; float rounding only
    dst = tmp_path / "int8" / "model.int8.onnx"
    dst.parent.mkdir()
    plan = fit_int8(fp32, dst, exported.encoded, 0, ExportOptions(), calibration=rows)
    assert plan["smooth_alpha"] in (None, 0.5, 0.8) and plan["calibration_rows"] == len(rows)
    assert min(plan["agreement"].values()) >= 0.99
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.int8.onnx"]  # no scratch left behind
    # without calibration texts there is nothing to measure smoothing on: plain int8
    assert fit_int8(fp32, dst, exported.encoded, 0, ExportOptions(), calibration=None)["smooth_alpha"] is None


def test_a_layer_plan_must_clear_the_gate_by_one_standard_error() -> None:
    from training.export import plan_bar

    assert plan_bar(0.99, 673) == pytest.approx(0.99 + (0.99 * 0.01 / 673) ** 0.5)  # 0.38 points
    assert round(plan_bar(0.99, 673), 4) == 0.9938
    assert plan_bar(0.99, 10) == pytest.approx(0.995)  # capped: a handful of rows asks no more than this
    assert plan_bar(0.99, 10**9) == pytest.approx(0.99, abs=1e-5)


def test_cpu_variants_carry_plain_ops_and_the_gpu_variant_the_fused_ones(exported: Exported) -> None:
    def ops(variant: str) -> set[str]:
        return {n.op_type for n in onnx.load(str(exported.paths[variant])).graph.node}

    for variant in ("fp32", "int8"):  # what the CPU runs (training/unfuse.py)
        assert {"LayerNormalization", "Gelu"} <= ops(variant)
        assert not ops(variant) & {"SkipLayerNormalization", "BiasGelu"}
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops("fp16")  # for CUDA, fused
