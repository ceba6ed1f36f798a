"""Issue 15, end to end (slow lane): a venv with only the core and the litert extra validates and benches
the .tflite artifacts of a bundle the full environment exported; GitHub Actions annotations and step
summary from a real parity failure; doctor judging a bundle's runtimes; the pytest plugin gating on a
real bundle through pytester."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flat, note_of

from deploytool.core import errors

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def small_bundle(run_cli, tmp_path_factory) -> Path:
    """digits_cnn as onnx, torchscript and tflite_fp32 (with savedmodel, its parent), exported once."""
    out = tmp_path_factory.mktemp("ci_bundle")
    proc = run_cli("export", "--model", "digits_cnn", "--formats", "onnx,torchscript,tflite_fp32", "--out", out,
                   "--github")  # all pass: no annotation (no $GITHUB_STEP_SUMMARY here: the summary is rendered only)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "::error" not in proc.stdout + proc.stderr and "warning" not in proc.stderr
    return out / "digits_cnn"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


def test_github_annotations_and_step_summary_on_a_parity_failure(small_bundle, cli_env, tmp_path):
    bundle = _copy(small_bundle, tmp_path)
    summary = tmp_path / "summary.md"
    env = {**cli_env, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", "onnx", "-f", "tflite",
                           "--atol", "onnx@onnxruntime=1e-9", "--rtol", "onnx@onnxruntime=0"], capture_output=True,
                          text=True, env=env,
                          timeout=600)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    notes = [ln for ln in proc.stdout.splitlines() if ln.startswith("::error ")]
    assert len(notes) == 1, proc.stdout  # one per failing target: onnx@openvino and tflite_fp32 passed
    assert notes[0].startswith("::error title=deploytool digits_cnn/onnx%3A fail::onnx on onnxruntime: FAIL")
    assert "error appears at hop source -> onnx; metric main/logits: " in notes[0] and "max abs" in notes[0]
    text = summary.read_text()
    assert text.startswith("# deploytool report: digits_cnn") and "**FAIL**" in text and "`onnx`" in text
    # bench: the summary gains the timing columns; a passing bench annotates nothing
    proc = subprocess.run([sys.executable, "-m", "deploytool", "bench", str(bundle), "-f", "tflite_fp32", "--no-source",
                           "--min-time", "0.1", "--min-runs", "10", "--max-time", "5"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0 and "::error" not in proc.stdout, proc.stdout + proc.stderr
    text = summary.read_text()
    assert text.count("# deploytool report: digits_cnn") == 2 and "p50 / p90 ms @" in text
    # off without GITHUB_ACTIONS or --github
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", "tflite"],
                          capture_output=True, text=True, env=cli_env, timeout=600)
    assert proc.returncode == 0 and "::" not in proc.stdout
    assert summary.read_text() == text


def test_doctor_judges_the_runtimes_a_bundle_needs(small_bundle, cli_env):
    env = {**cli_env, "DEPLOYTOOL_BLOCK_IMPORTS": "onnxruntime",
           "PYTHONPATH": os.pathsep.join([str(HERE / "blockimports"), cli_env.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "deploytool", "doctor", "--for", "device", "--bundle", str(small_bundle)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == errors.UNUSABLE, proc.stdout + proc.stderr
    assert "onnxruntime (runtime onnxruntime) is not installed" in proc.stderr
    assert "pip install 'deploytool[onnxruntime]'" in proc.stdout
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 0 and "device: ready" in proc.stdout, proc.stdout + proc.stderr


def test_pytest_plugin_gates_on_parity(small_bundle, pytester, tmp_path):
    bundle = _copy(small_bundle, tmp_path)
    pytester.makepyfile(f"""
        import pytest

        def test_release_bundle(deploytool):
            outcome = deploytool.validate({str(bundle)!r}, ["tflite"])
            assert outcome.checks["tflite_fp32"].status == "pass"

        def test_too_tight(deploytool):
            # a tolerance for one target: onnx on onnxruntime only (onnx on OpenVINO keeps its tier, and passes)
            deploytool.validate({str(bundle)!r}, ["onnx"],
                                tolerances={{"onnx@onnxruntime:*": {{"atol": 1e-9, "rtol": 0.0}}}})
    """)
    result = pytester.runpytest("-p", "deploytool.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "ParityFailure: deploytool: 1 target(s) of digits_cnn did not pass" in out
    row = next(ln for ln in out.splitlines() if re.match(r"E\s+onnx\s+onnxruntime\s+FAIL", ln))
    assert "main/logits: " in row and "max abs" in row, row


def _minimal_venv(tmp: Path) -> Path:
    """A venv with deploytool's core and the litert extra only, installed from a copy of this checkout."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("deploytool", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv / "bin/pip"), "install", "--quiet", f"{src}[litert]"], capture_output=True,
                          text=True, env=env, timeout=900)
    if proc.returncode != 0 and re.search(r"No matching distribution|Could not find a version|NewConnectionError|"
                                          r"Temporary failure in name resolution", proc.stderr):
        pytest.skip(f"pip cannot reach a package index here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    return venv


@pytest.mark.slow
def test_core_plus_litert_validates_and_benches_the_tflite_artifacts(small_bundle, tmp_path):
    venv = _minimal_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tool = str(venv / "bin/deploytool")
    py = str(venv / "bin/python")
    for module in ("torch", "tensorflow", "onnxruntime", "onnx"):
        assert subprocess.run([py, "-c", f"import {module}"], capture_output=True, env=env).returncode != 0, module
    bundle = _copy(small_bundle, tmp_path)

    proc = subprocess.run([tool, "validate", str(bundle)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.split() and not ln.startswith(" ") and
            ln.split()[0] in ("onnx", "torchscript", "savedmodel", "tflite_fp32")}  # table rows (notes are indented)
    assert " PASS " in rows["tflite_fp32"]
    assert "SKIPPED" in rows["onnx"] and "pip install 'deploytool[onnxruntime]'" in note_of(proc.stdout, "onnx")
    assert "SKIPPED" in rows["torchscript"] and "pip install 'deploytool[torch]'" in note_of(proc.stdout, "torchscript")
    assert "pip install 'deploytool[tensorflow]'" in note_of(proc.stdout, "savedmodel")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([tool, "validate", str(bundle), "--strict"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == errors.SKIPPED

    proc = subprocess.run([tool, "bench", str(bundle), "--min-time", "0.2", "--min-runs", "20", "--max-time", "5"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = {ln.split()[0]: ln.split()[4] for ln in proc.stdout.splitlines()  # table rows: notes are indented
              if ln.split() and not ln.startswith(" ") and ln.split()[0] in ("source", "onnx", "torchscript",
                                                                            "tflite_fp32")}
    assert status == {"tflite_fp32": "OK", "source": "SKIPPED", "onnx": "SKIPPED", "torchscript": "SKIPPED"}
    assert "pip install 'deploytool[torch]'" in flat(proc.stdout)

    proc = subprocess.run([tool, "export", "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == errors.MODEL and "pip install 'deploytool[export]'" in proc.stderr, proc.stderr

    proc = subprocess.run([tool, "doctor", "--for", "device"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "device: ready" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([tool, "doctor"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == errors.UNUSABLE and "pip install 'deploytool[export]'" in proc.stdout
