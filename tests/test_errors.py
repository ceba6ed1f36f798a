"""Error paths: one line naming the model/format and the cause, a documented exit code."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import TEST_MODELS, error_lines, manifest_of

from deploytool.cli import main
from deploytool.core import errors


def _one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    return "\n".join(error_lines(proc.stderr))


def test_unknown_model(run_cli, tmp_path):
    proc = run_cli("export", "--model", "resnet9000", "--out", tmp_path)
    assert proc.returncode == errors.MODEL
    err = _one_line_error(proc)
    assert err.count("\n") == 0 and "unknown model 'resnet9000'" in err and "digits_cnn" in err
    assert not any(tmp_path.iterdir())


def test_missing_model_file(run_cli, tmp_path):
    proc = run_cli("export", "--model", tmp_path / "nope.py", "--out", tmp_path)
    assert proc.returncode == errors.MODEL
    assert "no such file" in _one_line_error(proc)


@pytest.mark.parametrize("model, message", [
    ("factory_raises.py", "factory build() raised RuntimeError: weights file corrupted"),
    ("not_a_module.py", "not a torch.nn.Module"),
    ("forward_raises.py", "forward() on the main golden set raised RuntimeError: batch of one not supported"),
])
def test_broken_factory(run_cli, tmp_path, model, message):
    proc = run_cli("export", "--model", TEST_MODELS / model, "--out", tmp_path)
    assert proc.returncode == errors.MODEL, proc.stderr
    err = _one_line_error(proc)
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / model.removesuffix(".py")).exists()
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_debug_shows_the_traceback(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "factory_raises.py", "--out", tmp_path, "--debug")
    assert proc.returncode == errors.MODEL and "Traceback" in proc.stderr
    assert "worker traceback:" in proc.stderr and 'raise RuntimeError("weights file corrupted")' in proc.stderr


def test_unknown_format_is_a_usage_error(run_cli, tmp_path):
    proc = run_cli("export", "--formats", "onnx,coreml", "--out", tmp_path)
    assert proc.returncode == errors.USAGE
    assert "--format coreml: no such format; one of: executorch, executorch_int8, onnx, " in _one_line_error(proc)
    proc = run_cli("export", "-f", "onnx", "-f", "tflite_fp23", "--out", tmp_path)
    assert proc.returncode == errors.USAGE
    assert "--format tflite_fp23: no such format (did you mean tflite_fp32" in _one_line_error(proc)


def test_converter_failure_is_isolated_to_its_formats(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "needs_flex_op.py", "--out", tmp_path)
    # The onnx artifact passes on onnxruntime but OpenVINO cannot read it (no Det): that target is an ERROR
    # (exit 6, which outranks the failed TFLite exports' 4), said in one line naming the op.
    assert proc.returncode == errors.RUNTIME, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "needs_flex_op/tflite_fp32: export failed: TFLiteConverter: ops not supported by TFLite built-ins: " \
           "tf.MatrixDeterminant" in proc.stderr
    assert "needs_flex_op/onnx@openvino: failed to load in openvino: RuntimeError: OpenVINO cannot read this " \
           "model: no conversion rule for ONNX op(s) Det" in proc.stderr
    m = manifest_of(tmp_path / "needs_flex_op")
    art = m["artifacts"]
    for fmt in ("torchscript", "onnx", "savedmodel"):
        assert art[fmt]["status"] == "ok" and art[fmt]["check"]["status"] == "pass", fmt
    assert art["onnx"]["checks"]["onnx@openvino"]["status"] == "error"
    # an export that checks only the default runtimes reports the converter failures alone (exit 4)
    proc = run_cli("export", "--model", TEST_MODELS / "needs_flex_op.py", "--out", tmp_path / "own",
                   "--runtime", "onnxruntime", "--formats", "onnx,tflite_fp32")
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    for fmt in ("tflite_fp32", "tflite_fp16"):
        assert art[fmt]["status"] == "failed" and "MatrixDeterminant" in art[fmt]["error"]
        assert art[fmt]["files"] == []
    assert not list((tmp_path / "needs_flex_op/artifacts").glob("*.tflite"))


def test_shape_baking_model_fails_torchscript_and_onnx_with_reasons(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "shape_baked.py", "--out", tmp_path)
    assert proc.returncode == errors.EXPORT
    art = manifest_of(tmp_path / "shape_baked")["artifacts"]
    assert "trace baked in an input shape" in art["torchscript"]["error"]
    assert "specialised dynamic dim 'batch' to 2" in art["onnx"]["error"]
    assert art["savedmodel"]["status"] == "skipped" and "parent onnx failed" in art["savedmodel"]["error"]


def test_exit_code_precedence():
    assert errors.worst([errors.OK, errors.EXPORT, errors.PARITY]) == errors.PARITY
    assert errors.worst([errors.OK]) == errors.OK
    assert errors.worst([errors.SKIPPED, errors.RUNTIME]) == errors.RUNTIME


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=110)
    assert result.exit_code == 0, result.output
    return result.output


def _listed(help_text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^\s+(\d+)  ", help_text.split("Exit codes:\n", 1)[1], re.M)]


def test_the_groups_help_lists_every_exit_code_and_each_command_is_given_its_own():
    assert _listed(_help()) == list(errors.EXIT_CODES)
    assert set(errors.COMMAND_EXIT_CODES) == set(main.commands) == set(errors.SUCCESS)
    assert all(set(codes) <= set(errors.EXIT_CODES) for codes in errors.COMMAND_EXIT_CODES.values())
    assert errors.NO_MATCH in errors.COMMAND_EXIT_CODES["recommend"]
    assert errors.PARITY not in errors.COMMAND_EXIT_CODES["recommend"]
    assert errors.REGRESSION in errors.COMMAND_EXIT_CODES["bench"]
    assert errors.UNUSABLE not in errors.COMMAND_EXIT_CODES["export"]


@pytest.mark.parametrize("command", list(errors.COMMAND_EXIT_CODES))
def test_help_lists_the_exit_codes_the_command_can_return_and_only_those(command):
    text = _help(command)
    assert _listed(text) == list(errors.COMMAND_EXIT_CODES[command])
    assert f"  0  {errors.SUCCESS[command]}" in text
