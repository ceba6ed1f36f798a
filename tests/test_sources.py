"""Sources other than the reference zoo: an .onnx file (ONNX becomes the source)."""
from __future__ import annotations

import json

import pytest

from conftest import manifest_of
from deploytool import errors


@pytest.fixture(scope="module")
def onnx_source(tmp_path_factory):
    """An ONNX file exported here from a model outside the zoo (conv + BatchNorm + pooling, dynamic batch)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5)).eval()
    path = tmp_path_factory.mktemp("onnx_src") / "small_cnn.onnx"
    torch.onnx.export(model, (torch.rand(2, 3, 32, 32),), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},), external_data=False,
                      dynamo=True)
    return path


@pytest.fixture(scope="module")
def onnx_bundle(onnx_source, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_bundle")
    proc = run_cli("export", "--model", onnx_source, "--out", out)
    return out / "small_cnn", proc


def test_onnx_file_exports_every_applicable_format_with_parity(onnx_bundle, onnx_source):
    bundle, proc = onnx_bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(bundle)
    assert m["model"]["source"]["kind"] == "onnx" and m["golden"]["reference_runtime"] == "onnxruntime"
    assert [s["name"] for s in m["contract"]["inputs"]] == ["pixels"]
    assert m["contract"]["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    art = m["artifacts"]
    assert art["torchscript"]["status"] == "not_applicable" and "source is onnx" in art["torchscript"]["error"]
    assert art["onnx"]["exporter"]["name"] == "source file (onnx.checker)"
    assert (bundle / "artifacts/small_cnn.onnx").read_bytes() == onnx_source.read_bytes()
    for fmt in ("onnx", "savedmodel", "tflite_fp32", "tflite_fp16"):
        assert art[fmt]["status"] == "ok" and art[fmt]["check"]["status"] == "pass", (fmt, art[fmt]["check"])
    assert "NOT_APPLICABLE" in proc.stdout


def test_onnx_source_bundle_validates_and_benches(onnx_bundle, run_cli, tmp_path):
    bundle, _ = onnx_bundle
    proc = run_cli("validate", bundle, "--reports", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("bench", bundle, "--min-time", "0.1", "--min-runs", "20", "--warmup-runs", "1", "--warmup-time",
                   "0", "--reports", tmp_path, "-f", "onnx", "-f", "torchscript")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["format"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows["onnx"]["status"] == "ok" and rows["torchscript"]["status"] == "not_applicable"
    assert "source" not in rows  # the ONNX source is the onnx row itself


def test_broken_onnx_file(run_cli, tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"definitely not protobuf")
    proc = run_cli("export", "--model", tmp_path / "broken.onnx", "--out", tmp_path)
    assert proc.returncode == errors.MODEL
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.onnx: not a readable ONNX model" in lines[0]
    proc = run_cli("export", "--model", tmp_path / "missing.onnx", "--out", tmp_path)
    assert proc.returncode == errors.MODEL and "no such file" in proc.stderr
