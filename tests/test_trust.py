"""The bundle as a trust boundary, end to end: signed bundles, time limits on every worker, and no
vacuous reference (a source that produces NaN/Inf is refused at export)."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner
from conftest import TEST_MODELS, manifest_of

from deploytool import api
from deploytool.cli import main
from deploytool.core import errors
from deploytool.core.errors import BundleError
from deploytool.store import signing
from deploytool.store.reader import open_bundle

CALIBRATION = "golden/calibration.npz"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("keys")
    for name in ("ours", "theirs"):
        k = ec.generate_private_key(ec.SECP256R1())
        (d / f"{name}.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        (d / f"{name}.pub").write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return d


@pytest.fixture(scope="module")
def signed(run_cli, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed")
    proc = run_cli("export", "-f", "onnx,tflite_fp32", "--out", out, "--sign", keys / "ours.pem")
    assert proc.returncode == 0, proc.stderr
    return out / "digits_cnn"


def test_signed_bundle_verifies_before_and_after_reports(signed, keys, run_cli):
    assert (signed / "signature.sig").is_file()
    assert run_cli("validate", signed, "--verify", keys / "ours.pub").returncode == 0
    assert run_cli("bench", signed, "-f", "tflite_fp32", "--no-source", "--min-time", "0", "--min-runs", "5",
                   "--verify", keys / "ours.pub").returncode == 0
    # validate and bench wrote reports/ and logs/: the signature still verifies
    proc = run_cli("validate", signed, "--verify", keys / "ours.pub", "-f", "onnx")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("tamper, message", [
    ("manifest", "changed since signing: manifest.json"),
    ("artifact", "changed since signing: artifacts/digits_cnn.onnx"),
    ("key", "signature does not verify with"),
])
def test_tampered_or_foreign_signed_bundle_is_refused_before_loading(signed, keys, run_cli, tmp_path, tamper,
                                                                     message):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(signed, bundle)
    key = keys / "ours.pub"
    if tamper == "manifest":  # a consistent edit: hashes cannot catch it, the signature must
        m = manifest_of(bundle)
        m["model"]["description"] = "something else"
        (bundle / "manifest.json").write_text(json.dumps(m))
    elif tamper == "artifact":
        (bundle / "artifacts/digits_cnn.onnx").write_bytes((bundle / "artifacts/digits_cnn.onnx").read_bytes() + b"x")
    else:
        key = keys / "theirs.pub"
    (bundle / "logs").rename(tmp_path / "old_logs")  # nothing may be run: no new log may appear
    proc = run_cli("validate", bundle, "--verify", key)
    assert proc.returncode == errors.BUNDLE, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (bundle / "logs").exists()


@pytest.fixture
def calibrated(zoo_bundles, tmp_path):
    """A private copy of the digits_cnn bundle, which holds calibration data (export-only)."""
    bundle = tmp_path / "full" / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    assert (bundle / CALIBRATION).is_file()
    return bundle


def _sign_as_before(bundle, key) -> None:
    """Sign as deploytool did before export-only files were left out of signatures: all but reports/ and logs/."""
    import model_signing as ms

    hashing = ms.hashing.Config().set_ignored_paths(paths=["reports", "logs", "signature.sig"], ignore_git_paths=False)
    ms.signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(hashing).sign(
        bundle, bundle / "signature.sig")


def test_a_signed_bundles_device_copy_verifies_and_its_calibration_data_stays_covered(calibrated, keys, tmp_path):
    signing.sign(calibrated, keys / "ours.pem")  # what export --sign does to its staging directory
    signing.verify(calibrated, keys / "ours.pub")
    copy = api.device_copy(calibrated, tmp_path / "device" / "digits_cnn", verify_key=keys / "ours.pub")
    assert copy.verified and not (copy.dest / CALIBRATION).exists() and not copy.messages
    result = CliRunner().invoke(main, ["validate", str(copy.dest), "--verify", str(keys / "ours.pub"), "-f",
                                       "tflite_fp32"])
    assert result.exit_code == 0, result.output
    # left out of the signature, the calibration data is still covered by the signed manifest's sha256
    (calibrated / CALIBRATION).write_bytes((calibrated / CALIBRATION).read_bytes() + b"x")
    signing.verify(calibrated, keys / "ours.pub")
    with pytest.raises(BundleError, match=f"{CALIBRATION} does not match its sha256"):
        open_bundle(calibrated, keys / "ours.pub")


def test_a_bundle_signed_before_still_verifies_and_its_device_copy_keeps_what_was_signed(calibrated, keys,
                                                                                         tmp_path):
    _sign_as_before(calibrated, keys / "ours.pem")
    signing.verify(calibrated, keys / "ours.pub")
    copy = api.device_copy(calibrated, tmp_path / "device" / "digits_cnn", verify_key=keys / "ours.pub")
    assert (copy.dest / CALIBRATION).is_file() and CALIBRATION not in copy.left_out
    assert copy.messages and f"kept {CALIBRATION}: the bundle's signature covers it" in copy.messages[0]
    assert not (copy.dest / "logs").exists()
    (copy.dest / CALIBRATION).unlink()  # what a copy leaving it out would be
    with pytest.raises(BundleError, match=f"missing since signing: {CALIBRATION}$"):
        signing.verify(copy.dest, keys / "ours.pub")


def test_unsigned_bundle_with_verify_is_refused(zoo_bundles, keys, run_cli):
    proc = run_cli("validate", zoo_bundles["digits_cnn"][0], "--verify", keys / "ours.pub")
    assert proc.returncode == errors.BUNDLE and "not signed (no signature.sig)" in proc.stderr


def test_a_hung_converter_is_killed_and_the_other_formats_complete(run_cli, tmp_path):
    t0 = time.monotonic()
    proc = run_cli("export", "--model", TEST_MODELS / "hangs_in_export.py", "-f", "onnx,torchscript", "--timeout", "20",
                   "--out", tmp_path)
    assert time.monotonic() - t0 < 240
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    art = manifest_of(tmp_path / "hangs_in_export")["artifacts"]
    assert art["onnx"]["status"] == "failed" and "timed out after 20 s and was killed" in art["onnx"]["error"]
    assert art["torchscript"]["status"] == "ok" and art["torchscript"]["check"]["status"] == "pass"
    assert "Traceback" not in proc.stderr


def test_a_slow_runtime_is_killed_at_the_validate_limit(zoo_bundles, run_cli):
    # importing TensorFlow alone takes seconds: a 1 s limit must cut the run, not wait for it
    proc = run_cli("validate", zoo_bundles["digits_cnn"][0], "-f", "savedmodel", "--timeout", "1", "--reports",
                   zoo_bundles["digits_cnn"][0].parent / "slow-reports")
    assert proc.returncode == errors.RUNTIME, proc.stdout + proc.stderr
    assert "timed out after 1 s and was killed" in proc.stderr


def test_a_source_that_outputs_nan_is_refused_at_export(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "nan_output.py", "-f", "onnx", "--out", tmp_path)
    assert proc.returncode == errors.MODEL, proc.stderr
    assert "the source model's output 'y' is NaN/Inf on main golden sample 0" in proc.stderr
    assert not (tmp_path / "nan_output").exists()


@pytest.mark.parametrize("args, message", [
    (["--atol", "nan"], "must be a finite number >= 0"),
    (["--rtol", "onnx:logits=-1"], "must be a finite number >= 0"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--sign", "no-such-key.pem"], "--sign no-such-key.pem: no such key file"),
])
def test_bad_trust_options_are_usage_errors(run_cli, tmp_path, args, message):
    proc = run_cli("export", "-f", "onnx", "--out", tmp_path, *args)
    assert proc.returncode == errors.USAGE and message in proc.stderr, proc.stderr
