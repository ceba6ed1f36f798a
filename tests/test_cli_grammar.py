"""One option grammar across commands (issue 21 item 4): --format and --runtime read alike by export, validate and
bench (repeated or comma-separated, a prefix up to '_' selects a family, 'all'), an unknown name is one line with
the valid names and the close ones; --help without formatting artefacts; an unknown option names the close ones.
(Each command's exit codes in its --help: test_errors.py; config keys and tables: test_config.py.) In process."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.cli.options import option_names
from deploytool.commands import export, validate
from deploytool.core import errors
from deploytool.core.errors import UsageError
from deploytool.formats import FORMATS
from deploytool.running.jobs import ArtifactStatus
from deploytool.store.manifest import ArtifactRecord
from deploytool.targets import check_runtimes, format_names, select

TFLITE = ["tflite_dynamic", "tflite_fp16", "tflite_fp16_arith", "tflite_fp32", "tflite_int8"]
RUNNERS = ("export", "validate", "bench")  # the commands that take --format and --runtime


def _bundle(*names: str):
    """A stand-in manifest with these artifacts (select_formats reads only ``artifacts``)."""
    recs = {n: ArtifactRecord(format=n, status=ArtifactStatus.OK, precision="fp32", tier="fp32", runtime="x")
            for n in names}
    return type("M", (), {"artifacts": recs})()


def test_names_are_repeated_or_comma_separated_and_a_prefix_selects_its_family():
    assert select("--format", ["onnx,tflite_fp32", " savedmodel "], list(FORMATS)) == \
        ["onnx", "savedmodel", "tflite_fp32"]  # registry order, once each
    assert select("--format", ["tflite"], list(FORMATS)) == TFLITE
    assert select("--format", ["onnx"], list(FORMATS)) == ["onnx"]  # a name that is one never widens (onnx_int8)
    assert select("--format", ["onnx_int8", "tflite_fp16", "tflite"], list(FORMATS)) == ["onnx_int8", *TFLITE]
    assert select("--format", [], list(FORMATS)) is None and select("--format", ["onnx", "all"], list(FORMATS)) is None
    assert check_runtimes(["onnxruntime,openvino", "openvino"]) == ["onnxruntime", "openvino"]
    assert check_runtimes("all") is None


@pytest.mark.parametrize("call, message", [
    (lambda: format_names(["onnx,tflite_fp23"]),
     "--format tflite_fp23: no such format (did you mean tflite_fp32, tflite_fp16 or tflite?); one of: executorch, "),
    (lambda: format_names(["tflit"]), "(did you mean tflite?)"),
    (lambda: format_names(["t"]), "--format t: no such format; one of: "),  # no half-word prefixes
    (lambda: check_runtimes(["litrt"]),
     "--runtime litrt: no such runtime (did you mean litert?); one of: executorch, keras, "),
    (lambda: format_names(["tflite_int8"], ["onnx", "tflite_fp32"], "the bundle has no such artifact"),
     "--format tflite_int8: the bundle has no such artifact (it has onnx, tflite_fp32)"),
])
def test_a_name_that_selects_nothing_is_one_line_with_the_valid_and_the_close_names(call, message):
    with pytest.raises(UsageError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == errors.USAGE


def test_export_validate_and_bench_read_format_names_alike():
    """export's --format (ExportOptions.check) and validate's / bench's (validate.select_formats, which bench
    calls) are the one function: the same prefix, the same error."""
    opts = export.ExportOptions(formats=["onnx,tflite"])
    opts.check()
    assert opts.formats == ["onnx", *TFLITE]
    bundle = _bundle("onnx", "savedmodel", "tflite_fp16", "tflite_fp32")
    assert validate.select_formats(bundle, ["onnx,tflite"]) == ["onnx", "tflite_fp16", "tflite_fp32"]
    with pytest.raises(UsageError, match=r"--format tflite_fp23: no such format \(did you mean tflite_fp32"):
        export.ExportOptions(formats=["tflite_fp23"]).check()
    with pytest.raises(UsageError, match=r"--format tflite_fp23: no such format \(did you mean tflite_fp32"):
        validate.select_formats(bundle, ["tflite_fp23"])


@pytest.mark.parametrize("option, param", [("--format", "formats"), ("--runtime", "runtimes")])
def test_format_and_runtime_are_the_same_option_in_every_command_that_runs_artifacts(option, param):
    declared = []
    for name in RUNNERS:
        [p] = [p for p in main.commands[name].params if option in p.opts]
        assert p.name == param and p.multiple and p.metavar == "NAME", name
        declared.append((tuple(p.opts), p.help[p.help.index("(repeatable"):]))  # the lead says what it does
    assert len(set(declared)) == 1, declared
    assert option_names(main.commands["export"])["format"] == option_names(main.commands["export"])["formats"]


class _Built(Exception):
    """Raised by a stand-in for an api function: carries the options the CLI built."""


def _captured(monkeypatch, name: str, args: list[str]):
    """The options ``deploytool NAME ARGS`` passes to the api (which is replaced: nothing runs)."""
    from deploytool import api

    def built(target, options=None, *rest, **fields):
        raise _Built(options)

    monkeypatch.setattr(api, name, built)
    result = CliRunner().invoke(main, [name, *args])
    assert isinstance(result.exception, _Built), result.output
    return result.exception.args[0]


def test_every_command_takes_format_runtime_threads_and_batch_repeated_or_comma_separated(monkeypatch, tmp_path):
    opts = _captured(monkeypatch, "export", ["-f", "onnx", "--formats", "tflite_fp32,savedmodel", "--runtime",
                                            "onnxruntime", "--runtime", "openvino", "-o", str(tmp_path)])
    assert opts.formats == ["onnx", "tflite_fp32", "savedmodel"] and opts.runtimes == ["onnxruntime", "openvino"]
    for command in ("validate", "bench"):
        opts = _captured(monkeypatch, command, [str(tmp_path), "--format", "onnx", "-f", "tflite,savedmodel",
                                                "--runtime", "onnxruntime,openvino"])
        assert opts.formats == ["onnx", "tflite", "savedmodel"] and opts.runtimes == ["onnxruntime", "openvino"]
    opts = _captured(monkeypatch, "bench", [str(tmp_path), "--threads", "1", "--threads", "2,4", "--batch", "1,8"])
    assert opts.threads == [1, 2, 4] and opts.batches == [1, 8]


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=110)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *errors.COMMAND_EXIT_CODES])
def test_help_has_no_formatting_artefacts(command):
    text = _help(*([command] if command else []))
    assert "%%" not in text and "\\b" not in text and "\b" not in text


@pytest.mark.parametrize("args, close, far", [
    (["export", "--fomat", "onnx"], "'--format'", "'--data'"),  # click alone offered --atol, --data, --format
    (["validate", "x", "--runtimes", "onnxruntime"], "'--runtime'", "'--timeout'"),
    (["config", "export", "--fomat", "onnx"], "'--format'", "'--data'"),  # config used to ignore it (exit 0)
])
def test_an_unknown_option_names_the_closest_options(args, close, far):
    result = CliRunner().invoke(main, args, prog_name="deploytool")
    assert result.exit_code == errors.USAGE, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert "No such option" in line and close in line and far not in line
    assert f"Usage: deploytool {args[0] if args[0] != 'config' else args[1]} " in result.output


@pytest.mark.parametrize("args, message", [
    (["config", "exprot"], "config: 'exprot' reads no config (did you mean export?); one of: export, "),
    (["recommend", "bundle", "--runtime", "litrt"], "--runtime litrt: no such runtime (did you mean litert?)"),
])
def test_a_mistyped_name_is_one_line_naming_the_close_one(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == errors.USAGE
    [line] = result.output.splitlines()
    assert line.startswith("deploytool: error: ") and message in line


def test_every_command_uses_the_command_class_that_names_the_close_options():
    from deploytool.cli.options import Command

    assert all(isinstance(c, Command) for c in main.commands.values())
