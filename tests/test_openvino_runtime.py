"""The ``openvino`` runtime, in process (OpenVINO imports in ~0.2 s, a tiny model compiles in ~0.05 s): it runs
the ``.onnx`` artifact and the OpenVINO IR (an ``.xml`` or the IR directory) computing what onnxruntime
computes at fp32, reports its knobs read back (threads, f32 inference precision whatever the CPU), keeps
dynamic batch, declares the I/O its contract checks, and hands out outputs a later call cannot overwrite."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploytool.core.contract import Contract, declared_mismatches
from deploytool.runtimes import RUNTIMES
from deploytool.targets import runtimes_of

OV = RUNTIMES["openvino"]

CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32", "layout": "NCHW"}],
    "outputs": [{"name": "y", "shape": ["batch", 5], "dtype": "float32"},
                {"name": "feat", "shape": ["batch", 4], "dtype": "float32"}],
    "dims": {"batch": {"example": 1, "alt": 3}}})


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten (``feat``) -> Gemm (``y``): fp32, dynamic batch, two outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["feat"]),
             helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["y"], transB=1)]
    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(nodes, "tiny", [value("x", ["batch", 3, 8, 8])],
                              [value("y", ["batch", 5]), value("feat", ["batch", 4])], inits)
    path = tmp_path_factory.mktemp("ov") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="module")
def tiny_ir(tiny_onnx) -> Path:
    """The IR directory the ``openvino`` format writes: model.xml + model.bin, fp32 weights."""
    import openvino as ov

    out = tiny_onnx.parent / "tiny_openvino"
    out.mkdir()
    ov.save_model(ov.convert_model(str(tiny_onnx)), str(out / "model.xml"), compress_to_fp16=False)
    return out


def _feeds(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)}


def _onnxruntime(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    rt = RUNTIMES["onnxruntime"]
    return rt.run(rt.load(path, {"threads": 1}), feeds)


def test_it_is_a_runtime_of_the_onnx_artifact_and_of_the_ir():
    assert (OV.extra, OV.distributions, OV.runs) == ("openvino", ("openvino",), ("onnx", "onnx_int8"))
    assert "openvino" in runtimes_of("onnx") and runtimes_of("onnx")[0] == "onnxruntime"


@pytest.mark.parametrize("artifact", ["onnx", "ir_dir", "ir_xml"])
def test_outputs_match_onnxruntime_at_fp32_at_batch_1_and_3(artifact, tiny_onnx, tiny_ir):
    path = {"onnx": tiny_onnx, "ir_dir": tiny_ir, "ir_xml": tiny_ir / "model.xml"}[artifact]
    session = OV.load(path, {"threads": 1})
    for batch in (1, 3):  # the dynamic batch dim is kept: one compiled model takes both
        feeds = _feeds(batch)
        got, ref = OV.run(session, feeds), _onnxruntime(tiny_onnx, feeds)
        assert list(got) == ["y", "feat"]
        for name in ref:
            assert got[name].shape == ref[name].shape and got[name].dtype == np.float32
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=f"{artifact} {name}")


def test_settings_report_threads_and_f32_inference_precision(tiny_onnx):
    for threads in (1, 2):
        reported = OV.reported_settings(OV.load(tiny_onnx, {"threads": threads}))
        assert reported["threads"] == threads
        assert (reported["inter_op_threads"], reported["spinning"]) == (None, None)  # knobs OpenVINO does not have
        # set, and read back from the compiled model: f32 even where the CPU has native bf16
        assert reported["inference_precision"] == "f32"
        assert (reported["num_streams"], reported["performance_hint"], reported["device"]) == (1, "LATENCY", "CPU")
    assert OV.reported_settings(OV.load(tiny_onnx, {}))["threads"] >= 1  # the plugin's own choice, read back


def test_a_later_call_does_not_overwrite_earlier_outputs(tiny_onnx):
    session = OV.load(tiny_onnx, {"threads": 1})
    first = OV.run(session, _feeds(2, seed=1))
    kept = {k: v.copy() for k, v in first.items()}
    OV.run(session, _feeds(2, seed=2))
    OV.run(session, _feeds(3, seed=3))
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name], err_msg=name)


def test_inputs_are_not_changed_and_any_layout_of_array_is_taken(tiny_onnx):
    session = OV.load(tiny_onnx, {"threads": 1})
    x = np.ascontiguousarray(_feeds(2)["x"].transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # not C-contiguous
    before = x.copy()
    got = OV.run(session, {"x": x})
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(got["y"], _onnxruntime(tiny_onnx, {"x": before})["y"], rtol=1e-5, atol=1e-5)


def test_describe_declares_the_io_the_contract_is_checked_against(tiny_onnx, tiny_ir):
    for path in (tiny_onnx, tiny_ir):
        declared = OV.describe(OV.load(path, {}))
        assert declared == {"inputs": [{"name": "x", "dtype": "float32", "shape": [None, 3, 8, 8]}],
                            "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 5]},
                                        {"name": "feat", "dtype": "float32", "shape": [None, 4]}],
                            "ordered": True}
        assert declared_mismatches(CONTRACT, declared) == []


def test_an_ir_directory_without_exactly_one_xml_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="expected one OpenVINO IR .xml file, found 0"):
        OV.load(tmp_path, {})


def test_version_is_the_distributions():
    from importlib.metadata import version

    assert OV.version() == version("openvino")


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_registry_does_not_import_openvino():
    code = "import sys, deploytool.runtimes.openvino, deploytool.runtimes as r; r.RUNTIMES['openvino']; " \
           "print('openvino' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
