"""The first diverging op: matching a parent's intermediate tensors to a child's (pure, fast), and end to
end on a bundle whose SavedModel (or TFLite file) has one weight edited, hashes updated."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import flat, manifest_of, result_of

from deploytool.checking import parity
from deploytool.checking.localise import Node, input_dependent, locate, permutations, topological
from deploytool.core import errors

FP32 = parity.TIERS["fp32"]
rng = np.random.default_rng(0)


def _chain():
    """A small NCHW parent: conv -> relu -> pool -> flatten -> gemm, and its tensors."""
    nodes = [Node("node_conv", "Conv", ["x", "w"], ["conv"]), Node("node_relu", "Relu", ["conv"], ["relu"]),
             Node("node_pool", "MaxPool", ["relu"], ["pool"]), Node("node_flat", "Flatten", ["pool"], ["flat"]),
             Node("node_gemm", "Gemm", ["flat", "w2"], ["logits"])]
    conv = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    relu = np.maximum(conv, 0)
    pool = relu.reshape(1, 4, 3, 2, 3, 2).max(axis=(3, 5))
    flat = pool.reshape(1, -1)
    logits = flat @ rng.normal(size=(36, 5)).astype(np.float32)
    return nodes, {"conv": conv, "relu": relu, "pool": pool, "flat": flat, "logits": logits}


def _nhwc(t: dict) -> dict:
    """The child's view: NHWC, conv fused with relu (no pre-relu tensor), names of its own."""
    return {"fused/Relu;fused/conv": t["relu"].transpose(0, 2, 3, 1), "pool/MaxPool": t["pool"].transpose(0, 2, 3, 1),
            "flatten/Reshape": t["flat"], "PartitionedCall:0": t["logits"]}


def test_every_op_reproduced_is_not_localised_and_says_why():
    nodes, t = _chain()
    f = locate("onnx -> savedmodel", nodes, ["x"], t, _nhwc(t), FP32)
    assert not f.localised and f.matched == 4 and "every mappable tensor matches" in f.why
    assert f.text().startswith("could not localise: ")


def test_first_diverging_op_found_through_layout_and_fusion():
    nodes, t = _chain()
    child = _nhwc(t)
    child["pool/MaxPool"] = child["pool/MaxPool"] + np.float32(0.01)  # the pool computes differently ...
    child["flatten/Reshape"] = child["flatten/Reshape"] + np.float32(0.01)  # ... and everything after it
    child["PartitionedCall:0"] = child["PartitionedCall:0"] + np.float32(0.5)
    f = locate("onnx -> savedmodel", nodes, ["x"], t, child, FP32)
    # the fused-away "conv" has no counterpart but its consumer matches: not the divergence
    assert f.localised and (f.op_type, f.op_name, f.tensor) == ("MaxPool", "node_pool", "pool")
    assert f.child_tensor == "pool/MaxPool" and f.permutation == [0, 3, 1, 2]
    assert f.max_abs == pytest.approx(0.01, rel=1e-3)
    assert "first diverging op: MaxPool 'node_pool'" in f.text()


def test_divergence_in_the_last_op():
    nodes, t = _chain()
    child = _nhwc(t)
    child["PartitionedCall:0"] = child["PartitionedCall:0"] * np.float32(1.01)
    f = locate("h", nodes, ["x"], t, child, FP32)
    assert (f.op_type, f.op_name) == ("Gemm", "node_gemm")


def test_statistical_tier_tolerates_quantisation_noise_but_not_a_broken_op():
    nodes, t = _chain()
    int8 = parity.TIERS["int8"]
    child = {k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in _nhwc(t).items()}
    assert not locate("h", nodes, ["x"], t, child, int8).localised
    child["flatten/Reshape"] = -child["flatten/Reshape"]
    child["PartitionedCall:0"] = -child["PartitionedCall:0"]
    f = locate("h", nodes, ["x"], t, child, int8)
    assert f.localised and f.op_name == "node_flat" and f.cosine < 0


def test_unmappable_shapes_say_so():
    nodes, t = _chain()
    f = locate("h", nodes, ["x"], t, {"other": np.zeros((7, 11), np.float32)}, FP32)
    assert not f.localised and "no intermediate tensor of the parent maps" in f.why and f.unmapped == f.compared


def test_budgets_say_so():
    nodes, t = _chain()
    f = locate("h", nodes, ["x"], t, _nhwc(t), FP32, seconds=-1.0)
    assert not f.localised and "time budget exceeded" in f.why
    f = locate("h", nodes, ["x"], {"conv": t["conv"], "relu": t["relu"]}, _nhwc(t), FP32, exposed_all=False)
    assert not f.localised and f.why.startswith("budget exceeded")
    assert not locate("h", nodes, ["x"], {}, _nhwc(t), FP32).localised


def test_constants_are_not_compared_and_order_is_topological():
    nodes = [Node("b", "Relu", ["a"], ["b_out"]), Node("a", "Conv", ["x", "w"], ["a"]),
             Node("k", "Mul", ["w", "w"], ["k_out"])]
    assert [n.name for n in topological(nodes)] == ["a", "b", "k"]
    assert input_dependent(nodes, ["x"]) == ["a", "b_out"]  # k depends on weights only


def test_permutations_match_shapes_like_onnx2tf():
    assert permutations((1, 8, 8, 32), (1, 32, 8, 8)) == [(0, 3, 1, 2), (0, 3, 2, 1)]
    assert permutations((1, 512), (1, 512)) == [(0, 1)]
    assert permutations((1, 512), (1, 256)) == [] and permutations((2, 3), (6,)) == []


# ---- end to end --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_bundle(run_cli, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("localise")
    proc = run_cli("export", "--model", "digits_cnn", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "digits_cnn"


def _copy_edit(src: Path, dest: Path, rel: str, edit) -> Path:
    from deploytool.core import records
    from deploytool.store import bundle as B

    shutil.copytree(src, dest)
    path = dest / rel
    path.write_bytes(edit(path.read_bytes()))
    m = manifest_of(dest)
    for rec in m["artifacts"].values():  # the edited artifact's hashes, as a converter would have written them
        if rec.get("path") and rel.startswith(rec["path"]):
            rec["files"] = records.dump(B.file_records(dest, dest / rec["path"]))
    (dest / "manifest.json").write_text(json.dumps(m, indent=2))
    return dest


def _bump_bytes(value: np.ndarray, scale: float | None = None):
    """An edit that adds 0.5 to the middle element of ``value`` (or scales all of it), found by its
    bytes, which must be unique in the file."""
    def edit(raw: bytes) -> bytes:
        old = np.ascontiguousarray(value).tobytes()
        assert raw.count(old) == 1
        new = np.ascontiguousarray(value).copy()
        if scale is None:
            new.reshape(-1)[new.size // 2] += np.float32(0.5)
        else:
            new *= np.float32(scale)
        return raw.replace(old, new.tobytes())
    return edit


def _conv2_kernel(bundle: Path) -> np.ndarray:
    """The second conv's weight (ONNX ``features.2.weight``, [32, 16, 3, 3]) as TF keeps it: HWIO."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(bundle / "artifacts/digits_cnn.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return inits["features.2.weight"].transpose(2, 3, 1, 0)


@pytest.mark.slow
def test_savedmodel_with_one_weight_edited_is_localised_to_that_conv(digits_bundle, run_cli, tmp_path):
    bundle = _copy_edit(digits_bundle, tmp_path / "digits_cnn", "artifacts/digits_cnn_saved_model/saved_model.pb",
                        _bump_bytes(_conv2_kernel(digits_bundle)))
    proc = run_cli("validate", bundle, "-f", "onnx", "-f", "savedmodel")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert "[error appears at hop onnx -> savedmodel] [first diverging op: Conv 'node_conv2d_1' (output " \
           "'conv2d_1' vs PartitionedCall/model/tf." in flat(proc.stdout)
    report = json.loads((bundle / "reports/validation.json").read_text())
    found = result_of(report, "savedmodel")["first_diverging"]
    assert found["localised"] and (found["op_type"], found["op_name"]) == ("Conv", "node_conv2d_1")
    assert found["hop"] == "onnx -> savedmodel" and found["permutation"] == [0, 3, 1, 2] and found["max_abs"] > 0.1
    assert found["matched"] >= 2  # the first conv and its relu were reproduced
    repro = bundle / "reports/repro/savedmodel@tensorflow"
    assert json.loads((repro / "repro.json").read_text())["first_diverging"]["op_name"] == "node_conv2d_1"
    tensors = np.load(repro / "first_diverging.npz")
    assert tensors["onnx.conv2d_1"].shape == (1, 32, 8, 8) and tensors["input.image"].shape == (1, 1, 8, 8)


def _tflite_edited(digits_bundle: Path, dest: Path) -> Path:
    """The bundle with the second conv's kernel of its fp32 TFLite file scaled by 1.5 (hash updated)."""
    from ai_edge_litert.interpreter import Interpreter

    rel = "artifacts/digits_cnn_float32.tflite"
    interp = Interpreter(model_path=str(digits_bundle / rel))
    interp.allocate_tensors()
    kernel = next(interp.get_tensor(d["index"]) for d in interp.get_tensor_details()
                  if tuple(d["shape"]) == (32, 3, 3, 16))  # TFLite keeps conv kernels OHWI
    return _copy_edit(digits_bundle, dest, rel, _bump_bytes(kernel, 1.5))


@pytest.mark.slow
def test_tflite_with_one_weight_edited_is_localised_on_the_savedmodel_hop(digits_bundle, run_cli, tmp_path):
    bundle = _tflite_edited(digits_bundle, tmp_path / "digits_cnn")
    proc = run_cli("validate", bundle, "-f", "tflite_fp32", "-f", "savedmodel")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    found = result_of(json.loads((bundle / "reports/validation.json").read_text()), "tflite_fp32")["first_diverging"]
    assert found["hop"] == "savedmodel -> tflite_fp32" and found["localised"], found
    # TensorFlow's second Conv2D (TFLite fused it with its bias add and relu into one op)
    assert found["op_type"] == "Conv2D" and found["op_name"].endswith("model/tf.nn.convolution_1/convolution")
    assert "first diverging op: Conv2D " in flat(proc.stdout)


@pytest.mark.slow
def test_on_a_device_without_tensorflow_the_savedmodel_hop_says_why(digits_bundle, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import HERE

    bundle = _tflite_edited(digits_bundle, tmp_path / "digits_cnn")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "torch,tensorflow,tf_keras,onnx2tf"
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", "tflite_fp32"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    # the hop is still blamed (against the SavedModel's outputs stored at export), but not localised
    assert "[could not localise: runtime tensorflow (savedmodel) is not installed here (no tensorflow)]" \
        in flat(proc.stdout), proc.stdout


@pytest.mark.slow
def test_a_hop_from_the_torch_source_is_localised_to_its_module(digits_bundle, run_cli, tmp_path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(digits_bundle / "artifacts/digits_cnn.onnx")).graph
    inits = [numpy_helper.to_array(i) for i in graph.initializer]
    bundle = _copy_edit(digits_bundle, tmp_path / "digits_cnn", "artifacts/digits_cnn.onnx",
                        _bump_bytes(max(inits, key=lambda w: w.size), 1.5))
    proc = run_cli("validate", bundle, "-f", "onnx")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    # the largest initializer, the first Linear's weight, scaled: forward hooks on the torch modules find it
    assert "[error appears at hop source -> onnx] [first diverging op: Linear 'classifier.1' (output " \
           "'classifier.1' vs linear: " in flat(proc.stdout)
    found = result_of(json.loads((bundle / "reports/validation.json").read_text()), "onnx")["first_diverging"]
    assert found["localised"] and found["matched"] >= 4  # the convolutions, their ReLUs, the pool


def test_the_closest_counterpart_is_reported():
    """With zero tolerance even the right counterpart differs: it is still the one named, not the first
    tensor of the same shape (here the conv before its bias add)."""
    nodes = [Node("node_conv", "Conv", ["x", "w"], ["conv"])]
    conv = rng.normal(size=(1, 3, 4, 4)).astype(np.float32)
    child = {"conv2d/convolution": (conv - 0.3).transpose(0, 2, 3, 1),
             "add/Add": (conv + np.float32(1e-6)).transpose(0, 2, 3, 1)}
    f = locate("h", nodes, ["x"], {"conv": conv}, child, FP32.with_overrides(atol=0.0, rtol=0.0))
    assert f.localised and f.child_tensor == "add/Add" and f.max_abs < 1e-5


@pytest.mark.slow
def test_export_localises_its_failing_hop_too(run_cli, tmp_path):
    """export runs the same localisation after its check: with zero tolerance for the SavedModel, the
    first op TensorFlow computes differently from onnxruntime (by rounding) is the first convolution."""
    proc = run_cli("export", "--model", "digits_cnn", "--formats", "savedmodel", "--atol", "savedmodel=0",
                   "--rtol", "savedmodel=0", "--out", tmp_path)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert "[error appears at hop onnx -> savedmodel] [first diverging op: Conv 'node_conv2d' " in flat(proc.stdout)
    bundle = tmp_path / "digits_cnn"
    found = result_of(json.loads((bundle / "reports/validation.json").read_text()), "savedmodel")["first_diverging"]
    assert found["localised"] and found["child_tensor"].startswith("PartitionedCall/model/")
    assert 0 < found["max_abs"] < 1e-4  # within the fp32 tier: only a zero tolerance calls it a divergence
    assert "first diverging op" in manifest_of(bundle)["artifacts"]["savedmodel"]["check"]["reason"]
    assert (bundle / "reports/repro/savedmodel@tensorflow/first_diverging.npz").is_file()


def test_hops_that_cannot_be_localised_say_why_without_starting_a_worker(tmp_path):
    """The coordinator's decisions before any worker: a hop from the source, an artifact missing from the
    bundle; every failing artifact blamed at a hop gets that hop's finding."""
    from deploytool.checking.judge import ArtifactCheck
    from deploytool.commands.localising import localise_failures
    from deploytool.running.jobs import CheckStatus

    def failing(fmt: str, hop: str, hop_from: str, hop_to: str) -> ArtifactCheck:
        return ArtifactCheck(format=fmt, runtime="x", status=CheckStatus.FAIL, reason="logits: bad",
                             hop_blamed=hop, hop_from=hop_from, hop_to=hop_to)

    checks = {"onnx": failing("onnx", "source -> onnx", "source", "onnx@x"),
              "savedmodel": failing("savedmodel", "onnx -> savedmodel", "onnx@x", "savedmodel@x"),
              "tflite_fp32": failing("tflite_fp32", "onnx -> savedmodel (not checked in this run: x)", "onnx@x",
                                     "savedmodel@x"),
              "torchscript": ArtifactCheck(format="torchscript", runtime="torchscript", status=CheckStatus.PASS)}
    extras = localise_failures(checks, {}, tmp_path, [], None, tmp_path, tmp_path, 10.0)
    assert extras == {} and list(tmp_path.iterdir()) == []
    assert checks["onnx"].reason.endswith("[could not localise: the source model is not known]")
    for fmt in ("savedmodel", "tflite_fp32"):
        assert checks[fmt].first_diverging["hop"] == "onnx -> savedmodel"
        assert checks[fmt].reason.endswith("[could not localise: the onnx artifact is not in the bundle]")
    assert checks["torchscript"].first_diverging is None


def test_a_localisation_that_raises_leaves_the_failure_standing_with_why(tmp_path):
    """Localising is a diagnostic: whatever it raises (here a bundle from a deploytool that knows a source
    kind this one does not) is said in the finding; the check stays FAIL, the command goes on."""
    from deploytool.checking.judge import ArtifactCheck
    from deploytool.commands.localising import localise_failures
    from deploytool.core.contract import Contract
    from deploytool.running.jobs import CheckStatus

    chk = ArtifactCheck(format="onnx", runtime="onnxruntime", status=CheckStatus.FAIL, reason="logits: bad",
                        hop_blamed="source -> onnx", hop_from="source", hop_to="onnx@onnxruntime")
    contract = Contract.from_dict({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
                                   "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]})
    extras = localise_failures({"onnx": chk}, {}, tmp_path, [], None, tmp_path, tmp_path, 10.0,
                               source={"kind": "from_the_future"}, contract=contract)
    assert extras == {} and chk.status == CheckStatus.FAIL
    assert chk.first_diverging["localised"] is False
    assert chk.reason.startswith("logits: bad [could not localise: localising failed: ")
    assert "unknown source kind 'from_the_future'" in chk.reason


@pytest.mark.slow
def test_tensorflow_exposes_a_savedmodel_with_variables(tmp_path):
    """A SavedModel whose weights are variables (tiny_transformer's are; digits_cnn's are constants):
    the signature is frozen while the loaded model, which owns them, is alive."""
    import tensorflow as tf

    from deploytool.checking.localise import Limits
    from deploytool.expose import expose

    class M(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w) - 1.0)}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve})
    x = np.ones((1, 4), np.float32)
    got = expose("tensorflow", str(tmp_path / "sm"), {"x": x}, Limits())
    assert not got.truncated and got.inputs == ["x:0"]
    by_type = {n.op_type: n for n in got.nodes}
    matmul = got.tensors[by_type["MatMul"].outputs[0]]
    np.testing.assert_allclose(matmul, x @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10), rtol=1e-6)
    assert by_type["Relu"].outputs[0] in got.tensors


def test_the_expose_job_and_reply_round_trip_through_json():
    from deploytool.checking.localise import Limits
    from deploytool.core import records
    from deploytool.core.contract import Contract
    from deploytool.running import jobs

    contract = Contract.from_dict({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
                                   "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]})
    job = jobs.ExposeTensors(runtime="onnxruntime", artifact="a.onnx", contract=contract, inputs="in.npz",
                             out="out.npz", limits=Limits().to_dict())
    back, env = jobs.decode(json.loads(json.dumps(jobs.encode(job, "r.json", None, True))))
    assert back == job and env["mode"] == "expose"
    reply = jobs.TensorsExposed(status=jobs.RunStatus.OK, nodes=[{"name": "n", "op_type": "Relu", "inputs": ["x"],
                                                                  "outputs": ["y"]}], inputs=["x"], tensors="out.npz")
    assert jobs.read_reply(job, json.loads(json.dumps(records.dump(reply)))) == reply
    assert jobs.TensorsExposed.crashed("killed").status is jobs.RunStatus.CRASHED
