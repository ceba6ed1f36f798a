"""The ``tfjs_wasm`` runtime: TensorFlow.js graph models on TensorFlow.js's wasm backend in real headless Chromium.

Everything runs for real: the set-up step installs the npm packages and the converter's ``tfjs`` environment once
where absent, digits_cnn is exported once with ``-f tfjs`` and validate/bench run it through the CLI (the helpers
that find Chromium's processes are tests/test_onnxruntime_web.py's).
Two small graph models are written by hand (``model.json`` + one weight shard, as the converter writes them) to drive
what digits_cnn does not: two inputs and two outputs named by the signature, int64 in and out, control flow.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import result_of
from faults import rehash
from test_onnxruntime_web import (
    FAST,
    _chromiums,
    _cli,
    _copy,
    assert_chromium_ends_with_its_worker_and_cli,
    assert_timed_in_the_page,
    needs_chromium,
)

from deploytool import envs
from deploytool.browser import npm
from deploytool.runtimes import RUNTIMES
from deploytool.runtimes.tfjs_wasm import BACKEND, PACKAGE, as_tfjs

TFJS = RUNTIMES["tfjs_wasm"]


@pytest.fixture(scope="module")
def npm_packages() -> None:
    """The set-up step's npm part, where the packages are not installed yet (CI's README command did it)."""
    from deploytool.commands import setup

    setup.run(skip=(*envs.ENVS, "aarch64"))


@pytest.fixture(scope="module")
def tfjs_env(cli_env, tmp_path_factory) -> dict:
    """The CLI's environment with a $TMPDIR of its own (every Chromium it starts has its profile in there), after
    the whole set-up step: the npm packages and the converter's environment."""
    from deploytool.commands import setup

    setup.run()
    return {**cli_env, "TMPDIR": str(tmp_path_factory.mktemp("tfjs_tmp"))}


@pytest.fixture(scope="module")
def tfjs_bundle(tfjs_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfjs_bundle")
    proc = _cli(tfjs_env, "export", "--model", "digits_cnn", "-f", "tfjs", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "digits_cnn"


# --- hand-written graph models -----------------------------------------------------------------------------------

def _node(name: str, op: str, inputs: tuple[str, ...] | list[str] = (), **attr) -> dict:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _type(dt: str) -> dict:
    return {"type": dt}


def _placeholder(name: str, dt: str, dims: list[int]) -> dict:
    return _node(name, "Placeholder", dtype=_type(dt), shape={"shape": {"dim": [{"size": str(d)} for d in dims]}})


def _const(name: str, value: np.ndarray) -> dict:
    dt = {"float32": "DT_FLOAT", "int32": "DT_INT32"}[value.dtype.name]
    return _node(name, "Const", dtype=_type(dt), value={"tensor": {"dtype": dt}})


def _graph_model(folder: Path, nodes: list[dict], weights: dict[str, np.ndarray], signature: dict) -> Path:
    """``model.json`` + ``group1-shard1of1.bin`` in ``folder``, laid out as tensorflowjs_converter writes them."""
    folder.mkdir()
    consts = [_const(name, w) for name, w in weights.items()]
    (folder / "group1-shard1of1.bin").write_bytes(b"".join(w.astype(w.dtype.newbyteorder("<")).tobytes()
                                                          for w in weights.values()))
    manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [{"name": n, "shape": list(w.shape),
                                                                   "dtype": w.dtype.name} for n, w in weights.items()]}]
    model = {"format": "graph-model", "generatedBy": "2.21.0", "convertedBy": "TensorFlow.js Converter v4.22.0",
             "signature": signature, "modelTopology": {"node": consts + nodes, "library": {}, "versions": {}},
             "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(model))
    return folder


def _sig(dt: str, dims: list[int], tensor: str) -> dict:
    return {"name": tensor, "dtype": dt, "tensorShape": {"dim": [{"size": str(d)} for d in dims]}}


W = np.arange(15, dtype=np.float32).reshape(3, 5) / 10
E = np.arange(50, dtype=np.float32).reshape(10, 5) / 7


def _two_in_two_out(folder: Path) -> Path:
    """score = x @ W + sum(E[ids], 1) (float32), best = argmax(score) as int64; inputs x float32, ids int64."""
    nodes = [_placeholder("x", "DT_FLOAT", [-1, 3]), _placeholder("ids", "DT_INT64", [-1, 4]),
             _node("mm", "MatMul", ["x", "W"], T=_type("DT_FLOAT")),
             _node("gather", "GatherV2", ["E", "ids", "zero"], Tindices=_type("DT_INT64"), Tparams=_type("DT_FLOAT")),
             _node("sum", "Sum", ["gather", "one"], T=_type("DT_FLOAT"), keep_dims={"b": False}),
             _node("add", "AddV2", ["mm", "sum"], T=_type("DT_FLOAT")),
             _node("argmax", "ArgMax", ["add", "one"], T=_type("DT_FLOAT"), output_type=_type("DT_INT64")),
             _node("Identity", "Identity", ["argmax"], T=_type("DT_INT64")),
             _node("Identity_1", "Identity", ["add"], T=_type("DT_FLOAT"))]
    signature = {"inputs": {"ids": _sig("DT_INT64", [-1, 4], "ids:0"), "x": _sig("DT_FLOAT", [-1, 3], "x:0")},
                 "outputs": {"score": _sig("DT_FLOAT", [-1, 5], "Identity_1:0"),
                             "best": _sig("DT_INT64", [-1], "Identity:0")}}
    weights = {"W": W, "E": E, "zero": np.array(0, np.int32), "one": np.array(1, np.int32)}
    return _graph_model(folder, nodes, weights, signature)


def _dynamic(folder: Path) -> Path:
    """where = the coordinates of x's positive elements: a dynamic op, which only ``executeAsync`` runs."""
    nodes = [_placeholder("x", "DT_FLOAT", [-1, 3]), _node("pos", "Greater", ["x", "zero"], T=_type("DT_FLOAT")),
             _node("where", "Where", ["pos"], T=_type("DT_BOOL")),
             _node("Identity", "Identity", ["where"], T=_type("DT_INT64"))]
    signature = {"inputs": {"x": _sig("DT_FLOAT", [-1, 3], "x:0")},
                 "outputs": {"where": _sig("DT_INT64", [-1, 2], "Identity:0")}}
    return _graph_model(folder, nodes, {"zero": np.array(0, np.float32)}, signature)


# --- fast: no browser ---------------------------------------------------------------------------------------------

def test_tfjs_and_its_wasm_backend_are_pinned_as_one_release():
    pins = npm.pins()
    assert pins[PACKAGE] == pins[BACKEND], "the wasm backend must be the release of the tfjs it registers with"
    lock = json.loads((Path(npm.__file__).with_name("package-lock.json")).read_text())["packages"]
    for name in (PACKAGE, BACKEND, "@tensorflow/tfjs-core", "@tensorflow/tfjs-converter"):
        assert lock[f"node_modules/{name}"]["version"] == pins[PACKAGE], name
        assert lock[f"node_modules/{name}"]["integrity"].startswith("sha512-"), name


def test_without_the_npm_packages_the_runtime_says_to_run_setup(tmp_path, monkeypatch):
    monkeypatch.setenv(npm.CACHE_ENV, str(tmp_path))
    missing = [m.name for m in TFJS.missing() if m.name.endswith("(npm)")]
    assert missing == [f"{PACKAGE} {npm.pins()[PACKAGE]} (npm)", f"{BACKEND} {npm.pins()[BACKEND]} (npm)"]
    assert "run `deploytool setup`" in TFJS.unavailable()
    assert TFJS.version().startswith(f"{npm.pins()[PACKAGE]} (") and TFJS.version().endswith(", wasm)")


def test_integers_go_in_as_int32_and_a_value_beyond_int32_is_refused():
    got = as_tfjs({"ids": np.array([[-(2**31), 2**31 - 1]], np.int64), "x": np.ones(2, np.float64),
                   "mask": np.array([True]), "u8": np.array([255], np.uint8), "f": np.ones(1, np.float32)})
    assert {k: v.dtype.name for k, v in got.items()} == {"ids": "int32", "x": "float32", "mask": "bool",
                                                         "u8": "int32", "f": "float32"}
    assert got["ids"].tolist() == [[-(2**31), 2**31 - 1]] and got["u8"].tolist() == [255]
    for value in (2**31, -(2**31) - 1):
        with pytest.raises(ValueError, match=r"input 'ids' \(int64\) holds .*TensorFlow.js computes integers in int32"):
            as_tfjs({"ids": np.array([0, value], np.int64)})
    with pytest.raises(ValueError, match="holds 0..18446744073709551615"):
        as_tfjs({"ids": np.array([0, 2**64 - 1], np.uint64)})


# --- in a browser, in-process -------------------------------------------------------------------------------------

@needs_chromium
@pytest.mark.slow
def test_two_inputs_and_outputs_are_fed_and_read_by_signature_key_int64_as_int32(npm_packages, tmp_path):
    session = TFJS.load(_two_in_two_out(tmp_path / "model"), {"threads": 1})
    try:
        assert TFJS.describe(session) == {
            "inputs": [{"name": "ids", "dtype": "int32", "shape": [None, 4]},  # the dtypes TF.js computes in
                       {"name": "x", "dtype": "float32", "shape": [None, 3]}],
            "outputs": [{"name": "score", "dtype": "float32", "shape": [None, 5]},
                        {"name": "best", "dtype": "int32", "shape": [None]}], "ordered": False}
        settings = TFJS.reported_settings(session)
        assert settings["threads"] == 1 and settings["cross_origin_isolated"] is True
        x = np.array([[1, -2, 3], [0.5, 0, -1]], np.float32)
        ids = np.array([[1, 2, 3, 4], [9, 0, 0, 5]], np.int64)
        numtensors = session.page.evaluate("tf.memory().numTensors")
        got = TFJS.run(session, {"x": x, "ids": ids})
        score = x @ W + E[ids].sum(axis=1)
        assert sorted(got) == ["best", "score"] and got["score"].dtype == np.float32
        np.testing.assert_allclose(got["score"], score, rtol=1e-6, atol=1e-5)
        assert got["best"].dtype == np.int32 and got["best"].tolist() == score.argmax(1).tolist()  # as tfjs has it
        with pytest.raises(ValueError, match="int32"):
            TFJS.run(session, {"x": x, "ids": ids + 2**40})
        from deploytool.measuring import timing

        timed = TFJS.time(session, [{"x": x, "ids": ids}], timing.Protocol(min_runs=50, min_time=0.1, warmup_time=0.1))
        assert len(timed.samples_ns) >= 50 and min(timed.samples_ns) > 0
        assert session.page.evaluate("tf.memory().numTensors") == numtensors  # every call disposed what it made
    finally:
        session.closer()


@needs_chromium
@pytest.mark.slow
def test_a_graph_with_a_dynamic_op_runs_through_execute_async(npm_packages, tmp_path):
    session = TFJS.load(_dynamic(tmp_path / "model"), {})
    try:
        x = np.array([[1, -2, 3], [-0.5, 0, 4]], np.float32)
        for _ in range(2):  # the first call finds out, the second goes straight to executeAsync
            got = TFJS.run(session, {"x": x})
            assert got["where"].tolist() == np.argwhere(x > 0).tolist()
    finally:
        session.closer()


# --- through the CLI, on an exported bundle -----------------------------------------------------------------------

def _scale_tfjs_weight(bundle: Path) -> None:
    """The largest float32 weight in the tfjs artifact's shard times 1.5, the manifest's hashes updated."""
    m = json.loads((bundle / "manifest.json").read_text())
    folder = bundle / m["artifacts"]["tfjs"]["path"]
    (group,) = json.loads((folder / "model.json").read_text())["weightsManifest"]
    offset, spans = 0, []
    for w in group["weights"]:
        size = int(np.prod(w["shape"], dtype=np.int64)) * np.dtype(w["dtype"]).itemsize
        spans.append((size, offset, w["dtype"]))
        offset += size
    size, start, dtype = max(s for s in spans if s[2] == "float32")
    (shard,) = group["paths"]
    data = bytearray((folder / shard).read_bytes())
    values = np.frombuffer(bytes(data[start:start + size]), "<f4") * 1.5
    data[start:start + size] = values.astype("<f4").tobytes()
    (folder / shard).write_bytes(bytes(data))
    rehash(bundle)


@pytest.mark.slow
@needs_chromium
def test_validate_on_tfjs_wasm_passes_the_tfjs_artifact(tfjs_bundle, tfjs_env, tmp_path):
    bundle = _copy(tfjs_bundle, tmp_path)
    proc = _cli(tfjs_env, "validate", bundle, "-f", "tfjs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "tfjs", "tfjs_wasm")
    assert res["status"] == "pass" and res["max_abs"] < 1e-4, res
    assert res["runtime_version"].startswith(f"{npm.pins()[PACKAGE]} (Chromium ")
    assert res["settings"]["cross_origin_isolated"] is True and res["settings"]["simd"] is True
    assert not _chromiums(tfjs_env["TMPDIR"])


@pytest.mark.slow
@needs_chromium
def test_an_int64_decision_output_passes_computed_in_int32(tfjs_env, tmp_path):
    """argmax_head's class id: int64 in the source, int32 in TF.js, widened back losslessly and compared exactly."""
    from conftest import TEST_MODELS

    proc = _cli(tfjs_env, "export", "--model", TEST_MODELS / "argmax_head.py", "-f", "tfjs", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((tmp_path / "argmax_head" / "manifest.json").read_text())
    tfjs = m["artifacts"]["tfjs"]
    assert "label: computed in int32 (TensorFlow.js has no int64)" in tfjs["notes"]
    assert {s["name"]: s.get("artifact_dtype") for s in tfjs["contract"]["outputs"]} == {"logits": "float32",
                                                                                         "label": "int32"}
    assert tfjs["checks"]["tfjs@tfjs_wasm"]["status"] == "pass"


@pytest.mark.slow
@needs_chromium
def test_a_planted_weight_change_in_the_shard_fails_on_tfjs_wasm(tfjs_bundle, tfjs_env, tmp_path):
    bundle = _copy(tfjs_bundle, tmp_path)
    _scale_tfjs_weight(bundle)
    proc = _cli(tfjs_env, "validate", bundle, "-f", "tfjs", "--runtime", "tfjs_wasm")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "tfjs", "tfjs_wasm")
    assert res["status"] == "fail" and res["max_abs"] > 0.1, res


@pytest.mark.slow
@needs_chromium
def test_bench_times_tfjs_wasm_in_the_page_beside_tensorflow(tfjs_bundle, tfjs_env, tmp_path):
    bundle = _copy(tfjs_bundle, tmp_path)
    proc = _cli(tfjs_env, "bench", bundle, "-f", "savedmodel,tfjs", "--threads", "1", "--no-source", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["runtime"]: r for r in json.loads((bundle / "reports/bench.json").read_text())["rows"]}
    web = rows["tfjs_wasm"]
    assert_timed_in_the_page(web)
    print(f"p50 tensorflow {rows['tensorflow']['p50_ms']:.4f} ms, tfjs_wasm {web['p50_ms']:.4f} ms")
    assert not _chromiums(tfjs_env["TMPDIR"])


@pytest.mark.slow
@needs_chromium
def test_chromium_ends_when_its_worker_is_killed_and_when_the_cli_is_terminated(tfjs_bundle, tfjs_env, tmp_path):
    assert_chromium_ends_with_its_worker_and_cli(tfjs_env, _copy(tfjs_bundle, tmp_path), tmp_path, "tfjs", "tfjs_wasm")


def test_tfjs_dtypes_narrow_feeds_without_wrapping_and_widen_integer_outputs_back():
    """The tfjs artifact's contract records the dtypes TF.js computes in; feeds are narrowed only where every value
    fits, and an int32 output it declares is widened back to the source's int64 losslessly (argmax ids pass)."""
    from deploytool.core.contract import Contract, from_artifact, to_artifact
    from deploytool.formats.tfjs import tfjs_dtypes

    contract = Contract.from_dict({
        "inputs": [{"name": "ids", "shape": ["batch", 2], "dtype": "int64"},
                   {"name": "x", "shape": ["batch", 2], "dtype": "float64"}],
        "outputs": [{"name": "best", "shape": ["batch"], "dtype": "int64"},
                    {"name": "y", "shape": ["batch"], "dtype": "float32"}], "dims": {"batch": {"example": 2}}})
    undeclared = Contract.from_dict(contract.to_dict())
    assert tfjs_dtypes(contract) == [("ids", "int64", "int32"), ("x", "float64", "float32"), ("best", "int64", "int32")]
    feeds = to_artifact(contract, {"ids": np.array([[1, 2], [3, 4]]), "x": np.zeros((2, 2))})
    assert feeds["ids"].dtype == np.int32 and feeds["x"].dtype == np.float32
    with pytest.raises(ValueError, match=r"input 'ids' holds 0\.\.4294967296; the artifact takes it as int32"):
        to_artifact(contract, {"ids": np.array([[0, 2**32]]), "x": np.zeros((1, 2))})
    got = {"best": np.array([1, 0], np.int32), "y": np.ones(2, np.float32)}
    assert from_artifact(contract, got)["best"].dtype == np.int64
    assert from_artifact(undeclared, got)["best"].dtype == np.int32  # undeclared: as it came (judge fails it)
