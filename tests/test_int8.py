"""Int8 artifacts proven on task accuracy: tflite_int8, tflite_dynamic, onnx_int8, calibration data
kept apart from validation data, accuracy per artifact and its gate, needs_data without calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import error_lines, manifest_of, note_of, result_of, zoo_formats

from deploytool.checking.parity import TIERS
from deploytool.core import errors, npz
from deploytool.formats import FORMATS

INT8 = [n for n, f in FORMATS.items() if f.tier == "int8"]
CALIBRATED = [n for n, f in FORMATS.items() if f.needs_calibration]


def _report(bundle) -> dict:
    return json.loads((bundle / "reports/validation.json").read_text())


def test_the_registry_has_the_int8_formats():
    assert set(INT8) >= {"tflite_int8", "tflite_dynamic", "onnx_int8", "executorch_int8"}
    assert set(CALIBRATED) == {"tflite_int8", "onnx_int8", "executorch_int8"}


@pytest.mark.parametrize("fmt", INT8)
def test_int8_formats_pass_on_digits_within_one_point_of_fp32(zoo_bundles, fmt):
    bundle, proc = zoo_bundles["digits_cnn"]
    rec = manifest_of(bundle)["artifacts"][fmt]
    assert rec["status"] == "ok" and rec["check"]["status"] == "pass", rec["check"]
    acc = result_of(_report(bundle), fmt)["accuracy"]
    assert acc["set"] == "labelled" and acc["samples"] == 449  # every held-out digit, not the 16 golden ones
    assert acc["drop_points"] <= 1.0 and acc["max_drop_points"] == TIERS["int8"].max_accuracy_drop
    fp32 = result_of(_report(bundle), "tflite_fp32")["accuracy"]
    assert fp32["accuracy"] - acc["accuracy"] <= 0.01
    assert f"{acc['accuracy']:.2%}" in proc.stdout  # the export table shows accuracy per artifact


def test_calibration_data_is_recorded_and_disjoint_from_validation_data(zoo_bundles):
    bundle, _ = zoo_bundles["digits_cnn"]
    m = manifest_of(bundle)
    calib = m["golden"]["calibration"]
    assert calib["samples"] == 128 and calib["origin"] == "the source's own calibration data" and calib["sha256"]
    assert m["artifacts"]["tflite_int8"]["exporter"]["options"]["calibration"]["samples"] == 128
    assert m["artifacts"]["onnx_int8"]["exporter"]["options"]["op_types_quantized"]
    c = npz.load(bundle / calib["path"])["image"].reshape(128, -1)
    held_out = np.concatenate([npz.load(bundle / m["golden"]["sets"][s]["inputs"])["image"].reshape(-1, 64)
                               for s in ("main", "labelled")])
    assert not (c[:, None, :] == held_out[None, :, :]).all(-1).any(), "a calibration sample is a held-out digit"


@pytest.mark.parametrize("fmt", INT8)
def test_int8_on_random_weights_is_judged_on_the_int8_tier(zoo_bundles, fmt):
    # multi_io has no labels: the int8 tier's tensor gates decide; the verdict must agree with them
    if fmt not in zoo_formats("multi_io"):
        pytest.skip(f"{fmt} is not exported for multi_io in the suite (conftest.zoo_formats)")
    bundle, _ = zoo_bundles["multi_io"]
    art = result_of(_report(bundle), fmt)
    assert art["accuracy"] is None
    tier = TIERS["int8"]
    meets = all(v["metrics"]["cosine"] >= tier.min_cosine and v["metrics"]["sqnr_db"] >= tier.min_sqnr_db
                and (v["metrics"]["top1_agreement"] is None or v["metrics"]["top1_agreement"] >= tier.min_top1)
                for per_set in art["sets"].values() for v in per_set.values())
    assert art["status"] == ("pass" if meets else "fail"), art["status"]


def test_degenerate_calibration_fails_on_the_accuracy_drop(run_cli, tmp_path):
    zeros = tmp_path / "zeros.npz"
    np.savez(zeros, image=np.zeros((128, 1, 8, 8), np.float32))
    proc = run_cli("export", "-f", "tflite_int8", "--calib-data", zeros, "--out", tmp_path)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "digits_cnn/tflite_int8" in ln)
    assert "points below the source's" in line and "on the labelled set" in line
    assert manifest_of(tmp_path / "digits_cnn")["golden"]["calibration"]["origin"] == "--calib-data zeros.npz"


@pytest.fixture
def linear_factory(tmp_path):
    (tmp_path / "lin.py").write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), "
                                     "torch.nn.Linear(16, 3))\n")
    return f"{tmp_path / 'lin.py'}:build"


def test_without_calibration_data_int8_needs_data_and_is_not_a_failure(run_cli, tmp_path, linear_factory):
    args = ["export", "--model", linear_factory, "--input", "x:batch x 4:float32", "-f", "onnx_int8,tflite_dynamic"]
    proc = run_cli(*args, "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    art = manifest_of(tmp_path / "a/lin")["artifacts"]
    assert art["onnx_int8"]["status"] == "needs_data" and "--calib-data" in art["onnx_int8"]["error"]
    assert art["tflite_dynamic"]["status"] == "ok"  # needs no calibration data
    assert "NEEDS_DATA" in proc.stdout
    rows = np.random.default_rng(7).uniform(-1, 1, (64, 4)).astype(np.float32)  # rows are samples
    np.savez(tmp_path / "calib.npz", x=rows)
    proc = run_cli(*args, "--calib-data", tmp_path / "calib.npz", "--out", tmp_path / "b")
    m = manifest_of(tmp_path / "b/lin")
    assert m["artifacts"]["onnx_int8"]["status"] == "ok", proc.stderr
    assert any("calibrated on only 64 samples" in n for n in m["artifacts"]["onnx_int8"]["notes"])
    assert run_cli("validate", tmp_path / "a/lin").returncode == 0  # needs_data is not a failure there either


@pytest.mark.parametrize("arrays, option, message", [
    ({"img": np.zeros((4, 1, 8, 8), np.float32)}, "--calib-data", "expected inputs ['image'], missing ['image']"),
    ({"image": np.zeros((4, 1, 8, 9), np.float32)}, "--calib-data", "has size 9 at axis 3"),
    ({"image": np.zeros((4, 1, 8, 8), np.float64)}, "--calib-data", "has dtype float64"),
    ({"image": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(3, np.int64)}, "--data", "3 labels for 4"),
    ({"image": np.zeros((4, 1, 8, 8), np.float32), "labels": np.full(4, 10)}, "--data", "output 'logits' has 10"),
    ({"image": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(4, np.float32)}, "--data",
     "labels must be a 1-D integer array"),
    ({"image": np.zeros((4, 1, 8, 8), np.float32)}, "--data", "add a 'labels' array"),
])
def test_bad_calibration_and_labelled_data_are_usage_errors(run_cli, tmp_path, arrays, option, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    proc = run_cli("export", "-f", "onnx_int8", option, path, "--out", tmp_path / "out")
    assert proc.returncode == errors.USAGE, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "out/digits_cnn").exists()


def test_integer_io_records_scale_and_zero_point(run_cli, tmp_path):
    proc = run_cli("export", "-f", "tflite_int8", "--int8-io", "int8", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = manifest_of(tmp_path / "digits_cnn")["artifacts"]["tflite_int8"]["contract"]["inputs"][0]
    assert spec["artifact_dtype"] == "int8" and spec["quant"][0] > 0
    assert run_cli("validate", tmp_path / "digits_cnn", "-f", "tflite_int8").returncode == 0


def test_bench_measures_int8_rows_against_their_full_precision_sibling(zoo_bundles, run_cli, tmp_path):
    bundle = zoo_bundles["digits_cnn"][0]
    proc = run_cli("bench", bundle, "-f", "tflite_int8", "-f", "tflite_fp32", "-f", "onnx_int8", "-f", "onnx",
                   "--no-source", "--min-time", "0", "--min-runs", "20", "--reports", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["format"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows["tflite_int8"]["relative"]["to"] == "tflite_fp32" and rows["onnx_int8"]["relative"]["to"] == "onnx"
    assert rows["tflite_int8"]["relative"]["size_ratio"] < 0.5
    assert "x size of tflite_fp32" in note_of(proc.stdout, "tflite_int8 (threads=1, batch=1)")


def test_accuracy_gate_is_configurable_per_format(zoo_bundles, run_cli):
    bundle = zoo_bundles["digits_cnn"][0]
    report = result_of(_report(bundle), "tflite_int8")["accuracy"]
    strict = run_cli("validate", bundle, "-f", "tflite_int8", "-f", "tflite_fp32", "--max-accuracy-drop",
                     f"tflite_int8={max(report['drop_points'] - 0.01, 0) if report['drop_points'] > 0 else 0}",
                     "--max-accuracy-drop", "tflite_fp32=0", "--reports", bundle.parent / "gate-reports")
    # fp32 loses nothing (0 <= 0 passes); int8 fails exactly when its drop exceeds the gate
    assert strict.returncode == (errors.PARITY if report["drop_points"] > 0 else 0), strict.stderr
    junit = (bundle.parent / "gate-reports/validation.junit.xml").read_text()
    assert 'name="accuracy (labelled set)"' in junit
    proc = run_cli("validate", bundle, "-f", "tflite_fp32", "--max-accuracy-drop", "nan")
    assert proc.returncode == errors.USAGE and "finite number of points" in proc.stderr
