"""TensorFlow sources: a Keras model file (.keras) and a SavedModel directory. TensorFlow becomes
the source: SavedModel is the root artifact, TFLite comes from it, ONNX through tf2onnx,
TorchScript is not applicable."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import TEST_MODELS, manifest_of

from deploytool.core import errors

sys.path.insert(0, str(TEST_MODELS))
import tf_sources  # noqa: E402  (tests/models/tf_sources.py)

ALL_BUT_TORCHSCRIPT = ("savedmodel", "onnx", "tflite_fp32", "tflite_fp16")


@pytest.fixture(scope="module")
def savedmodel_bundle(run_cli, tmp_path_factory):
    src = tf_sources.savedmodel_text_classifier(tmp_path_factory.mktemp("sm_src") / "text_classifier")
    out = tmp_path_factory.mktemp("sm_bundle")
    proc = run_cli("export", "--model", src, "--input-range", "ids:0:100", "--keep-layout", "--out", out)
    return out / "text_classifier", proc, src


def _assert_tf_chain(m: dict) -> None:
    art = m["artifacts"]
    assert art["torchscript"]["status"] == "not_applicable" and "source is tensorflow" in art["torchscript"]["error"]
    for fmt in ALL_BUT_TORCHSCRIPT:
        assert art[fmt]["status"] == "ok" and art[fmt]["check"]["status"] == "pass", (fmt, art[fmt].get("check"))
    # the export chain each artifact came through
    assert art["savedmodel"]["parent"] is None and art["savedmodel"]["chain"] == ["source (tensorflow)", "savedmodel"]
    assert art["onnx"]["parent"] == "savedmodel" and art["onnx"]["exporter"]["name"] == "tf2onnx"
    assert art["onnx"]["chain"] == ["source (tensorflow)", "savedmodel", "onnx"]
    assert art["tflite_fp16"]["chain"] == ["source (tensorflow)", "savedmodel", "tflite_fp16"]
    # TF's own layout throughout: no artifact permutes a tensor
    for fmt in ALL_BUT_TORCHSCRIPT:
        assert all("perm" not in s for s in art[fmt]["contract"]["inputs"] + art[fmt]["contract"]["outputs"]), fmt


def test_keras_file_exports_every_applicable_format_with_parity(keras_bundle):
    bundle, proc, _ = keras_bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(bundle)
    assert m["model"]["source"]["kind"] == "keras" and m["model"]["source"]["framework"] == "tensorflow"
    assert m["golden"]["reference_runtime"] == "keras"
    (inp,), (out,) = m["contract"]["inputs"], m["contract"]["outputs"]
    assert inp["shape"] == ["batch", 96, 96, 3] and inp["layout"] == "NHWC" and inp["dtype"] == "float32"
    assert out["name"] == "predictions" and out["shape"] == ["batch", 10] and out["kind"] == "classifier"
    assert m["artifacts"]["savedmodel"]["exporter"]["name"].startswith("keras ")
    _assert_tf_chain(m)
    # the reference really depends on the input (a constant output would make parity vacuous)
    ref = np.load(bundle / "golden/reference.npz")["predictions"]
    assert ref.std(axis=0).mean() > 1e-2
    assert set(m["golden"]["sets"]) == {"main", "alt"}  # the dynamic batch is checked at a second size
    assert "NOT_APPLICABLE" in proc.stdout


def test_keras_bundle_validates_and_benches_with_the_keras_source_row(keras_bundle, run_cli, tmp_path):
    bundle, _, _ = keras_bundle
    proc = run_cli("validate", bundle, "--reports", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("bench", bundle, "--min-time", "0.1", "--min-runs", "10", "--warmup-runs", "1", "--warmup-time",
                   "0", "--reports", tmp_path, "-f", "onnx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["format"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows["source"]["runtime"] == "keras" and rows["source"]["status"] == "ok"
    assert rows["onnx"]["status"] == "ok"


def test_savedmodel_directory_exports_every_applicable_format_with_parity(savedmodel_bundle):
    bundle, proc, src = savedmodel_bundle
    m = manifest_of(bundle)
    # its einsum converts to TF.js, but the wasm backend has no Einsum kernel: that target alone fails, saying so
    tfjs = m["artifacts"]["tfjs"]["checks"]["tfjs@tfjs_wasm"]
    assert tfjs["status"] == "error" and "TensorFlow.js's wasm backend has no kernel for Einsum" in tfjs["reason"]
    assert proc.returncode == errors.RUNTIME, proc.stdout + proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("deploytool: error:")] == [
        f"deploytool: error: text_classifier/tfjs: {tfjs['reason']}"]
    assert m["model"]["source"]["kind"] == "savedmodel" and m["golden"]["reference_runtime"] == "tensorflow"
    (ids,) = m["contract"]["inputs"]
    assert ids["shape"] == ["batch", "ids_dim1"] and ids["dtype"] == "int32" and ids["range"] == [0, 100]
    assert [o["name"] for o in m["contract"]["outputs"]] == ["logits", "pooled"]
    assert "--keep-layout has no effect here: artifacts of a TensorFlow source keep its own layout" in proc.stdout
    _assert_tf_chain(m)
    # the source SavedModel is the savedmodel artifact, byte for byte
    assert m["artifacts"]["savedmodel"]["exporter"]["name"] == "source SavedModel (copied)"
    assert (bundle / m["artifacts"]["savedmodel"]["path"] / "saved_model.pb").read_bytes() == \
        (src / "saved_model.pb").read_bytes()
    # both dynamic dims are exported dynamic and checked at a second shape
    assert m["golden"]["sets"]["alt"]["dims"] == {"batch": 3, "ids_dim1": 24}
    for fmt in ALL_BUT_TORCHSCRIPT:
        rec = m["artifacts"][fmt]
        assert not rec["check"]["skipped_sets"] and not rec["contract"].get("fixed_dims"), fmt
    ids_golden = np.load(bundle / "golden/inputs.npz")["ids"]
    assert ids_golden.min() >= 0 and ids_golden.max() < 100 and ids_golden.max() > 50


def test_keras_multi_input_dict_output_model_maps_every_tensor_by_name(run_cli, tmp_path):
    src = tf_sources.keras_multi_io(tmp_path / "multi_io_keras.keras")
    # random weights: the output varies too little across samples for the reduced-precision tiers to tell a wrong
    # artifact (issue 22's informativeness rule); accepted explicitly (tflite_dynamic is then CONSTANT_ACCEPTED)
    proc = run_cli("export", "--model", src, "--input-range", "ids:0:50", "--out", tmp_path / "out",
                   "--accept-uninformative", "logits")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(tmp_path / "out/multi_io_keras")
    assert [(s["name"], s["shape"]) for s in m["contract"]["inputs"]] == [("image", ["batch", 16, 16, 3]),
                                                                          ("ids", ["batch", "ids_dim1"])]
    # the dict's own order and shapes (not Keras' sorted flattening); a one-column output is no classifier
    assert [(s["name"], s["shape"], s.get("kind")) for s in m["contract"]["outputs"]] == \
        [("score", ["batch", 1], None), ("logits", ["batch", 5], "classifier")]
    _assert_tf_chain(m)
    for fmt in ALL_BUT_TORCHSCRIPT:
        c = m["artifacts"][fmt]["contract"]
        assert [s["artifact_name"] for s in c["inputs"] + c["outputs"]] == ["image", "ids", "score", "logits"], fmt


def test_tf_converter_failures_name_the_op_and_the_converter(run_cli, tmp_path):
    src = tf_sources.savedmodel_unconvertible(tmp_path / "inverse")
    proc = run_cli("export", "--model", src, "--out", tmp_path / "out", "-f", "onnx,tflite_fp32")
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    art = manifest_of(tmp_path / "out/inverse")["artifacts"]
    assert art["savedmodel"]["status"] == "ok" and art["savedmodel"]["check"]["status"] == "pass"
    assert art["onnx"]["error"] == "tf2onnx has no ONNX mapping for TF op(s) MatrixInverse"
    assert art["tflite_fp32"]["error"] == "TFLiteConverter: ops not supported by TFLite built-ins: tf.MatrixInverse"
    assert sorted(p.name for p in (tmp_path / "out/inverse/artifacts").iterdir()) == ["inverse_saved_model"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, content, message", [
    ("empty", None, "not a TensorFlow SavedModel (no saved_model.pb in it)"),
    ("broken.keras", b"not a zip", "not a loadable Keras model"),
    ("missing.keras", "absent", "no such file"),
])
def test_bad_tf_sources(run_cli, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content != "absent":
        path.write_bytes(content)
    proc = run_cli("export", "--model", path, "--out", tmp_path / "out")
    assert proc.returncode == errors.MODEL, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_savedmodel_without_serving_signature(run_cli, tmp_path):
    src = tf_sources.savedmodel_without_signature(tmp_path / "bare")
    proc = run_cli("export", "--model", src, "--out", tmp_path / "out")
    assert proc.returncode == errors.MODEL, proc.stdout + proc.stderr
    assert "the SavedModel has no 'serving_default' signature (it has none)" in proc.stderr
    assert "Traceback" not in proc.stderr
