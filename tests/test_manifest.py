"""Manifest schema, bundle reading and its refusals."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import manifest_of

from deploytool import runtimes
from deploytool.core.errors import BundleError
from deploytool.store import bundle as B
from deploytool.store import manifest as M


def test_manifest_schema(zoo_bundles):
    bundle, _ = zoo_bundles["digits_cnn"]
    m = manifest_of(bundle)
    assert m["schema_version"] == M.SCHEMA_VERSION
    for key in ("created", "tool", "model", "seed", "platform", "versions", "contract", "golden", "artifacts"):
        assert key in m, key
    for pkg in ("python", "deploytool", "onnx", "onnx2tf", *runtimes.distributions()):  # every runtime's, recorded
        assert m["versions"][pkg], pkg
    assert m["model"]["source"]["kind"] == "zoo"
    assert m["golden"]["seed"] == 0
    assert m["golden"]["sets"]["main"]["samples"] == 16 and m["golden"]["sets"]["main"]["dims"] == {"batch": 1}
    assert m["golden"]["sets"]["alt"]["dims"] == {"batch": 3}
    assert m["artifacts"]["onnx"]["golden_outputs"] == {s: f"golden/outputs/onnx.{s}.npz"
                                                        for s in ("main", "alt", "labelled")}
    B.verify_files(bundle, M.read(bundle).golden.files, "golden")
    inputs = m["contract"]["inputs"]
    assert inputs[0]["shape"] == ["batch", 1, 8, 8] and inputs[0]["dtype"] == "float32"
    assert m["contract"]["dims"]["batch"]["example"] == 2
    assert m["artifacts"]["onnx"]["exporter"]["options"]["opset_version"] >= 17
    assert m["artifacts"]["torchscript"]["exporter"]["options"]["checked_at_shapes"] == [[3, 1, 8, 8]]
    assert (bundle / "reports/validation.json").is_file()
    assert not (bundle / ".work").exists()


def test_read_manifest_accepts_a_real_bundle(zoo_bundles):
    assert M.read(zoo_bundles["multi_io"][0]).model.name == "multi_io"


def test_read_manifest_refusals(tmp_path, zoo_bundles):
    with pytest.raises(BundleError, match="no such directory"):
        M.read(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        M.read(tmp_path / "empty")
    copy = tmp_path / "copy"
    shutil.copytree(zoo_bundles["digits_cnn"][0], copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        M.read(copy)
    m = manifest_of(zoo_bundles["digits_cnn"][0])
    (copy / "manifest.json").write_text(json.dumps({**m, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema_version 99 is not supported"):
        M.read(copy)


def test_verify_files_detects_tampering(tmp_path, zoo_bundles):
    copy = tmp_path / "copy"
    shutil.copytree(zoo_bundles["digits_cnn"][0], copy)
    rec = M.read(copy).artifacts["onnx"]
    path = copy / rec.files[0].path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        B.verify_files(copy, rec.files, "onnx")
    path.unlink()
    with pytest.raises(BundleError, match="missing"):
        B.verify_files(copy, rec.files, "onnx")
