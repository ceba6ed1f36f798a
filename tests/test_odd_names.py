"""Input and output names that are not identifiers (``input/ids:0``, ``1st input``, ``x.y`` beside ``x_y``):
every converter's renaming is decided where the artifact is made, recorded as the tensor's artifact name, and
mapped back, so every artifact is fed and read by the source's names (issue 22, item 4)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from deploytool.core.contract import Contract
from deploytool.formats import names_merged
from deploytool.formats.onnx import rename_io
from deploytool.formats.savedmodel import TF_NAME, renamed_note, tf_names

sys.path.insert(0, str(Path(__file__).parent / "models"))
import odd_names  # noqa: E402


def _contract(inputs: list[str], outputs: list[str]) -> Contract:
    specs = [{"name": n, "shape": ["batch", 3], "dtype": "float32"} for n in inputs + outputs]
    return Contract.from_dict({"inputs": specs[:len(inputs)], "outputs": specs[len(inputs):],
                               "dims": {"batch": {"example": 2}}})


def test_tf_names_are_tensorflows_spelling_and_never_shared():
    names = tf_names(_contract(odd_names.ONNX_INPUTS + ["class", "_x"], odd_names.ONNX_OUTPUTS))
    assert names["input/ids:0"] == "input_ids_0"
    assert names["1st input"] == "arg_1st_input"  # TensorFlow's own prefix: its sanitizer keeps the name
    assert names["x_y"] == "x_y" and names["x.y"] == "x_y_2"  # the name that is already valid keeps its spelling
    assert names["_x"] == "arg__x" and names["class"] == "class"
    assert names["2 probs"] == "arg_2_probs" and names["out/logits:0"] == "out_logits_0"
    assert len(set(names.values())) == len(names)
    assert all(TF_NAME.fullmatch(n) for n in names.values())


def test_tf_names_keep_valid_names():
    names = tf_names(_contract(["image", "meta"], ["score", "embedding"]))
    assert all(k == v for k, v in names.items())


def test_renamed_note_names_only_renamed_inputs():
    contract = _contract(["input/ids:0", "x"], ["y"])
    assert renamed_note(contract) is None
    contract.inputs[0].artifact_name, contract.inputs[1].artifact_name = "input_ids_0", "x"
    contract.outputs[0].artifact_name = "output_0"
    note = renamed_note(contract)
    assert note is not None and "'input/ids:0' -> 'input_ids_0'" in note and "'x'" not in note
    assert "output_0" not in note


def test_names_merged_refuses_two_tensors_under_one_name():
    contract = _contract(["x.y", "x_y"], ["out"])
    assert names_merged(contract) is None
    for spec in contract.inputs:
        spec.artifact_name = "x_y"
    merged = names_merged(contract)
    assert merged is not None and "'x.y' and 'x_y'" in merged and "inputs" in merged
    contract = _contract(["a"], ["o.1", "o_1"])
    contract.outputs[0].artifact_name = contract.outputs[1].artifact_name = "o_1"
    assert "outputs" in (names_merged(contract) or "")


def _run(model, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_rename_io_keeps_what_the_graph_computes(tmp_path):
    import onnx

    odd_names.write_onnx(tmp_path / "odd.onnx")
    model = onnx.load(str(tmp_path / "odd.onnx"))
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((2, s)).astype(np.float32) for n, s in zip(odd_names.ONNX_INPUTS, odd_names.SIZES)}
    before = _run(model, feeds)
    names = tf_names(_contract(odd_names.ONNX_INPUTS, odd_names.ONNX_OUTPUTS))
    rename_io(model.graph, names)
    onnx.checker.check_model(model, full_check=True)
    assert [v.name for v in model.graph.input] == [names[n] for n in odd_names.ONNX_INPUTS]
    assert [v.name for v in model.graph.output] == [names[n] for n in odd_names.ONNX_OUTPUTS]
    after = _run(model, {names[k]: v for k, v in feeds.items()})
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_rename_io_renames_inside_subgraphs():
    """An If branch reads the outer graph's input by name: renaming must reach it, or the graph is invalid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = helper.make_tensor_value_info
    then = helper.make_graph([helper.make_node("Neg", ["a/b:0"], ["t"])], "then", [],
                             [value("t", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Abs", ["a/b:0"], ["e"])], "else", [],
                              [value("e", TensorProto.FLOAT, [2])])
    graph = helper.make_graph([helper.make_node("If", ["cond"], ["y.0"], then_branch=then, else_branch=other)],
                              "g", [value("a/b:0", TensorProto.FLOAT, [2])], [value("y.0", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.array(True), "cond")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    rename_io(model.graph, {"a/b:0": "a_b_0", "y.0": "y_0"})
    onnx.checker.check_model(model, full_check=True)
    (y,) = _run(model, {"a_b_0": np.array([1.0, -2.0], np.float32)})
    np.testing.assert_array_equal(y, [-1.0, 2.0])


def _export(run_cli, tmp_path: Path, model: str, names: list[str]) -> tuple[Path, dict]:
    calib = tmp_path / "calib.npz"
    np.savez(calib, **odd_names.calibration(names))
    proc = run_cli("export", "--model", model, "--calib-data", calib, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bundle = next((tmp_path / "out").iterdir())
    return bundle, json.loads((bundle / "manifest.json").read_text())


def _assert_every_format_by_source_names(manifest: dict, inputs: list[str], outputs: list[str],
                                         made: set[str]) -> None:
    artifacts = manifest["artifacts"]
    assert {n for n, a in artifacts.items() if a["status"] == "ok"} == made
    for name in made:
        contract = artifacts[name]["contract"]
        assert [s["name"] for s in contract["inputs"]] == inputs, name
        assert [s["name"] for s in contract["outputs"]] == outputs, name
        for group in ("inputs", "outputs"):  # each tensor its own name in the artifact
            fed = [s.get("artifact_name", s["name"]) for s in contract[group]]
            assert len(set(fed)) == len(fed), (name, fed)
    for name in ("savedmodel", "tflite_fp32"):
        fed = [s["artifact_name"] for s in artifacts[name]["contract"]["inputs"]]
        assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in fed), fed
    assert any("'x.y' -> 'x_y_2'" in n for n in artifacts["savedmodel"]["notes"])


def _assert_all_pass(bundle: Path, outputs: list[str], formats: set[str]) -> None:
    from deploytool.targets import runtimes_of

    results = json.loads((bundle / "reports" / "validation.json").read_text())["targets"]
    results = {k: t for k, t in results.items() if t["format"] in formats}  # (from an ONNX file: no ExecuTorch)
    assert len(results) == sum(len(runtimes_of(f)) for f in formats)  # every runtime of each: OpenVINO, browser
    for key, target in results.items():
        assert target["status"] == "pass", (key, target.get("reason"))
        assert sorted(target["sets"]["main"]) == sorted(outputs), key  # keyed by the source's output names


ONNX_FORMATS = {"onnx", "onnx_int8", "openvino", "savedmodel", "tfjs", "tflite_dynamic", "tflite_fp16",
                "tflite_fp16_arith", "tflite_fp32", "tflite_int8"}
TORCH_FORMATS = ONNX_FORMATS | {"torchscript", "executorch", "executorch_int8"}


@pytest.mark.slow
def test_onnx_file_with_odd_names_exports_every_format(run_cli, tmp_path):
    odd_names.write_onnx(tmp_path / "odd.onnx")
    bundle, manifest = _export(run_cli, tmp_path, tmp_path / "odd.onnx", odd_names.ONNX_INPUTS)
    _assert_every_format_by_source_names(manifest, odd_names.ONNX_INPUTS, odd_names.ONNX_OUTPUTS, ONNX_FORMATS)
    _assert_all_pass(bundle, odd_names.ONNX_OUTPUTS, ONNX_FORMATS)
    proc = run_cli("validate", bundle)  # re-checked from the manifest alone, as on another machine
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_all_pass(bundle, odd_names.ONNX_OUTPUTS, ONNX_FORMATS)


@pytest.mark.slow
def test_torch_source_with_odd_names_exports_every_format(run_cli, tmp_path):
    bundle, manifest = _export(run_cli, tmp_path, Path(odd_names.__file__), odd_names.TORCH_INPUTS)
    _assert_every_format_by_source_names(manifest, odd_names.TORCH_INPUTS, odd_names.TORCH_OUTPUTS, TORCH_FORMATS)
    _assert_all_pass(bundle, odd_names.TORCH_OUTPUTS, TORCH_FORMATS)
