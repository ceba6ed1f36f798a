"""ExecuTorch: the ``executorch`` and ``executorch_int8`` formats on the ``executorch`` runtime, for real.

One bundle of digits_cnn with both ``.pte`` artifacts is exported once; a weight planted into each
artifact must fail its target (exit 5), bench must time it, and a machine without executorch must
skip its targets naming the extra (validate and doctor alike)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HERE, flat, manifest_of, result_of

from deploytool import install
from deploytool.core import errors, records
from deploytool.store import bundle as B

pytestmark = pytest.mark.slow
FORMATS = ("executorch", "executorch_int8")
HINT = install.hint("executorch")


@pytest.fixture(scope="module")
def et_bundle(run_cli, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("executorch")
    proc = run_cli("export", "-f", ",".join(FORMATS), "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "digits_cnn"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / bundle.name
    shutil.copytree(bundle, dest)
    return dest


def test_both_formats_pass_on_executorch(et_bundle, run_cli, tmp_path):
    proc = run_cli("validate", et_bundle, "--reports", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "validation.json").read_text())
    fp32, int8 = (result_of(report, f, "executorch") for f in FORMATS)
    assert fp32["status"] == "pass" and int8["status"] == "pass"
    assert fp32["sets"]["main"]["logits"]["metrics"]["max_abs"] < 1e-4
    m = manifest_of(et_bundle)
    assert m["artifacts"]["executorch_int8"]["precision"] == "int8"
    assert m["artifacts"]["executorch"]["path"].endswith(".pte")


def _negate_last_linear(bundle: Path, fmt: str) -> None:
    """Negate digits_cnn's last Linear weights where they lie in the .pte (fp32 as is; int8 as the XNNPACK
    quantizer stores them: symmetric, per output channel), and re-record the artifact's hashes."""
    import torch

    w = torch.load(HERE.parent / "models/digits_cnn.pt", weights_only=True)["classifier.3.weight"].numpy()
    if fmt == "executorch_int8":
        w = np.clip(np.round(w / (np.abs(w).max(1, keepdims=True) / 127)), -127, 127).astype(np.int8)
    m = manifest_of(bundle)
    rec = m["artifacts"][fmt]
    path = bundle / rec["path"]
    data = path.read_bytes()
    assert data.count(w.tobytes()) == 1, "the weights to plant are not in the .pte"
    path.write_bytes(data.replace(w.tobytes(), (-w).tobytes()))
    rec["files"] = records.dump(B.file_records(bundle, path))
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


@pytest.mark.parametrize("fmt", FORMATS)
def test_planted_weight_change_fails_its_target(et_bundle, run_cli, tmp_path, fmt):
    bundle = _copy(et_bundle, tmp_path)
    _negate_last_linear(bundle, fmt)
    proc = run_cli("validate", bundle, "-f", fmt, "--reports", tmp_path / "reports")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "reports/validation.json").read_text())
    assert result_of(report, fmt, "executorch")["status"] == "fail"


def test_bench_times_it_on_pinned_threads(et_bundle, run_cli, tmp_path):
    proc = run_cli("bench", et_bundle, "-f", "executorch", "--threads", "1", "--no-source", "--reports", tmp_path,
                   "--min-time", "0.2", "--min-runs", "30", "--warmup-runs", "2", "--warmup-time", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [r for r in json.loads((tmp_path / "bench.json").read_text())["rows"] if r["runtime"] == "executorch"]
    assert rows and all(r["status"] == "ok" and r["p50_ms"] > 0 for r in rows), rows
    # read back from ExecuTorch's thread pool, which starts with one thread per core
    assert {r["settings"]["threads"] for r in rows} == {1}, rows


def _blocked_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "executorch"
    env["DEPLOYTOOL_NO_PYPROJECT"] = "1"
    return env


def test_without_executorch_targets_are_skipped_with_the_extra(et_bundle, tmp_path):
    env = _blocked_env()
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(et_bundle), "--reports", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "validation.json").read_text())
    for fmt in FORMATS:
        res = result_of(report, fmt, "executorch")
        assert res["status"] == "skipped" and HINT in json.dumps(res), res
    assert "SKIPPED" in proc.stdout and HINT in flat(proc.stdout)
    doctor = subprocess.run([sys.executable, "-m", "deploytool", "doctor"], env=env, capture_output=True, text=True,
                            timeout=120)
    line = next(ln for ln in doctor.stdout.splitlines() if ln.startswith("runtime executorch"))
    assert line.split()[3:5] == ["missing", "-"] and "executorch" in line.split()[5:], doctor.stdout
    assert HINT in doctor.stdout
