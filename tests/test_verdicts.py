"""Trustworthy verdicts end to end (issue 13): a reference that does not vary with the input is
refused as vacuous (and accepted only when asked, from the command line or a config file), and a
varying near-zero output passes its fp16 and int8 artifacts on absolute error, not on the
cosine/SQNR of vectors the precision flushed to zero."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import TEST_MODELS, flat, note_of, result_of

from deploytool.checking import parity
from deploytool.core import errors
from deploytool.core.errors import BundleError
from deploytool.store import manifest as M


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("deploytool: error:")]


def test_a_constant_output_is_vacuous_until_accepted(run_cli, tmp_path):
    model = TEST_MODELS / "constant_output.py"
    proc = run_cli("export", "--model", model, "--formats", "onnx", "--out", tmp_path / "b")
    assert proc.returncode == errors.PARITY, proc.stderr
    assert "VACUOUS" in flat(proc.stdout) and "PASS" not in flat(proc.stdout)
    # one line per target (onnx on onnxruntime, onnx on OpenVINO): which output, the likely causes, the option
    line, ov_line = _errors(proc.stderr)
    assert ov_line.startswith("deploytool: error: constant_output/onnx@openvino: vacuous check")
    assert "constant_output/onnx:" in line and "'y'" in line and "weights not loaded into the head" in line
    assert "saturate" in line and "ignores its input" in line and "--accept-constant-output y" in line
    assert "Traceback" not in proc.stderr
    bundle = tmp_path / "b" / "constant_output"
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(data, "onnx")["status"] == "vacuous"
    assert result_of(data, "onnx")["sets"]["main"]["y"]["reference"]["status"] == "constant"
    suite = ET.parse(bundle / "reports/validation.junit.xml").getroot()
    assert [f.get("type") for f in suite.iter("failure")] == ["VacuousReference"] * 2

    proc = run_cli("validate", bundle)
    assert proc.returncode == errors.PARITY and "VACUOUS" in flat(proc.stdout)
    assert run_cli("report", bundle).returncode == 0
    md = (bundle / "reports/report.md").read_text()
    assert "**FAIL**" in md and "vacuous" in md and "| VACUOUS |" in md
    assert "VACUOUS" in (bundle / "reports/report.html").read_text()

    config = tmp_path / "deploy.toml"
    config.write_text('[validate]\naccept-constant-output = ["y"]\n')
    proc = run_cli("validate", bundle, "--config", config)
    assert proc.returncode == 0, proc.stderr
    assert "CONSTANT_ACCEPTED" in flat(proc.stdout) and "accepted with --accept-constant-output" in flat(proc.stdout)
    assert "deploytool: warning: constant_output/onnx: not a full pass" in proc.stderr
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(data, "onnx")["status"] == "constant_accepted"
    suite = ET.parse(bundle / "reports/validation.junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == "2"  # not a failure, not a pass (per target)
    assert run_cli("report", bundle).returncode == 0
    assert "`onnx` constant_accepted" in (bundle / "reports/report.md").read_text().splitlines()[2]

    proc = run_cli("validate", bundle, "--accept-constant-output", "logits")
    assert proc.returncode == errors.USAGE and len(proc.stderr.strip().splitlines()) == 1
    assert "no such output" in proc.stderr

    proc = run_cli("export", "--model", model, "--formats", "onnx", "--out", tmp_path / "b2",
                   "--accept-constant-output", "*")
    assert proc.returncode == 0, proc.stderr
    assert "CONSTANT_ACCEPTED" in flat(proc.stdout) and "PASS " not in flat(proc.stdout)
    # the bundle keeps what its export accepted: a later validate accepts it too, and says so
    accepted = tmp_path / "b2" / "constant_output"
    assert M.read(accepted).accepted_constant == ["*"]
    proc = run_cli("validate", accepted)
    assert proc.returncode == 0 and "CONSTANT_ACCEPTED" in flat(proc.stdout), proc.stderr
    assert "the bundle accepts constant reference outputs from its export" in flat(proc.stdout)
    data = json.loads((accepted / "manifest.json").read_text())
    (accepted / "manifest.json").write_text(json.dumps({**data, "accepted_constant": ["nope"]}))
    with pytest.raises(BundleError, match="accepted_constant.*no output"):
        M.read(accepted)


def test_a_near_zero_output_passes_fp16_and_int8_on_absolute_error(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "tiny_output.py", "--formats",
                   "tflite_fp16,tflite_int8,onnx_int8", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "tiny_output/reports/validation.json").read_text())
    for fmt in ("tflite_fp16", "tflite_int8", "onnx_int8"):
        a = result_of(data, fmt)
        assert a["status"] == "pass", (fmt, a["reason"])
        verdict = a["sets"]["main"]["y"]
        assert verdict["basis"] == "absolute" and verdict["reference"]["status"] == "varies"
        assert verdict["metrics"]["ref_max_abs"] < 1e-29 and verdict["metrics"]["max_abs"] < 1e-29
        assert a["basis"].startswith("judged on absolute error (max ") and "resolution" in a["basis"]
        row = next(ln for ln in flat(proc.stdout).splitlines() if ln.startswith(fmt + " "))
        assert "PASS" in row and "judged on absolute error" in note_of(proc.stdout, fmt)
    # what the old rule failed: the fp16 artifact flushed the reference to zero (cosine 0, SQNR 0 dB)
    assert result_of(data, "tflite_fp16")["sets"]["main"]["y"]["metrics"]["cosine"] == 0.0
    for fmt in ("onnx", "savedmodel"):  # fp32 stays elementwise
        assert result_of(data, fmt)["sets"]["main"]["y"]["basis"] == "elementwise"


@pytest.mark.slow  # imports torch and runs every zoo model in this process
@pytest.mark.parametrize("name", sorted(p.stem for p in (TEST_MODELS.parent.parent / "models").glob("[!_]*.py")))
def test_every_zoo_models_reference_varies_with_its_input(name):
    """A zoo model whose outputs ignore their input would make every check of it vacuous (mobilenet_v2's
    did, with seeded BatchNorm statistics only)."""
    import importlib.util

    import torch

    from deploytool.core.contract import Contract, generate_inputs

    path = TEST_MODELS.parent.parent / "models" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    contract = Contract.from_dict({"inputs": mod.INPUTS, "outputs": mod.OUTPUTS, "dims": mod.DIMS})
    n = 6
    inputs = mod.golden_inputs(n, 0) if hasattr(mod, "golden_inputs") else \
        generate_inputs(contract, n, 0, contract.dim_sizes("example", batch_one=True))
    model = mod.build().eval()
    with torch.no_grad():
        outs = [model(*(torch.from_numpy(inputs[s.name][i]) for s in contract.inputs)) for i in range(n)]
    outs = [o if isinstance(o, (tuple, list)) else (o,) for o in outs]
    for k, spec_out in enumerate(contract.outputs):
        ref = np.stack([o[k].numpy() for o in outs])
        assert parity.variation(ref).status == "varies", (name, spec_out.name, parity.variation(ref))
