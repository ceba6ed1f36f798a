"""ONNX files with external data (issue 21, item 7): ``torch.onnx.export`` writes ``model.onnx`` and
``model.onnx.data`` by default. As a source, the data files are copied beside the ``onnx`` artifact,
hashed with it and verified before it is loaded; a missing one, or a location outside the model's
directory, is one line naming it. An ONNX artifact exported from torch over 2 GB keeps its data
file the same way (tested with the threshold forced to 0)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import error_lines, manifest_of

from deploytool.store import bundle


def _graph_model():
    """y = relu(x @ w + b), x [batch, 64] -> y [batch, 32]: weights large enough to be worth external data."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])], "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], initializer=[w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _save(path: Path, location: str | None = None) -> Path:
    """The model saved with every tensor in one external data file (``<name>.data`` unless ``location``)."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    location = location or f"{path.name}.data"
    (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_graph_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def _relocate(path: Path, location: str) -> None:
    """Rewrite where the file's tensors say their data is (a hostile or broken file)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
    onnx.save(model, str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- fast: the helpers -----------------------------------------------------------------------------

def test_external_data_names_the_files_and_refuses_locations_outside(tmp_path):

    assert bundle.onnx_external_data(_save(tmp_path / "a" / "m.onnx")) == ["m.onnx.data"]
    assert bundle.onnx_external_data(_save(tmp_path / "b" / "m.onnx", "weights/w.bin")) == ["weights/w.bin"]
    import onnx

    inline = tmp_path / "c" / "m.onnx"
    inline.parent.mkdir()
    onnx.save(_graph_model(), str(inline))
    assert bundle.onnx_external_data(inline) == []
    src = tmp_path / "a" / "m.onnx"
    for location, says in (("../../etc/passwd", "not a relative path inside the model's directory"),
                           ("/etc/passwd", "not a relative path inside the model's directory"),
                           ("./m.onnx.data", "not a relative path inside the model's directory"),
                           ("m.onnx", "is the model file itself"),
                           ("gone.data", "is missing: it must be beside the model file")):
        _relocate(src, location)
        with pytest.raises(ValueError) as e:
            bundle.onnx_external_data(src)
        assert says in str(e.value) and repr(location) in str(e.value) and "\n" not in str(e.value)
    _relocate(src, "link.data")
    (tmp_path / "a" / "link.data").symlink_to(tmp_path / "a" / "m.onnx.data")
    with pytest.raises(ValueError, match="is a symbolic link"):
        bundle.onnx_external_data(src)


def test_place_copies_the_data_beside_the_artifact_and_refuses_an_artifacts_name(tmp_path):
    from deploytool.formats import ExportContext
    from deploytool.formats import onnx as onnx_format

    src = _save(tmp_path / "src" / "m.onnx", "weights/w.bin")
    out = tmp_path / "artifacts" / "m.onnx"
    ctx = ExportContext(model_name="m", contract=None, out_path=out, workdir=tmp_path / "work")
    assert onnx_format._place(src, ctx, move=False) == ["weights/w.bin"]
    assert (out.parent / "weights/w.bin").read_bytes() == (src.parent / "weights/w.bin").read_bytes()
    records = bundle.file_records(tmp_path, out, ["weights/w.bin"])
    assert [r.path for r in records] == ["artifacts/m.onnx", "artifacts/weights/w.bin"]
    assert records[1].sha256 == _sha256(src.parent / "weights/w.bin")
    onnx_format._remove_sidecars(ctx, ["weights/w.bin"])
    assert not (out.parent / "weights").exists()

    clash = _save(tmp_path / "clash" / "m.onnx", "m_int8.onnx")  # the onnx_int8 artifact's name
    out.unlink()
    with pytest.raises(RuntimeError, match="would take the place of an artifact"):
        onnx_format._place(clash, ctx, move=False)
    assert sorted(p.name for p in out.parent.iterdir()) == []
    with pytest.raises(Exception, match="not a normalised relative path"):
        bundle.file_records(tmp_path, out.parent / "x", ["../escape"])


@pytest.mark.slow
def test_an_onnx_export_over_2gb_keeps_its_data_file_beside_it(tmp_path, monkeypatch):
    """The >2 GB path of the torch route, with the threshold forced to 0: torch writes m.onnx.data, and it
    ends up beside the artifact and listed for export to hash."""
    import onnxruntime as ort
    import torch

    from deploytool.core.contract import Contract
    from deploytool.formats import ExportContext
    from deploytool.formats import onnx as onnx_format

    monkeypatch.setattr(onnx_format, "TWO_GB", 0)
    contract = Contract.from_dict({"inputs": [{"name": "x", "shape": ["batch", 64], "dtype": "float32"}],
                                   "outputs": [{"name": "y", "shape": ["batch", 32], "dtype": "float32"}],
                                   "dims": {"batch": {"example": 2, "alt": 3}}})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()).eval()
    out = tmp_path / "artifacts" / "m.onnx"
    out.parent.mkdir()
    x = torch.rand(2, 64)
    ctx = ExportContext(model_name="m", contract=contract, out_path=out, workdir=tmp_path / "work", model=model,
                        example_inputs=(x,))
    result = onnx_format.from_torch(ctx)
    assert result.options["external_data"] is True and result.options[bundle.SIDECARS] == ["m.onnx.data"]
    assert bundle.onnx_external_data(out) == ["m.onnx.data"] and (out.parent / "m.onnx.data").stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx", "m.onnx.data"]
    [y] = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(y, model(x).detach().numpy(), atol=1e-6)


# ---- through the CLI -------------------------------------------------------------------------------

def test_an_onnx_source_with_external_data_exports_and_validates(run_cli, tmp_path):
    src = _save(tmp_path / "src" / "ext.onnx")
    out = tmp_path / "out"
    proc = run_cli("export", "--model", src, "--out", out, "-f", "onnx,savedmodel")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    b = out / "ext"
    art = manifest_of(b)["artifacts"]
    assert art["savedmodel"]["status"] == "ok", art["savedmodel"]
    onnx_rec = art["onnx"]
    assert onnx_rec["path"] == "artifacts/ext.onnx"
    assert onnx_rec["files"] == [
        {"path": "artifacts/ext.onnx", "sha256": _sha256(src), "size": src.stat().st_size},
        {"path": "artifacts/ext.onnx.data", "sha256": _sha256(src.parent / "ext.onnx.data"),
         "size": (src.parent / "ext.onnx.data").stat().st_size}]
    assert onnx_rec["exporter"]["options"][bundle.SIDECARS] == ["ext.onnx.data"]
    assert onnx_rec["size_bytes"] == sum(f["size"] for f in onnx_rec["files"])
    assert (b / "artifacts/ext.onnx").read_bytes() == src.read_bytes()
    assert (b / "artifacts/ext.onnx.data").read_bytes() == (src.parent / "ext.onnx.data").read_bytes()
    proc = run_cli("validate", b, "--reports", tmp_path / "reports")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # a changed data file is refused before the artifact is loaded, naming the file
    data = b / "artifacts/ext.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))
    proc = run_cli("validate", b, "--reports", tmp_path / "reports2", "-f", "onnx")
    assert proc.returncode == 8, proc.stdout + proc.stderr
    assert "artifacts/ext.onnx.data does not match its sha256" in proc.stdout + proc.stderr


def test_a_missing_external_data_file_is_one_line_naming_it(run_cli, tmp_path):
    src = _save(tmp_path / "src" / "ext.onnx")
    (src.parent / "ext.onnx.data").unlink()
    out = tmp_path / "out"
    proc = run_cli("export", "--model", src, "--out", out, "-f", "onnx")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "external data file 'ext.onnx.data'" in lines[0] and "is missing" in lines[0], lines
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd"])
def test_an_external_data_location_outside_the_models_directory_is_refused(run_cli, tmp_path, location):
    src = _save(tmp_path / "src" / "ext.onnx")
    _relocate(src, location)
    out = tmp_path / "out"
    proc = run_cli("export", "--model", src, "--out", out, "-f", "onnx")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"external data file {location!r}" in lines[0] and "(refused)" in lines[0], lines
    assert not out.exists() or not any(out.iterdir())
