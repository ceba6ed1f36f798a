"""deploytool validate: fail closed, pin drift to its hop, refuse bad input with one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import HERE, assert_fits, error_lines, manifest_of, result_of, zoo_formats, zoo_statuses

from deploytool.core import errors, records
from deploytool.formats import FORMATS
from deploytool.report import validation
from deploytool.sources.zoo import zoo_names
from deploytool.store import bundle as B
from deploytool.targets import runtimes_of


def _copy(zoo_bundles, tmp_path, model="digits_cnn") -> Path:
    dest = tmp_path / model
    shutil.copytree(zoo_bundles[model][0], dest)
    return dest


def _rehash(bundle: Path, fmt: str) -> None:
    """Re-record an artifact's hashes: the artifact is what a (bad) converter wrote, not tampering."""
    m = manifest_of(bundle)
    rec = m["artifacts"][fmt]
    rec["files"] = records.dump(B.file_records(bundle, bundle / rec["path"]))
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


@pytest.mark.parametrize("model", zoo_names())
def test_zero_false_failures_on_every_zoo_bundle(zoo_bundles, run_cli, model):
    proc = run_cli("validate", zoo_bundles[model][0])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every target of every artifact (passed, or accepted where the suite accepts an uninformative output)
    rows = [ln.split() for ln in proc.stdout.splitlines() if ln.split() and ln.split()[0] in zoo_formats(model)]
    assert len(rows) == sum(len(runtimes_of(f)) for f in zoo_formats(model))
    assert all(r[2].lower() in zoo_statuses(model, r[0]) for r in rows), proc.stdout
    assert "main,alt" in proc.stdout  # every artifact also checked at the second shape
    assert_fits(proc.stdout)


def test_scaled_onnx_initializer_fails_at_the_onnx_hop(zoo_bundles, run_cli, tmp_path):
    import onnx
    from onnx import numpy_helper

    bundle = _copy(zoo_bundles, tmp_path)
    path = bundle / "artifacts/digits_cnn.onnx"
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.001), init.name))
    onnx.save(model, str(path))
    _rehash(bundle, "onnx")
    proc = run_cli("validate", bundle, "--reports", tmp_path / "reports")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "digits_cnn/onnx: logits:" in proc.stderr and "[error appears at hop source -> onnx]" in proc.stderr
    report = json.loads((tmp_path / "reports/validation.json").read_text())
    assert report["schema_version"] == validation.SCHEMA_VERSION
    onnx_res = result_of(report, "onnx")
    assert onnx_res["status"] == "fail" and onnx_res["hop_blamed"] == "source -> onnx"
    metrics = onnx_res["sets"]["main"]["logits"]["metrics"]
    for key in ("max_abs", "max_rel", "mean_abs", "rmse", "cosine", "sqnr_db", "frac_out_of_tol", "nonfinite_new",
                "min_atol", "min_rtol", "top1_agreement"):
        assert key in metrics
    assert metrics["min_atol"] > 1e-4
    for other in (f for f in FORMATS if f != "onnx"):  # onnx_int8 was made from the original onnx at export
        assert result_of(report, other)["status"] == "pass"
    assert result_of(report, "onnx", "openvino")["hop_blamed"] == "source -> onnx@openvino"
    # JUnit: parses, one test case per artifact x output, one failure per failing output
    suite = ET.parse(tmp_path / "reports/validation.junit.xml").getroot()
    cases = suite.findall("testcase")
    # one case per artifact x output, and one for task accuracy per artifact (digits ships labelled data)
    # (per target: the edited .onnx fails on every runtime that runs it alike)
    assert len(cases) == 2 * sum(len(runtimes_of(f)) for f in FORMATS)
    assert suite.get("failures") == str(len(runtimes_of("onnx")))
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [(f"digits_cnn.onnx@{r}", "logits")
                                                                     for r in runtimes_of("onnx")]
    # repro folder: enough for a converter bug report
    repro = tmp_path / "reports/repro/onnx@onnxruntime"
    for f in ("inputs.main.npz", "expected.main.npz", "actual.main.npz", "worst_sample.npz", "repro.json",
              "README.txt"):
        assert (repro / f).is_file(), f
    info = json.loads((repro / "repro.json").read_text())
    assert info["files"][0]["sha256"] == B.sha256_file(path) and info["versions"]["onnxruntime"]
    worst = np.load(repro / "worst_sample.npz")
    assert worst["input.image"].shape == (1, 1, 8, 8)


def test_scaled_savedmodel_weight_fails_at_the_savedmodel_hop(zoo_bundles, run_cli, tmp_path):
    import onnx
    from onnx import numpy_helper

    bundle = _copy(zoo_bundles, tmp_path)
    # onnx2tf stores weights as graph constants in saved_model.pb: find one by its bytes (taken
    # from the ONNX initializers) and scale it by 1.001 in place.
    pb = bundle / "artifacts/digits_cnn_saved_model/saved_model.pb"
    raw = pb.read_bytes()
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(bundle / "artifacts/digits_cnn.onnx")).graph.initializer]
    layouts = [np.ascontiguousarray(v) for w in weights if w.dtype == np.float32 and w.size >= 100
               for v in (w, w.T, w.transpose(2, 3, 1, 0) if w.ndim == 4 else w)]  # TF keeps kernels HWIO
    value = max((v for v in layouts if raw.count(v.tobytes()) == 1), key=lambda v: v.size)
    pb.write_bytes(raw.replace(value.tobytes(), (value * np.float32(1.001)).tobytes()))
    _rehash(bundle, "savedmodel")
    proc = run_cli("validate", bundle, "-f", "savedmodel", "-f", "onnx")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert "digits_cnn/savedmodel: logits:" in proc.stderr
    assert "[error appears at hop onnx -> savedmodel]" in proc.stderr
    assert "digits_cnn/onnx" not in proc.stderr


def test_tflite_validates_without_torch_or_tensorflow(zoo_bundles, tmp_path):
    bundle = _copy(zoo_bundles, tmp_path, "mobilenet_v2")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "torch,tensorflow,tf_keras,onnx2tf"
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "blocked for this test" in check.stderr
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "--format", "tflite",
                           "--json", str(tmp_path / "also.json")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("tflite_")]
    assert len(rows) == len([f for f in FORMATS if f.startswith("tflite")])
    assert all(r.split()[2].lower() in zoo_statuses("mobilenet_v2", r.split()[0]) for r in rows), proc.stdout
    # the per-hop comparison still works, against the SavedModel outputs stored at export time
    report = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(report, "tflite_fp32")["hop"]["main"]["logits"]["passed"]
    assert json.loads((tmp_path / "also.json").read_text()) == report  # --json: also there, not instead


def test_missing_runtime_is_a_skip_and_strict_makes_it_fail(zoo_bundles, tmp_path):
    bundle = _copy(zoo_bundles, tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "onnxruntime"
    cmd = [sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", "onnx"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "skipped: runtime onnxruntime not installed" in proc.stderr and "pip install" in proc.stderr
    proc = subprocess.run(cmd + ["--strict"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == errors.SKIPPED


def test_artifact_that_fails_to_load(zoo_bundles, run_cli, tmp_path):
    bundle = _copy(zoo_bundles, tmp_path)
    (bundle / "artifacts/digits_cnn_float32.tflite").write_bytes(b"TFL3 not really a model" * 10)
    _rehash(bundle, "tflite_fp32")
    proc = run_cli("validate", bundle, "-f", "tflite_fp32")
    assert proc.returncode == errors.RUNTIME
    assert "digits_cnn/tflite_fp32: failed to load in litert" in proc.stderr and "Traceback" not in proc.stderr


def test_tampered_artifact_is_refused_before_loading(zoo_bundles, run_cli, tmp_path):
    bundle = _copy(zoo_bundles, tmp_path)
    path = bundle / "artifacts/digits_cnn.onnx"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    run_logs = [bundle / f"logs/run-onnx@{r}.log" for r in runtimes_of("onnx")]  # a worker per target runs it
    other_log = bundle / "logs/run-tflite_fp32@litert.log"
    for log in run_logs:
        log.unlink()
    other_log.unlink()
    proc = run_cli("validate", bundle)
    assert proc.returncode == errors.BUNDLE
    assert "digits_cnn/onnx: refused before loading: onnx: artifacts/digits_cnn.onnx does not match its sha256" \
        in proc.stderr
    assert not any(log.exists() for log in run_logs), "a worker ran the refused artifact"
    assert other_log.exists()  # the other artifacts still ran
    path.unlink()
    proc = run_cli("validate", bundle, "-f", "onnx")
    assert proc.returncode == errors.BUNDLE and "missing from the bundle" in proc.stderr


@pytest.mark.parametrize("setup, message", [
    (lambda b: shutil.rmtree(b), "no such directory"),
    (lambda b: (b / "manifest.json").write_text("{"), "manifest.json is unreadable"),
    (lambda b: (b / "manifest.json").write_text(json.dumps({**manifest_of(b), "schema_version": 7})),
     "schema_version 7 is not supported"),
    (lambda b: (b / "golden/reference.npz").write_bytes(b"x"), "golden data: golden/reference.npz does not match"),
])
def test_bad_bundles(zoo_bundles, run_cli, tmp_path, setup, message):
    bundle = _copy(zoo_bundles, tmp_path)
    setup(bundle)
    proc = run_cli("validate", bundle)
    assert proc.returncode == errors.BUNDLE
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_user_data_runs_the_source_model_for_references(zoo_bundles, run_cli, tmp_path):
    from deploytool.models import digits_cnn

    bundle = _copy(zoo_bundles, tmp_path)
    _, _, x_test, _ = digits_cnn.load_split()
    np.savez(tmp_path / "mine.npz", image=x_test[:5])
    proc = run_cli("validate", bundle, "--data", tmp_path / "mine.npz", "-f", "onnx", "-f", "tflite_fp32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data (5 x batch=1)" in proc.stdout
    report = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(report, "onnx")["sets"]["data"]["logits"]["passed"]


@pytest.mark.parametrize("arrays, message", [
    ({"img": np.zeros((2, 1, 8, 8), np.float32)}, "missing ['image'], unexpected ['img']"),
    ({"image": np.zeros((2, 1, 8, 8), np.float64)}, "has dtype float64, the contract says float32"),
    ({"image": np.zeros((2, 1, 9, 8), np.float32)}, "has size 9 at axis 2, the contract fixes it to 8"),
    ({"image": np.array([{"x": 1}], dtype=object)}, "holds pickled Python objects; refused"),
])
def test_bad_user_data(zoo_bundles, run_cli, tmp_path, arrays, message):
    bundle = _copy(zoo_bundles, tmp_path)
    np.savez(tmp_path / "bad.npz", **arrays)
    proc = run_cli("validate", bundle, "--data", tmp_path / "bad.npz")
    assert proc.returncode == errors.USAGE, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_tolerance_overrides_per_format(zoo_bundles, run_cli, tmp_path):
    bundle = _copy(zoo_bundles, tmp_path)
    proc = run_cli("validate", bundle, "--atol", "onnx:logits=0", "--rtol", "onnx=0", "-f", "onnx", "-f", "torchscript")
    assert proc.returncode == errors.PARITY
    assert "digits_cnn/onnx" in proc.stderr and "digits_cnn/torchscript" not in proc.stderr
    assert "would pass at atol=" in proc.stderr
    proc = run_cli("validate", bundle, "--atol", "onnx=abc")
    assert proc.returncode == errors.USAGE and "is not a number" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line


def test_unknown_format_selection(zoo_bundles, run_cli):
    proc = run_cli("validate", zoo_bundles["digits_cnn"][0], "-f", "coreml")
    assert proc.returncode == errors.USAGE and "--format coreml: no such format" in proc.stderr
