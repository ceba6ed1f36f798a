"""Trustworthy verdicts end to end (issues 13 and 22): a check that an artifact returning zeros, the mean over
the samples or another sample's output would pass too is refused as vacuous (and accepted only when asked, from
the command line or a config file, by --accept-uninformative or its alias --accept-constant-output): a reference
that does not vary with the input, and a varying output too tiny for the tolerance or the precision's
resolution; the same output at a normal magnitude passes."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import TEST_MODELS, flat, result_of

from deploytool.checking import parity
from deploytool.core import errors
from deploytool.core.errors import BundleError
from deploytool.store import manifest as M
from deploytool.targets import runtimes_of


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("deploytool: error:")]


def test_a_constant_output_is_vacuous_until_accepted(run_cli, tmp_path):
    model = TEST_MODELS / "constant_output.py"
    proc = run_cli("export", "--model", model, "--formats", "onnx", "--out", tmp_path / "b")
    assert proc.returncode == errors.PARITY, proc.stderr
    assert "VACUOUS" in flat(proc.stdout) and "PASS" not in flat(proc.stdout)
    # one line per target (onnx on onnxruntime, on OpenVINO, in the browser): which output, the causes, the option
    lines = _errors(proc.stderr)
    assert len(lines) == len(runtimes_of("onnx")), lines
    line = next(ln for ln in lines if ln.startswith("deploytool: error: constant_output/onnx: "))
    assert any(ln.startswith("deploytool: error: constant_output/onnx@openvino: vacuous check") for ln in lines)
    assert "constant_output/onnx:" in line and "'y'" in line and "weights not loaded into the head" in line
    assert "saturate" in line and "ignores its input" in line and "--accept-uninformative y" in line
    assert "an artifact returning the per-element mean over the golden samples would pass too" in line
    assert "Traceback" not in proc.stderr
    bundle = tmp_path / "b" / "constant_output"
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(data, "onnx")["status"] == "vacuous"
    assert result_of(data, "onnx")["sets"]["main"]["y"]["reference"]["status"] == "constant"
    suite = ET.parse(bundle / "reports/validation.junit.xml").getroot()
    assert [f.get("type") for f in suite.iter("failure")] == ["VacuousReference"] * len(runtimes_of("onnx"))

    proc = run_cli("validate", bundle)
    assert proc.returncode == errors.PARITY and "VACUOUS" in flat(proc.stdout)
    assert run_cli("report", bundle).returncode == 0
    md = (bundle / "reports/report.md").read_text()
    assert "**FAIL**" in md and "vacuous" in md and "| VACUOUS |" in md
    assert "VACUOUS" in (bundle / "reports/report.html").read_text()

    config = tmp_path / "deploy.toml"
    config.write_text('[validate]\naccept-uninformative = ["y"]\n')
    proc = run_cli("validate", bundle, "--config", config)
    assert proc.returncode == 0, proc.stderr
    assert "CONSTANT_ACCEPTED" in flat(proc.stdout) and "accepted with --accept-uninformative" in flat(proc.stdout)
    assert "deploytool: warning: constant_output/onnx: not a full pass" in proc.stderr
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert result_of(data, "onnx")["status"] == "constant_accepted"
    suite = ET.parse(bundle / "reports/validation.junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == str(len(runtimes_of("onnx")))  # per target
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
    assert "the bundle accepts uninformative checks of these outputs from its export" in flat(proc.stdout)
    data = json.loads((accepted / "manifest.json").read_text())
    (accepted / "manifest.json").write_text(json.dumps({**data, "accepted_constant": ["nope"]}))
    with pytest.raises(BundleError, match="accepted_constant.*no output"):
        M.read(accepted)


@pytest.mark.slow
def test_a_tiny_output_is_vacuous_in_every_format_and_its_scaled_twin_passes(run_cli, tmp_path):
    """Issue 22 item 2: an output far below the fp32 atol (and below the fp16/int8 resolution, judged on absolute
    error there) passes an artifact that returns zeros: no format gets a plain PASS. The same model at a normal
    magnitude passes every format."""
    formats = "tflite_fp16,tflite_int8,onnx_int8"  # with their parents onnx and savedmodel
    proc = run_cli("export", "--model", TEST_MODELS / "tiny_output.py", "--formats", formats, "--out", tmp_path)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "tiny_output/reports/validation.json").read_text())
    for fmt in ("onnx", "savedmodel", "tflite_fp16", "tflite_int8", "onnx_int8"):
        a = result_of(data, fmt)
        assert a["status"] == "vacuous", (fmt, a["status"], a["reason"])
        assert "an artifact returning all zeros would pass too" in a["reason"], (fmt, a["reason"])
        assert a["basis"].endswith("would pass too: proves nothing") and "all zeros" in a["basis"]
        verdict = a["sets"]["main"]["y"]
        assert verdict["reference"]["status"] == "varies" and verdict["reference"]["vacuous"]
        assert next(d for d in verdict["decoys"] if d["name"] == "zeros")["passed"]
        assert any(f"tiny_output/{fmt}: vacuous check" in ln for ln in _errors(proc.stderr)), fmt
    for fmt in ("tflite_fp16", "tflite_int8", "onnx_int8"):  # the fp16/int8 path below their resolution
        assert result_of(data, fmt)["sets"]["main"]["y"]["basis"] == "absolute"
    assert "PASS" not in flat(proc.stdout) and "Traceback" not in proc.stderr

    proc = run_cli("export", "--model", TEST_MODELS / "tiny_output_scaled.py", "--formats", formats,
                   "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "tiny_output_scaled/reports/validation.json").read_text())
    for fmt in ("onnx", "savedmodel", "tflite_fp16", "tflite_int8", "onnx_int8"):
        a = result_of(data, fmt)
        assert a["status"] == "pass", (fmt, a["reason"])
        assert not any(d["passed"] for s in a["sets"].values() for d in s["y"]["decoys"]), fmt


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
