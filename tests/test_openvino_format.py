"""The ``openvino`` format (OpenVINO IR from the ONNX artifact), in process: registration and
routes, the fp16-weights guard, ``explain`` on OpenVINO's own conversion messages; and (slow, they
import OpenVINO) a real conversion checked against onnxruntime, the intermediate tensors exposed on
OpenVINO, and the planted fault of tests/models/runtime_split.py that only OpenVINO has."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploytool.core.contract import Contract
from deploytool.formats import FORMATS, ExportContext, lineage, plan
from deploytool.formats import openvino as ov_format

MODELS = Path(__file__).resolve().parent / "models"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # CPUs with native bf16 would otherwise run f32 models in bf16

CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32", "layout": "NCHW"}],
    "outputs": [{"name": "y", "shape": ["batch", 5], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3}}})


def _tiny_onnx(path: Path) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, fp32 weights, dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], name="node_conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"], name="node_relu"),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="node_pool"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="node_flatten"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="node_fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _context(tmp_path: Path, parent: Path) -> ExportContext:
    (tmp_path / "work").mkdir(exist_ok=True)
    return ExportContext(model_name="tiny", contract=CONTRACT, out_path=tmp_path / "artifacts" / "tiny_openvino",
                         workdir=tmp_path / "work", parent_path=parent, parent_contract=CONTRACT)


def _ort(path: Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _ov(path: Path, feeds: dict) -> list[np.ndarray]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", F32)
    results = compiled(feeds)
    return [np.array(results[o]) for o in compiled.outputs]


# --- registration, in process, without OpenVINO ---------------------------------------------------------------

def test_format_is_an_fp32_ir_directory_made_from_the_onnx_artifact_for_every_source():
    fmt = FORMATS["openvino"]
    assert (fmt.parent, fmt.precision, fmt.tier, fmt.runtimes, fmt.stage, fmt.is_dir) == \
        ("onnx", "fp32", "fp32", ("openvino",), "torch", True)
    assert fmt.requires == ("openvino",) and fmt.explain is ov_format.explain
    for framework in ("onnx", "tensorflow"):
        routed = plan(framework)["openvino"]
        assert (routed.parent, routed.stage, routed.not_applicable) == ("onnx", framework, None)
        assert lineage("openvino", framework)[-2:] == ["onnx", "openvino"]


def test_importing_the_registry_does_not_import_openvino():
    code = "import sys, deploytool.formats; assert 'openvino' not in sys.modules, 'openvino imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


IR_WITH_FP16_WEIGHTS = """<?xml version="1.0"?>
<net name="m" version="11"><layers>
  <layer id="0" name="x" type="Parameter" version="opset1"><data shape="?,4" element_type="f32" /></layer>
  <layer id="1" name="w_compressed" type="Const" version="opset1">
    <data element_type="f16" shape="3, 4" offset="0" size="24" /></layer>
  <layer id="2" name="w" type="Convert" version="opset1"><data destination_type="f32" /></layer>
  <layer id="3" name="k" type="Const" version="opset1"><data element_type="f32" shape="" offset="24" size="4" /></layer>
</layers></net>"""


def test_fp16_constants_are_counted_in_the_ir(tmp_path):
    xml = tmp_path / "model.xml"
    xml.write_text(IR_WITH_FP16_WEIGHTS)
    assert ov_format.fp16_constants(xml) == 1
    xml.write_text(IR_WITH_FP16_WEIGHTS.replace('"f16"', '"f32"'))
    assert ov_format.fp16_constants(xml) == 0


# openvino 2026.4.1 convert_model's messages (OpConversionFailure), recorded on one-node ONNX graphs.
UNSUPPORTED_MODE = (
    "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
    "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed log:\n"
    "-- Pad-19 with a message:\n[ONNX Frontend] Conversion failed for Pad-19\nWhile validating ONNX node "
    "'<Node(Pad): y>': Exception from src/frontends/onnx/frontend/src/op/pad.cpp:32:\nUnsupported padding mode: "
    "[wrap]\n\nSummary:\n-- Conversion is failed for: Pad-19\n")
FAILED_CHECK = (
    "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
    "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed log:\n"
    "-- Mod-18 with a message:\n[ONNX Frontend] Conversion failed for Mod-18\nWhile validating ONNX node "
    "'<Node(Mod): y>': Check 'dividend.get_element_type().is_integral() && divisor.get_element_type().is_integral()' "
    "failed at src/frontends/onnx/frontend/src/op/mod.cpp:27:\nFrontEnd API failed with GeneralFailure:\nIf the "
    "input type is floating point, then `fmod` attribute must be set to 1.\n\nSummary:\n-- Conversion is failed "
    "for: Mod-18\n")
NO_RULE = (
    "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
    "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\nSummary:\n-- No conversion rule "
    "found for operations: my.domain.Foo2, my.domain.Frobnicate\n")


@pytest.mark.parametrize(("message", "line"), [
    (UNSUPPORTED_MODE, "openvino.convert_model cannot convert the ONNX Pad node writing 'y': Unsupported padding "
                       "mode: [wrap]"),
    (FAILED_CHECK, "openvino.convert_model cannot convert the ONNX Mod node writing 'y': If the input type is floating "
                   "point, then `fmod` attribute must be set to 1."),
    (NO_RULE, "openvino.convert_model has no conversion for ONNX op(s) my.domain.Foo2, my.domain.Frobnicate"),
    ("Cannot recognize input model.", "openvino.convert_model: OpConversionFailure: Cannot recognize input model."),
], ids=["unsupported mode", "failed check", "no conversion rule", "other"])
def test_explain_names_the_op_and_the_cause_in_one_line(message, line, tmp_path):
    exc = type("OpConversionFailure", (Exception,), {})(message)
    got = ov_format.explain(exc, "", _context(tmp_path, tmp_path / "parent.onnx"))
    assert got == line
    assert "\n" not in got and len(got) < 400


# --- real conversions (import OpenVINO) --------------------------------------------------------------------------

@pytest.mark.slow
def test_convert_writes_an_fp32_ir_that_computes_what_onnxruntime_does(tmp_path):
    parent = _tiny_onnx(tmp_path / "tiny.onnx")
    ctx = _context(tmp_path, parent)
    result = ov_format.convert(ctx)
    assert sorted(p.name for p in ctx.out_path.iterdir()) == ["model.bin", "model.xml"]
    assert ov_format.fp16_constants(ctx.out_path / "model.xml") == 0
    assert result.options["compress_to_fp16"] is False and result.exporter_version.startswith("openvino ")
    assert result.contract.to_dict() == CONTRACT.to_dict()
    # weights kept fp32: the .bin holds the 4*(108 + 4 + 20 + 5) bytes of the ONNX initializers, at least
    assert (ctx.out_path / "model.bin").stat().st_size >= 4 * (108 + 4 + 20 + 5)
    for batch in (2, 3):  # the batch dim stays dynamic
        feeds = {"x": np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 8, 8)).astype(np.float32)}
        (want,), (got,) = _ort(parent, feeds), _ov(ctx.out_path / "model.xml", feeds)
        assert got.shape == want.shape == (batch, 5)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_convert_refuses_an_ir_whose_weights_were_compressed_to_fp16(tmp_path, monkeypatch):
    import openvino as ov

    real = ov.save_model
    monkeypatch.setattr(ov, "save_model", lambda model, path, compress_to_fp16=True: real(model, path, True))
    with pytest.raises(RuntimeError, match="fp16 constants"):
        ov_format.convert(_context(tmp_path, _tiny_onnx(tmp_path / "tiny.onnx")))


@pytest.mark.slow
def test_the_openvino_runtime_loads_the_ir_directory(tmp_path):
    """The artifact is a directory: the runtime finds the one *.xml inside (and runs an .onnx too)."""
    from deploytool.runtimes import RUNTIMES

    if "openvino" not in RUNTIMES:
        pytest.skip("no openvino runtime registered yet")
    runtime = RUNTIMES["openvino"]
    parent = _tiny_onnx(tmp_path / "tiny.onnx")
    ctx = _context(tmp_path, parent)
    ov_format.convert(ctx)
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)}
    (want,) = _ort(parent, feeds)
    for path in (ctx.out_path, parent):
        got = runtime.run(runtime.load(path, {"threads": 1}), feeds)
        np.testing.assert_allclose(got["y"], want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_intermediate_tensors_are_exposed_on_openvino(tmp_path):
    from deploytool.checking.localise import Limits
    from deploytool.expose import EXPOSERS, expose

    parent = _tiny_onnx(tmp_path / "tiny.onnx")
    ctx = _context(tmp_path, parent)
    ov_format.convert(ctx)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    for path in (parent, ctx.out_path):
        exposed = expose("openvino", str(path), {"x": x}, Limits())
        assert exposed.inputs == ["x"] and not exposed.truncated
        assert {"conv", "relu", "y"} <= set(exposed.tensors), sorted(exposed.tensors)
        assert {n.op_type for n in exposed.nodes} >= {"Convolution", "Relu"}
        (want,) = _ort(parent, {"x": x})
        np.testing.assert_allclose(exposed.tensors["y"], want, rtol=0, atol=1e-5)
    assert EXPOSERS["openvino"].runtime == "openvino"
    truncated = expose("openvino", str(parent), {"x": x}, Limits(max_tensors=1))
    assert truncated.truncated and len(truncated.tensors) == 1


# --- the planted fault only OpenVINO has -------------------------------------------------------------------------

@pytest.mark.slow
def test_runtime_split_model_is_computed_per_spec_by_onnxruntime_and_not_by_openvino(tmp_path):
    sys.path.insert(0, str(MODELS))
    try:
        import runtime_split
    finally:
        sys.path.remove(str(MODELS))
    from onnx.reference import ReferenceEvaluator

    path = runtime_split.build(tmp_path / "runtime_split.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (2, *runtime_split.SHAPE)).astype(np.float32)
    spec = runtime_split.reference(x)
    assert spec.std() > 0.1  # varies with its input
    (ort_out,), (ov_out,) = _ort(path, {"x": x}), _ov(path, {"x": x})
    (evaluator,) = ReferenceEvaluator(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(evaluator, spec, rtol=0, atol=1e-5)  # onnx's own reference agrees with ours
    np.testing.assert_allclose(ort_out, spec, rtol=0, atol=1e-5)  # onnxruntime follows the spec
    for i in range(len(x)):  # OpenVINO is off on every sample, not on one outlier
        assert np.abs(ov_out[i] - ort_out[i]).max() > 1e-3
    assert np.abs(ov_out - spec).max() > 0.1
