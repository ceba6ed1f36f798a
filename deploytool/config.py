"""``--config FILE.toml``: a command's options written down once, e.g. for a CI pipeline.

One table per command (``[export]``, ``[validate]``, ``[bench]``); keys are the command's long
option names (``input-range`` or ``input_range``); values are what the option takes on the
command line (a list for repeatable options). Options given on the command line win. Relative
paths are relative to the config file's directory. Tolerances may also be written as a table::

    [export]
    model = "my_models.py:build"
    formats = ["onnx", "tflite_fp16"]
    input = ["ids:batch x seq:int64"]
    input-range = ["ids:0:30522"]

    [export.atol]
    tflite_fp32 = 1e-3
    "onnx:logits" = 2e-4

The same tables may live in a project's pyproject.toml as ``[tool.deploytool.export]`` and so on.
It is found by walking up from the working directory to the first pyproject.toml that has a
``[tool.deploytool]`` table (pyproject.toml files without one are passed over, as ruff and pytest
do); ``DEPLOYTOOL_NO_PYPROJECT=1`` turns the search off. Precedence: the command line, then
``--config FILE``, then pyproject.toml, then the built-in defaults.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from deploytool.core.errors import did_you_mean

TABLES = ("export", "validate", "bench", "report", "recommend")
# the options that take a path (click.Path): relative to the config file (tests/test_config.py checks every command's)
PATH_KEYS = {"weights", "out", "data", "reports", "json_path", "junit_path", "compare", "calib_data", "sign",
             "verify_key", "pipeline", "raw_data"}


def load(path: str | Path, command: str, params: dict[str, tuple[str, bool]]) -> dict:
    """The ``[command]`` table of ``path`` as click default values.

    ``params``: long option name (no dashes) -> (parameter name, repeatable). Raises ValueError
    with one line naming the file and the problem.
    """
    path = Path(path)
    return section(_read(path), path, f"config {path}", command, params)


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"config {path}: cannot read it ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path}: not valid TOML ({e})") from None


NO_PYPROJECT_ENV = "DEPLOYTOOL_NO_PYPROJECT"


def pyproject_disabled() -> bool:
    return os.environ.get(NO_PYPROJECT_ENV, "") not in ("", "0")


def find_pyproject(start: str | Path | None = None) -> Path | None:
    """The first pyproject.toml with a [tool.deploytool] table from ``start`` (default: the working
    directory) up to the filesystem root; None when there is none or the search is turned off."""
    if pyproject_disabled():
        return None
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue  # not ours to judge: pytest, pip and ruff report a broken pyproject.toml
            if isinstance(data.get("tool"), dict) and "deploytool" in data["tool"]:
                return candidate
    return None


def load_pyproject(path: Path, command: str, params: dict[str, tuple[str, bool]]) -> dict:
    """The ``[tool.deploytool.COMMAND]`` table of a pyproject.toml as click default values (as ``load``)."""
    table = _read(path)["tool"]["deploytool"]
    where = f"{path} [tool.deploytool]"
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table")
    return section(table, path, where, command, params)


def section(data: dict, path: Path, where: str, command: str, params: dict[str, tuple[str, bool]]) -> dict:
    """One command's table of ``data`` (read from ``path``; ``where`` names it in errors) as click defaults."""
    unknown = [k for k in data if k not in TABLES]
    if unknown:
        raise ValueError(f"{where}: unknown table(s) {unknown}{did_you_mean(unknown[0], TABLES)}; the tables are "
                         f"{', '.join(f'[{t}]' for t in TABLES)}")
    table = data.get(command, {})
    if not isinstance(table, dict):
        raise ValueError(f"{where}: [{command}] must be a table")
    base = path.resolve().parent
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in params:
            options = sorted(k.replace("_", "-") for k in params)
            hint = did_you_mean(key.replace("_", "-"), options)
            raise ValueError(f"{where}: [{command}] has no option {key!r}{hint}; its options: {', '.join(options)}")
        param, repeatable = params[name]
        if name in ("atol", "rtol") and isinstance(value, dict):
            value = [f"{target}={v}" for target, v in value.items()]
        if name == "feedback" and isinstance(value, dict):  # the model file's FEEDBACK form: OUT = "IN[:argmax]"
            value = [f"{out}->{inp}" for out, inp in value.items()]
        if param in ("formats", "threads", "batch") and isinstance(value, list) and not repeatable:
            value = ",".join(map(str, value))  # comma-separated on the command line
        if repeatable and not isinstance(value, list):
            value = [value]
        if not repeatable and isinstance(value, (list, dict)):
            raise ValueError(f"{where}: [{command}] {key} takes one value, got {value!r}")
        if param in ("model", "source"):  # validate --source names the model as export --model does
            value = _model_path(str(value), base)
        elif param in PATH_KEYS:
            value = [str(base / v) for v in value] if repeatable else str(base / str(value))
        out[param] = value
    return out


def _model_path(model: str, base: Path) -> str:
    """A model file (or file.py:factory) relative to the config; zoo names and modules as written."""
    target, sep, attr = model.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{base / target}:{attr}"
    candidate = base / model
    return str(candidate) if candidate.exists() or model.endswith((".py", ".onnx", ".keras")) else model
