"""``deploytool device-copy``: a bundle without its export-only files (calibration data), logs/ and reports/,
whose manifest, hashes and signature still verify, and which validate reads on a device install."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import HERE

from deploytool import api
from deploytool.cli import main
from deploytool.core import errors
from deploytool.core.errors import BundleError
from deploytool.store import manifest as M
from deploytool.store.reader import open_bundle

CALIBRATION = "golden/calibration.npz"


@pytest.fixture
def full(zoo_bundles, tmp_path):
    """A private copy of the digits_cnn bundle (int8 formats: it holds calibration data, logs/ and reports/)."""
    bundle = tmp_path / "full" / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    assert (bundle / CALIBRATION).is_file() and (bundle / "logs").is_dir() and (bundle / "reports").is_dir()
    return bundle


def _files(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _one_error(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("deploytool: error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_device_copy_leaves_out_export_only_files_and_keeps_the_manifest(full, tmp_path):
    dest = tmp_path / "device" / "digits_cnn"
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest)])
    assert result.exit_code == 0, result.output
    copied = _files(dest)
    assert CALIBRATION not in copied and not (dest / "logs").exists() and not (dest / "reports").exists()
    assert copied == {f for f in _files(full) if f != CALIBRATION and not f.startswith(("logs/", "reports/"))}
    assert (dest / "manifest.json").read_bytes() == (full / "manifest.json").read_bytes()
    for line in (f"left out {CALIBRATION}", "left out logs/", "left out reports/"):
        assert line in result.output, result.output
    size = sum(os.path.getsize(dest / f) for f in copied)
    assert f"device copy: {dest}" in result.output and size < sum(os.path.getsize(full / f) for f in _files(full))
    opened = open_bundle(dest)  # the reader accepts the calibration data's absence, and only that
    assert opened.absent == [CALIBRATION]
    assert [p.name for p in dest.parent.iterdir()] == ["digits_cnn"]  # no staging directory left beside it


@pytest.mark.parametrize("gone", ["golden/inputs.npz", "golden/outputs/onnx.main.npz", "golden/labels.npz"])
def test_any_other_missing_golden_file_is_still_a_corrupt_bundle(full, gone):
    (full / CALIBRATION).unlink()
    (full / gone).unlink()
    with pytest.raises(BundleError, match=f"file {gone} is missing from the bundle"):
        open_bundle(full)


def test_calibration_data_is_still_checked_when_present(full):
    data = bytearray((full / CALIBRATION).read_bytes())
    data[-1] ^= 0xFF
    (full / CALIBRATION).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{CALIBRATION} does not match its sha256"):
        open_bundle(full)
    (full / CALIBRATION).unlink()
    (full / CALIBRATION).mkdir()  # a directory in its place is not an absent file
    with pytest.raises(BundleError, match=f"file {CALIBRATION} is missing"):
        open_bundle(full)


def test_validate_on_a_device_copy_with_the_device_install(full, tmp_path, cli_env):
    dest = tmp_path / "device" / "digits_cnn"
    api.device_copy(full, dest)
    blocked = "torch,tensorflow,tf_keras,onnx,onnxruntime,onnx2tf,openvino"  # a device: LiteRT alone
    env = {**cli_env, "DEPLOYTOOL_BLOCK_IMPORTS": blocked,
           "PYTHONPATH": os.pathsep.join([str(HERE / "blockimports"), cli_env.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(dest), "-f", "tflite_fp32,tflite_int8"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tflite_int8" in proc.stdout and (dest / "reports/validation.json").is_file()


def test_an_existing_dest_needs_force_and_force_replaces_only_a_bundle(full, tmp_path):
    dest = tmp_path / "device" / "digits_cnn"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("not a bundle")
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest)])
    assert result.exit_code == errors.USAGE and "already exists (--force replaces it)" in _one_error(result)
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest), "--force"])
    assert result.exit_code == errors.USAGE and "not a bundle or an empty directory" in _one_error(result)
    assert (dest / "mine.txt").read_text() == "not a bundle"
    (dest / "mine.txt").unlink()
    assert CliRunner().invoke(main, ["device-copy", str(full), str(dest), "--force"]).exit_code == 0
    (dest / "golden/inputs.npz").write_bytes(b"stale")  # an older copy: --force replaces it whole
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest), "--force"])
    assert result.exit_code == 0, result.output
    assert (dest / "golden/inputs.npz").read_bytes() == (full / "golden/inputs.npz").read_bytes()


@pytest.mark.parametrize("where", ["itself", "inside"])
def test_dest_cannot_be_the_bundle_or_inside_it(full, where):
    dest = full if where == "itself" else full / "artifacts" / "copy"
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest), "--force"])
    assert result.exit_code == errors.USAGE and "cannot be the bundle" in _one_error(result)
    assert (full / CALIBRATION).is_file() and not (full / "artifacts/copy").exists()


def test_a_corrupt_or_linked_bundle_is_refused_and_nothing_is_published(full, tmp_path):
    dest = tmp_path / "device" / "digits_cnn"
    with open(full / "artifacts/digits_cnn_float32.tflite", "ab") as f:
        f.write(b"x")
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest)])
    assert result.exit_code == errors.BUNDLE and "does not match its sha256" in _one_error(result)
    assert not dest.exists()
    (full / "artifacts/digits_cnn_float32.tflite").unlink()
    (full / "artifacts/digits_cnn_float32.tflite").symlink_to(tmp_path / "elsewhere.tflite")
    result = CliRunner().invoke(main, ["device-copy", str(full), str(dest)])
    assert result.exit_code == errors.BUNDLE and "symbolic link" in _one_error(result)
    assert not dest.exists() and not list(dest.parent.glob(".digits_cnn.*"))  # no staging directory left


def test_help_says_what_is_left_out_and_why():
    result = CliRunner().invoke(main, ["device-copy", "--help"])
    assert result.exit_code == 0
    for words in (CALIBRATION, "logs/", "reports/", "--force", "--verify", "Exit codes"):
        assert words in result.output, words
    assert M.Manifest.export_only.__doc__ and "device copy" in M.Manifest.export_only.__doc__
