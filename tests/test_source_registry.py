"""Source resolution, in process: which kind claims a --model argument, which options apply to it,
and the one-line errors for arguments that name nothing usable. No framework is imported."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploytool.core.errors import ModelError
from deploytool.runtimes import RUNTIMES
from deploytool.sources import FRAMEWORKS, SOURCE_KINDS, kind_of, reference_runtime, resolve, source_loadable

SOURCES_DIR = Path(__file__).resolve().parents[1] / "deploytool" / "sources"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "my_model.py").write_text("INPUTS = []\nOUTPUTS = []\n\n\ndef build():\n    pass\n")
    (tmp_path / "graph.onnx").write_bytes(b"not really onnx")
    (tmp_path / "net.keras").write_bytes(b"zip")
    sm = tmp_path / "exported"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"")
    (tmp_path / "plain_dir").mkdir()
    (tmp_path / "weights.pt").write_bytes(b"")
    return tmp_path


def test_each_kind_is_one_file_and_registered():
    files = {p.stem for p in SOURCES_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert files == {"zoo", "factory", "pyfile", "onnx_file", "keras_file", "savedmodel_dir"}
    assert set(SOURCE_KINDS) == {"zoo", "factory", "file", "onnx", "keras", "savedmodel"}
    for kind in SOURCE_KINDS.values():
        assert kind.framework in FRAMEWORKS and kind.reference_runtime in RUNTIMES, kind.name


def test_each_kind_claims_its_arguments(files):
    cases = {
        "digits_cnn": ("zoo", "torch", "digits_cnn"),
        f"{files}/my_model.py": ("file", "torch", "my_model"),
        f"{files}/my_model.py:build": ("factory", "torch", "my_model"),
        "my_pkg.models:build": ("factory", "torch", "build"),
        f"{files}/graph.onnx": ("onnx", "onnx", "graph"),
        f"{files}/net.keras": ("keras", "tensorflow", "net"),
        f"{files}/exported": ("savedmodel", "tensorflow", "exported"),
    }
    for arg, (kind, framework, name) in cases.items():
        ref = resolve(arg)
        assert (ref.kind, ref.framework, ref.name) == (kind, framework, name), arg
        assert kind_of(ref.to_dict()) is SOURCE_KINDS[kind]
    assert reference_runtime(resolve("digits_cnn").to_dict()) == "torch_eager"
    assert reference_runtime(resolve(f"{files}/graph.onnx").to_dict()) == "onnxruntime"
    assert reference_runtime(resolve(f"{files}/net.keras").to_dict()) == "keras"


@pytest.mark.parametrize("arg, message", [
    ("no_such_model", "unknown model 'no_such_model': the reference zoo has"),
    ("missing.onnx", "model file missing.onnx: no such file"),
    ("missing.keras", "model file missing.keras: no such file"),
    ("missing.py:build", "model file missing.py: no such file"),
    ("{tmp}/plain_dir", "not a TensorFlow SavedModel (no saved_model.pb in it)"),
    ("{tmp}/weights.pt", "expected a .py file written like a models/ zoo module"),
    ("a-b:build", "expected file.py:factory or package.module:factory"),
])
def test_arguments_that_name_nothing_usable(files, arg, message):
    with pytest.raises(ModelError) as e:
        resolve(arg.format(tmp=files))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_options_are_checked_against_the_kind(files):
    with pytest.raises(ModelError, match="--input applies to factories"):
        resolve("digits_cnn", inputs=[{"name": "x", "shape": [1], "dtype": "float32"}])
    with pytest.raises(ModelError, match="--input-range applies to factories and model files"):
        resolve("digits_cnn", input_ranges={"image": [0, 1]})
    with pytest.raises(ModelError, match="--weights applies to torch models"):
        resolve(f"{files}/graph.onnx", weights=str(files / "weights.pt"))
    with pytest.raises(ModelError, match="--weights nope.pt: no such file"):
        resolve("digits_cnn", weights="nope.pt")
    ref = resolve(f"{files}/my_model.py:build", inputs=[{"name": "x", "shape": ["batch"], "dtype": "float32"}],
                  input_ranges={"x": [0, 1]}, weights=str(files / "weights.pt"))
    assert ref.details["inputs"][0]["name"] == "x" and ref.details["input_ranges"] == {"x": [0, 1]}
    assert ref.details["weights"] == str((files / "weights.pt").resolve())
    assert resolve(f"{files}/graph.onnx", input_ranges={"ids": [0, 5]}).details["input_ranges"] == {"ids": [0, 5]}


def test_source_loadable_says_why_not(files):
    assert source_loadable(resolve("digits_cnn").to_dict()) is None
    gone = resolve(f"{files}/graph.onnx").to_dict()
    (files / "graph.onnx").unlink()
    assert source_loadable(gone) == f"model file {gone['ref']} is not on this machine"
    assert "not in this deploytool's zoo" in source_loadable({**resolve("digits_cnn").to_dict(), "ref": "gone"})
    with pytest.raises(ModelError, match="unknown source kind 'alien'"):
        kind_of({"kind": "alien"})

