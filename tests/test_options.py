"""Typed tolerance overrides (parity.Tolerances) and the option objects of export and validate, in process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool import api
from deploytool.checking.parity import TIERS, Tolerances
from deploytool.cli import main
from deploytool.commands import export, validate
from deploytool.core.errors import UsageError


def test_tolerances_from_specs_key_by_format_output_and_target():
    t = Tolerances.from_specs(["1e-3", "onnx=2e-3", "onnx@openvino:logits=3e-3"], ["tflite_fp32:logits=0.5"])
    assert t.to_dict() == {"*:*": {"atol": 1e-3}, "onnx:*": {"atol": 2e-3}, "onnx@openvino:logits": {"atol": 3e-3},
                           "tflite_fp32:logits": {"rtol": 0.5}}
    # the most specific key wins, per field; a target's key only for that target
    assert t.for_output("onnx", "logits") == {"atol": 2e-3}
    assert t.for_output("onnx", "logits", "onnx@openvino") == {"atol": 3e-3}
    assert t.for_output("tflite_fp32", "logits") == {"atol": 1e-3, "rtol": 0.5}
    tier = t.tier(TIERS["fp16"], "onnx", "logits", "onnx@openvino")
    assert (tier.gate, tier.atol, tier.rtol) == ("elementwise", 3e-3, TIERS["fp16"].rtol)
    assert Tolerances().tier(TIERS["fp16"], "onnx", "logits") is TIERS["fp16"]


@pytest.mark.parametrize("spec", ["onnx=nan", "onnx=-1", "onnx=x"])
def test_tolerance_specs_refuse_what_would_pass_everything(spec):
    with pytest.raises(ValueError, match="--atol"):
        Tolerances.from_specs([spec])


def test_tolerances_from_a_stored_table_are_checked_and_round_trip():
    table = {"onnx:*": {"atol": 1e-3, "rtol": 0.0}}
    t = Tolerances.from_dict(table, "manifest.tolerances")
    assert t and len(t) == 1 and t.to_dict() == table and json.loads(json.dumps(t.to_dict())) == table
    table["onnx:*"]["atol"] = 1.0  # a copy: the caller's table changed later does not change it
    assert t.for_output("onnx", "y") == {"atol": 1e-3, "rtol": 0.0}
    assert not Tolerances.from_dict(None) and Tolerances.from_dict(t) is t
    with pytest.raises(ValueError, match="manifest.tolerances: onnx:\\* atol = nan"):
        Tolerances.from_dict({"onnx:*": {"atol": float("nan")}}, "manifest.tolerances")
    with pytest.raises(ValueError, match="is not FMT:OUTPUT"):
        Tolerances.from_dict({"onnx": {"atol": 1.0}})


def test_merged_lets_the_later_overrides_win_per_key_and_field():
    stored = Tolerances.from_dict({"onnx:*": {"atol": 1e-3, "rtol": 1e-3}, "*:*": {"atol": 1.0}})
    run = Tolerances.from_specs(["onnx=5e-3", "onnx:logits=9e-3"])
    merged = stored.merged(run)
    assert merged.to_dict() == {"onnx:*": {"atol": 5e-3, "rtol": 1e-3}, "*:*": {"atol": 1.0},
                                "onnx:logits": {"atol": 9e-3}}
    assert merged.for_output("onnx", "logits") == {"atol": 9e-3, "rtol": 1e-3}  # more specific key still wins
    assert stored.to_dict()["onnx:*"]["atol"] == 1e-3  # neither side changed
    assert merged.describe() == "onnx:* atol=0.005, onnx:* rtol=0.001, *:* atol=1, onnx:logits atol=0.009"


def test_export_options_normalise_what_the_api_takes():
    opts = export.ExportOptions(formats="onnx", out="b", inputs=("x:1:float32",), sign="k.pem",
                                tolerances={"onnx:*": {"atol": 1e-3}}, accept_constant="*")
    assert opts.formats == ["onnx"] and opts.out == Path("b") and opts.inputs == ["x:1:float32"]
    assert opts.sign == Path("k.pem") and opts.accept_constant == ["*"]
    assert isinstance(opts.tolerances, Tolerances) and opts.tolerances.to_dict() == {"onnx:*": {"atol": 1e-3}}
    with pytest.raises(UsageError, match="atol = nan"):
        export.ExportOptions(tolerances={"onnx:*": {"atol": float("nan")}})


@pytest.mark.parametrize("fields, message", [
    ({"samples": 0}, "--samples must be >= 1"),
    ({"timeout": 0}, "--timeout must be > 0"),
    ({"calib_method": "median"}, "--calib-method must be one of"),
    ({"sign": "/no/such.pem"}, "--sign /no/such.pem: no such key file"),
    ({"data": "/no/such.npz"}, "--data /no/such.npz: no such file"),
    ({"max_accuracy_drop": {"*": -1}}, "--max-accuracy-drop"),
    ({"input_ranges": ["x:1"]}, "x:1"),
])
def test_export_options_check_refuses_what_cannot_run(fields, message):
    with pytest.raises(UsageError, match=message):
        export.ExportOptions(**fields).check()


def test_export_run_arguments_become_one_options_object():
    by_position = export._options(["onnx"], "out", {"seed": 3})
    assert (by_position.formats, by_position.out, by_position.seed) == (["onnx"], Path("out"), 3)
    base = export.ExportOptions(formats=["onnx"], seed=1)
    assert export._options(base, None, {}) is base
    assert export._options(base, "elsewhere", {"seed": 2}) == export.ExportOptions(formats=["onnx"], seed=2,
                                                                                   out=Path("elsewhere"))
    with pytest.raises(TypeError, match="formats given twice"):
        export._options(["onnx"], None, {"formats": ["onnx"]})
    with pytest.raises(TypeError, match="no_such"):
        export._options(None, None, {"no_such": 1})


def test_validate_run_arguments_become_one_options_object():
    opts = validate._options(["tflite"], {"tolerances": {"*:*": {"rtol": 0.1}}, "runtimes": ("onnxruntime",),
                                          "json_path": "v.json"})
    assert opts.formats == ["tflite"] and opts.runtimes == ["onnxruntime"] and opts.json_path == Path("v.json")
    assert opts.tolerances.for_output("tflite_fp32", "y") == {"rtol": 0.1}
    assert validate._options(None, {}) == validate.ValidateOptions()
    assert validate._options(opts, {"strict": True}).strict and not opts.strict
    with pytest.raises(UsageError, match="--runtime nope: no such runtime"):
        validate.ValidateOptions(runtimes=["nope"]).check()
    assert validate.ValidateOptions(runtimes=["onnxruntime", "onnxruntime"]).check() == ["onnxruntime"]


class _Built(Exception):
    """Raised by a stand-in for the api: carries what the CLI passed."""


def _capture(monkeypatch, name: str) -> list:
    seen: list = []

    def fake(target, options=None, progress=None, **fields):
        seen.append((target, options, fields))
        raise _Built

    monkeypatch.setattr(api, name, fake)
    return seen


def test_the_export_command_builds_one_options_object(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "export")
    result = CliRunner().invoke(main, ["export", "-m", "digits_cnn", "-f", "onnx,tflite_fp32", "--out", str(tmp_path),
                                       "--atol", "onnx=1e-3", "--rtol", "1e-2", "--max-accuracy-drop", "2",
                                       "--accept-constant-output", "*", "--no-freeze", "--seed", "7"])
    assert isinstance(result.exception, _Built), result.output
    [(model, opts, fields)] = seen
    assert model == "digits_cnn" and fields == {} and isinstance(opts, api.ExportOptions)
    assert opts.formats == ["onnx", "tflite_fp32"] and opts.out == tmp_path and opts.seed == 7 and not opts.freeze
    assert opts.tolerances.to_dict() == {"onnx:*": {"atol": 1e-3}, "*:*": {"rtol": 1e-2}}
    assert opts.max_accuracy_drop == {"*": 2.0} and opts.accept_constant == ["*"]


def test_the_validate_command_builds_one_options_object(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "validate")
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "-f", "tflite", "--runtime", "onnxruntime",
                                       "--rtol", "tflite_fp32:logits=1e-3", "--tier-defaults", "--reports",
                                       str(tmp_path / "r"), "--junit", str(tmp_path / "j.xml"), "--samples", "4"])
    assert isinstance(result.exception, _Built), result.output
    [(bundle, opts, fields)] = seen
    assert bundle == str(tmp_path) and fields == {} and isinstance(opts, api.ValidateOptions)
    assert opts.formats == ["tflite"] and opts.runtimes == ["onnxruntime"] and opts.tier_defaults
    assert opts.reports_dir == tmp_path / "r" and opts.junit_path == tmp_path / "j.xml" and opts.samples == 4
    assert opts.tolerances.to_dict() == {"tflite_fp32:logits": {"rtol": 1e-3}}


def test_a_malformed_tolerance_on_the_command_line_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--atol", "onnx=nan"])
    assert result.exit_code == 2 and "--atol 'onnx=nan'" in result.output
