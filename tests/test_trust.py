"""The bundle as a trust boundary, end to end: signed bundles, time limits on every worker, and no
vacuous reference (a source that produces NaN/Inf is refused at export)."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import TEST_MODELS, manifest_of

from deploytool.core import errors


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
