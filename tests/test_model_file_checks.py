"""Mistakes in a user's model .py file are found on the coordinator side, before any framework worker starts
(``sources/_pycheck.py``), each with the form that would work; a failed export leaves no ``--out`` behind."""
from __future__ import annotations

import pytest
from conftest import error_lines

from deploytool import api
from deploytool.core import errors
from deploytool.core.errors import ModelError
from deploytool.running import spawn
from deploytool.sources import resolve
from deploytool.sources.zoo import zoo_dir, zoo_names

FACTORY_FILE = "import torch\nfrom torch import nn\n\n\ndef build_model():\n    return nn.Linear(4, 2)\n\n\n" \
               "def helper():\n    return 1\n"


@pytest.fixture
def no_workers(monkeypatch):
    """Starting a worker process fails the test: what is checked must be refused before any."""
    started = []

    def refuse(cmd, **kwargs):
        started.append(cmd)
        raise RuntimeError("a worker process was started")

    monkeypatch.setattr(spawn._SPAWNER, "popen", refuse)
    return started


def _refusal(tmp_path, text: str, suffix: str = "") -> str:
    path = tmp_path / "net.py"
    path.write_text(text)
    with pytest.raises(ModelError) as e:
        resolve(f"{path}{suffix}")
    assert e.value.exit_code == errors.MODEL
    return str(e.value).replace(str(path), "net.py")


@pytest.mark.parametrize("text, suffix, message", [
    ("import torch\ndef build(:\n    pass\n", ":build", "model file net.py: line 2: syntax error: invalid syntax"),
    ("import torch\ndef build(:\n    pass\n", "", "model file net.py: line 2: syntax error: invalid syntax"),
    ("x = 1\n\nreturn x\n", ":build", "model file net.py: line 3: syntax error: 'return' outside function"),
    ("def build():\nreturn 1\n", ":build", "model file net.py: line 2: syntax error: expected an indented block"),
    (FACTORY_FILE, ":build", "model file net.py has no 'build': did you mean --model net.py:build_model?"),
    (FACTORY_FILE, ":make", "model file net.py has no 'make'; its functions and classes: build_model, helper "
                            "(pass --model net.py:NAME)"),
    ("import torch\nMODEL = None\n", ":make", "has no 'make', and defines no function or class that could build"),
    ("INPUTS = []\nOUTPUTS = []\ndef build():\n    pass\n", ":model",
     "model file net.py has no 'model'; it is written like a zoo module: pass --model net.py"),
    (FACTORY_FILE, "", "model file net.py defines no INPUTS, OUTPUTS, build (a zoo-style file defines INPUTS, "
                       "OUTPUTS, build: see models/digits_cnn.py); for a plain factory use --model "
                       "net.py:FACTORY (FACTORY: one of build_model, helper) --input NAME:SHAPE:DTYPE"),
    ("def make():\n    pass\n", "", "for a plain factory use --model net.py:make --input NAME:SHAPE:DTYPE"),
    ("X = 1\n", "", "defines no INPUTS, OUTPUTS, build (a zoo-style file defines INPUTS, OUTPUTS, build: see "
                    "models/digits_cnn.py); or pass --model net.py:FACTORY, naming a function that returns"),
    ("INPUT = []\nOUTPUTS = []\ndef build():\n    pass\n", "",
     "model file net.py defines no INPUTS: rename INPUT to INPUTS"),
])
def test_a_mistake_is_refused_with_the_form_that_works(tmp_path, text, suffix, message):
    assert message in _refusal(tmp_path, text, suffix)


def test_a_file_that_is_no_python_source_is_one_line(tmp_path):
    message = _refusal(tmp_path, "x = 1\0\n", ":build")
    assert message.startswith("model file net.py: ") and "null bytes" in message and "\n" not in message


@pytest.mark.parametrize("text", [
    "from torch import *\n",  # a star import may bring it
    "def __getattr__(name):\n    return None\n",  # PEP 562
    "globals()['build'] = lambda: None\n",
    "import sys\nsetattr(sys.modules[__name__], 'build', None)\n",
    "def setup():\n    global build\n    build = None\n",
    "from torch.nn import Linear as build\n",
    "build = lambda: None\n",
    "try:\n    from fast import make as build\nexcept ImportError:\n    def build():\n        pass\n",
    "if True:\n    build, other = None, None\n",
    "for build in [None]:\n    pass\n",
    "with open(__file__) as build:\n    pass\n",
    "class build:\n    pass\n",
    "import build\n",
])
def test_what_reading_cannot_rule_out_is_left_to_the_worker(tmp_path, text):
    path = tmp_path / "net.py"
    path.write_text(text)
    assert resolve(f"{path}:build").kind == "factory"


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_module_passes_as_a_file(name):
    """The checks refuse nothing a zoo module does (no false alarms on the files they are modelled on)."""
    assert resolve(str(zoo_dir() / f"{name}.py")).kind == "file"


def test_the_error_comes_before_any_worker_and_leaves_no_out(tmp_path, no_workers):
    path = tmp_path / "net.py"
    path.write_text("import torch\ndef build(:\n    pass\n")
    with pytest.raises(ModelError, match="line 2: syntax error"):
        api.export(f"{path}:build", ["onnx"], out=tmp_path / "bundles", inputs=["x:batch,4:float32"])
    assert not no_workers and not (tmp_path / "bundles").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_export_removes_only_the_directories_it_made(tmp_path, no_workers, existing):
    """Any failure once the staging directory exists (here: the worker cannot start): ``--out`` and the
    directories made for it go; one that was there before stays."""
    path = tmp_path / "net.py"
    path.write_text(FACTORY_FILE)
    if existing:
        (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="a worker process was started"):
        api.export(f"{path}:build_model", ["onnx"], out=tmp_path / "out/a/b", inputs=["x:batch,4:float32"])
    assert no_workers
    assert sorted(p.name for p in tmp_path.iterdir()) == (["net.py", "out"] if existing else ["net.py"])
    assert not existing or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("text, message", [
    # what reading cannot tell: a failed import inside the file, a name made at run time
    ("import deploytool_no_such_module\ndef build():\n    pass\n",
     "importing {path} failed: ModuleNotFoundError: No module named 'deploytool_no_such_module'"),
    ("def __getattr__(name):\n    return None\n\n\ndef make():\n    pass\n",
     "model file {path} has no 'build'; its functions and classes: make (pass --model {path}:NAME)"),
])
def test_a_load_failure_in_the_worker_leaves_no_out(run_cli, tmp_path, text, message):
    path = tmp_path / "net.py"
    path.write_text(text)
    proc = run_cli("export", "--model", f"{path}:build", "--input", "x:batch,4:float32", "--out",
                   tmp_path / "out/bundles")
    assert proc.returncode == errors.MODEL, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message.format(path=path) in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
