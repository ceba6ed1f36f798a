"""--config FILE.toml: a command's options from a file; the command line wins."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import manifest_of

from deploytool import config
from deploytool.core import errors

EXPORT_PARAMS = {"model": ("model", False), "formats": ("formats", False), "input": ("inputs", True),
                 "input_range": ("input_ranges", True), "weights": ("weights", False), "atol": ("atol", True),
                 "samples": ("samples", False), "keep_layout": ("keep_layout", False)}


def test_load_maps_keys_paths_and_tolerance_tables(tmp_path):
    (tmp_path / "m.py").write_text("")
    path = tmp_path / "deploy.toml"
    path.write_text('[export]\nmodel = "m.py:build"\nformats = ["onnx", "tflite_fp16"]\n'
                    'input = "ids:batch x seq:int64"\n'
                    'input-range = ["ids:0:30522"]\nweights = "w/weights.pt"\nkeep_layout = true\n'
                    '[export.atol]\ntflite_fp16 = 1e-3\n"onnx:logits" = 2e-4\n')
    got = config.load(path, "export", EXPORT_PARAMS)
    assert got == {"model": f"{tmp_path / 'm.py'}:build", "formats": "onnx,tflite_fp16",
                   "inputs": ["ids:batch x seq:int64"], "input_ranges": ["ids:0:30522"],
                   "weights": str(tmp_path / "w/weights.pt"), "keep_layout": True,
                   "atol": ["tflite_fp16=0.001", "onnx:logits=0.0002"]}
    assert config.load(path, "validate", EXPORT_PARAMS) == {}  # no [validate] table: nothing set


@pytest.mark.parametrize("text, message", [
    ("[export]\nmodle = 'x'\n", "[export] has no option 'modle' (did you mean model?); its options: atol, formats, "
                                 "input, input-range"),
    ("[export]\ninput_rnage = 'x'\n", "has no option 'input_rnage' (did you mean input-range?)"),
    ("[export]\nzzz = 'x'\n", "has no option 'zzz'; its options: "),
    ("[exprot]\nmodel = 'x'\n", "unknown table(s) ['exprot'] (did you mean export?); the tables are [export], "),
    ("[export]\nsamples = [1, 2]\n", "[export] samples takes one value"),
    ("[export\n", "not valid TOML"),
])
def test_load_refuses_bad_files_with_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        config.load(path, "export", EXPORT_PARAMS)
    assert message in str(e.value) and str(path) in str(e.value)


def test_export_and_validate_from_a_config_file(run_cli, tmp_path):
    (tmp_path / "m.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def build():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.Linear(6, 4), nn.Tanh()).eval()\n")
    (tmp_path / "deploy.toml").write_text(
        '[export]\nmodel = "m.py:build"\nformats = ["onnx"]\ninput = ["x:batch x 6:float32"]\nout = "bundles"\n'
        'samples = 5\n[export.atol]\nonnx = 1e-3\n\n[validate]\nrtol = { "onnx" = 1e-3 }\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = run_cli("export", "--config", tmp_path / "deploy.toml", "--samples", "3", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = tmp_path / "bundles/m"  # paths in the file are relative to the file, not the working directory
    m = manifest_of(bundle)
    assert m["golden"]["sets"]["main"]["samples"] == 3  # the command line wins
    assert m["tolerances"] == {"onnx:*": {"atol": 0.001}}
    proc = run_cli("validate", bundle, "--config", tmp_path / "deploy.toml", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((bundle / "reports/validation.json").read_text())
    # the bundle's export-time overrides, then the run's
    assert report["tolerances"]["overrides"] == {"onnx:*": {"atol": 0.001, "rtol": 0.001}}
    proc = run_cli("export", "--config", tmp_path / "missing.toml")
    assert proc.returncode == errors.USAGE and proc.stderr.strip() == \
        f"deploytool: error: config {tmp_path / 'missing.toml'}: no such file"


def test_a_mistyped_pyproject_table_or_key_names_the_close_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deploytool.cli import main

    monkeypatch.delenv(config.NO_PYPROJECT_ENV)
    monkeypatch.chdir(tmp_path)
    where = f"{tmp_path / 'pyproject.toml'} [tool.deploytool]"
    for table, message in [("[tool.deploytool.exprot]\nsamples = 3\n", "unknown table(s) ['exprot'] (did you mean "
                                                                        "export?)"),
                           ("[tool.deploytool.bench]\nthread = 2\n", "[bench] has no option 'thread' (did you mean "
                                                                     "threads?)")]:
        (tmp_path / "pyproject.toml").write_text(table)
        result = CliRunner().invoke(main, ["bench", "bundle"])
        assert result.exit_code == errors.USAGE
        assert result.output.startswith(f"deploytool: error: {where}: {message}") and result.output.count("\n") == 1


def test_format_and_formats_are_one_option_in_a_config_file(tmp_path):
    from deploytool.cli import main
    from deploytool.cli.options import option_names

    params = option_names(main.commands["validate"])
    path = tmp_path / "deploy.toml"
    for key in ("format", "formats"):
        path.write_text(f'[validate]\n{key} = ["onnx", "tflite"]\nruntime = "onnxruntime,openvino"\n')
        assert config.load(path, "validate", params) == {"formats": ["onnx", "tflite"],
                                                         "runtimes": ["onnxruntime,openvino"]}


def test_every_option_that_takes_a_path_is_read_relative_to_the_config_file(tmp_path):
    """A path in a config file means the same wherever the command runs from: every click.Path option of the
    commands a config file configures is in ``config.PATH_KEYS`` (or is the model, read as export --model reads it)."""
    import click

    from deploytool.cli import main

    for command in config.TABLES:
        for p in main.commands[command].params:
            if isinstance(p, click.Option) and isinstance(p.type, click.Path) and p.name != "config":
                assert p.name in config.PATH_KEYS, f"{command} --{p.name}"
    path = tmp_path / "ci" / "deploy.toml"
    path.parent.mkdir()
    path.write_text('[validate]\npipeline = "pipe.py"\nraw-data = "raw.npz"\nsource = "model.py:build"\n')
    from deploytool.cli.options import option_names

    got = config.load(path, "validate", option_names(main.commands["validate"]))
    assert got == {"pipeline": str(path.parent / "pipe.py"), "raw_data": str(path.parent / "raw.npz"),
                   "source": f"{path.parent / 'model.py'}:build"}


def test_a_bad_value_in_a_config_file_is_named_with_the_file_and_option(run_cli, cli_env, tmp_path):
    path = tmp_path / "deploy.toml"
    path.write_text('[validate]\noracle = "float32"\n')
    for args in (["config", "--config", str(path), "validate"], ["validate", str(tmp_path), "--config", str(path)]):
        proc = run_cli(*args)
        assert proc.returncode == errors.USAGE, proc.stderr
        assert f"--config {path}: [validate] oracle = 'float32': 'float32' is not one of 'float64', 'none'" \
            in proc.stderr, proc.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.deploytool.export]\nsamples = "many"\n')
    env = {k: v for k, v in cli_env.items() if k != config.NO_PYPROJECT_ENV}
    proc = subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "nothere"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == errors.USAGE and "[export] samples = 'many'" in proc.stderr, proc.stderr
    assert "pyproject.toml" in proc.stderr
