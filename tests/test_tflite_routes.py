"""The TFLite formats' fallback routes: where TFLiteConverter refuses the SavedModel artifact and that SavedModel
was made from the ONNX artifact, onnx2tf runs again on the ONNX artifact with the fix the failure calls for: ops
TFLite built-ins lack replaced by compositions of built-ins (``pseudo-ops``: exact GELU's Erf), or the dynamic dims
fixed (``fixed-dims``: a dynamic-length RNN). Unit tests of the route choice and the messages, then end to end
with the real converters on two ONNX files as older exporters write them."""
from __future__ import annotations

import sys

import pytest
from conftest import TEST_MODELS, flat, manifest_of

from deploytool.core.contract import Contract
from deploytool.formats import ExportContext, _tflite
from deploytool.formats.savedmodel import Onnx2tf


def _test_model(name: str):
    """A module of tests/models/ (imported when a slow test needs it: they import torch)."""
    import importlib

    if str(TEST_MODELS) not in sys.path:
        sys.path.insert(0, str(TEST_MODELS))
    return importlib.import_module(name)

TENSOR_LIST = ("<unknown>:0: error: loc(callsite(fused[\"TensorListReserve:\", \"model/rnn/TensorArrayV2_1\"])): "
               "'tf.TensorListReserve' op requires element_shape to be static during TF Lite transformation pass")
ERF = "'tf.Erf' op is neither a custom op nor a flex op"


def _contract(seq: str | int = "seq") -> Contract:
    return Contract.from_dict({"inputs": [{"name": "x", "shape": [1, seq, 4], "dtype": "float32"}],
                               "outputs": [{"name": "y", "shape": [1, 3], "dtype": "float32"}],
                               "dims": {"seq": {"example": 16, "alt": 24}} if isinstance(seq, str) else {}})


def test_a_dynamic_length_loop_is_explained_as_the_dynamic_dim_not_a_missing_op():
    ctx = type("Ctx", (), {"parent_contract": _contract()})()
    why = _tflite.explain(RuntimeError("ConverterError: " + TENSOR_LIST), "", ctx)
    assert why == ("TFLiteConverter: the dynamic dim seq is the cause: a loop over it (a dynamic-length RNN) needs "
                   "static shapes in TFLite built-ins (tf.TensorListReserve); declare that dim with a fixed size")
    why = _tflite.explain(RuntimeError(f"{TENSOR_LIST}\n{ERF}"), "", ctx)  # another op lacking is still named
    assert why.endswith("with a fixed size; ops not supported by TFLite built-ins besides: tf.Erf"), why


def test_each_fallback_route_is_tried_only_for_the_failure_it_fixes():
    assert _tflite._no_replaceable_op(RuntimeError(ERF)) is None
    assert _tflite._no_replaceable_op(RuntimeError("'tf.MatrixDeterminant' op is neither a custom op nor a flex op")) \
        == "onnx2tf has no built-in composition for the ops TFLite lacked"
    assert _tflite._dims_not_the_cause(RuntimeError(TENSOR_LIST), _contract()) is None
    assert _tflite._dims_not_the_cause(RuntimeError(ERF), _contract()) == \
        "no dynamic dim was the cause"
    assert _tflite._dims_not_the_cause(RuntimeError(TENSOR_LIST), _contract(16)) == \
        "the SavedModel has no dynamic dim"


def test_the_onnx_artifact_is_rebuilt_from_only_where_the_savedmodel_was_made_from_it(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "m_saved_model").mkdir()
    ctx = ExportContext(model_name="m", contract=_contract(), out_path=tmp_path / "m_float32.tflite",
                        workdir=tmp_path, parent_path=tmp_path / "m_saved_model", parent_contract=_contract())
    assert _tflite._onnx_ancestor(ctx) == tmp_path / "m.onnx"
    ctx.framework = "onnx"  # an .onnx source: the same chain
    assert _tflite._onnx_ancestor(ctx) == tmp_path / "m.onnx"
    ctx.framework = "tensorflow"  # the SavedModel is the source's own; the ONNX artifact is made from it
    assert _tflite._onnx_ancestor(ctx) is None


def test_onnx2tf_options_record_the_replaced_ops(tmp_path):
    tool = Onnx2tf(tmp_path / "m.onnx", _contract(), tmp_path, pseudo_ops=("erf",))
    assert tool.options()["replace_to_pseudo_operators"] == ["erf"]
    assert tool._kwargs(tmp_path / "out")["replace_to_pseudo_operators"] == ["erf"]
    assert "replace_to_pseudo_operators" not in Onnx2tf(tmp_path / "m.onnx", _contract(), tmp_path).options()


# --- end to end, real converters ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_exact_gelu_onnx_file_gets_every_tflite_format_by_the_pseudo_ops_route(run_cli, tmp_path):
    src = tmp_path / "exact_gelu.onnx"
    _test_model("exact_gelu_onnx").write(src)
    # tflite_int8 takes the same route; its full-integer DIV of this graph fails to run in LiteRT 2.3 (an ERROR of
    # its own: "div.cc:262 data[i] != zero_point"), so it is left out here.
    proc = run_cli("export", "--model", src, "-f", "tflite_fp32", "-f", "tflite_fp16", "-f", "tflite_dynamic",
                   "--runtime", "onnxruntime", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    art = manifest_of(tmp_path / "out/exact_gelu")["artifacts"]
    for fmt in ("tflite_fp32", "tflite_fp16", "tflite_dynamic"):
        rec = art[fmt]
        assert rec["status"] == "ok" and rec["check"]["status"] == "pass", (fmt, rec.get("check"), rec.get("error"))
        assert rec["route"] == {"name": "pseudo-ops", "failed": [
            "direct: TFLiteConverter: ops not supported by TFLite built-ins: tf.Erf (tf.Erf is exact GELU: a model "
            "using the tanh-approximate GELU converts)"]}, fmt
        assert rec["exporter"]["options"]["onnx2tf"]["replace_to_pseudo_operators"] == ["erf"], fmt
        assert "with Erf replaced by compositions of TFLite built-ins" in rec["notes"][0], fmt
    # the composition is accurate far below the fp32 tolerance
    assert art["tflite_fp32"]["check"]["max_abs"] < 1e-5, art["tflite_fp32"]["check"]
    assert "route pseudo-ops (direct failed: TFLiteConverter: ops not supported by TFLite built-ins: tf.Erf" \
        in flat(proc.stdout)


@pytest.mark.slow
def test_dynamic_length_gru_gets_the_tflite_formats_with_the_sequence_dim_fixed(run_cli, tmp_path):
    src = tmp_path / "dynamic_gru.onnx"
    _test_model("dynamic_gru").write(src)
    proc = run_cli("export", "--model", src, "-f", "tflite_fp32", "-f", "tflite_fp16", "-f", "tflite_dynamic",
                   "--runtime", "onnxruntime", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    art = manifest_of(tmp_path / "out/dynamic_gru")["artifacts"]
    sm = art["savedmodel"]  # the SavedModel keeps the sequence dynamic and runs both shapes
    assert sm["check"]["status"] == "pass" and not sm["check"]["skipped_sets"] and not sm["contract"].get("fixed_dims")
    for fmt in ("tflite_fp32", "tflite_fp16", "tflite_dynamic"):
        rec = art[fmt]
        assert rec["status"] == "ok" and rec["check"]["status"] == "pass", (fmt, rec.get("check"), rec.get("error"))
        assert rec["route"]["name"] == "fixed-dims", fmt
        assert rec["route"]["failed"][0].startswith("direct: TFLiteConverter: the dynamic dim seq is the cause"), fmt
        assert rec["contract"]["fixed_dims"] == {"seq": 16}, fmt
        assert rec["check"]["skipped_sets"], fmt  # the alt set (seq 24) does not fit, and says so
        assert any(n.startswith("dims fixed: seq=16") for n in rec["notes"]), (fmt, rec["notes"])
    assert "alt set not run: artifact fixed seq=16" in flat(proc.stdout)
