"""Artifacts in their runtime's inference-optimized form: TorchScript frozen at export and
optimized at load (with a fallback where freezing is rejected), and the model's FLOPs per sample in
the manifest (bench's GFLOP/s and % of peak are tested in test_bench.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TEST_MODELS, manifest_of

from deploytool.core import npz
from deploytool.sources.zoo import zoo_names
from deploytool.store import manifest as M

ZOO = zoo_names()


def _saved_module(bundle):
    import torch

    return torch.jit.load(str(bundle / manifest_of(bundle)["artifacts"]["torchscript"]["path"]), map_location="cpu")


@pytest.mark.parametrize("model", ZOO)
def test_torchscript_artifact_is_frozen_optimized_at_load_and_passes_both_shapes(zoo_bundles, model):
    from deploytool.runtimes import RUNTIMES

    bundle, _ = zoo_bundles[model]
    m = manifest_of(bundle)
    rec = m["artifacts"]["torchscript"]
    options = rec["exporter"]["options"]
    assert options["frozen"] is True, rec["notes"]
    # Optimized at load unless export measured it clearly slower here (tiny convolutions), which a note says.
    timing = options["optimize_timing"]
    assert timing["plain_ms"] > 0 and timing["optimized_ms"] > 0
    if options["load_settings"] != {"optimize_for_inference": True}:
        assert options["load_settings"] == {"optimize_for_inference": False}
        assert any("made it slower here" in n for n in rec["notes"]), rec["notes"]
        assert timing["optimized_ms"] > 1.2 * timing["plain_ms"]
    saved = _saved_module(bundle)
    # Frozen: no parameters, attributes or submodules left; the weights are constants of the graph.
    assert list(saved.parameters()) == [] and list(saved.named_children()) == [] and list(saved.buffers()) == []
    constants = [n for n in saved.graph.nodes() if n.kind() == "prim::Constant"
                 and n.output().type().kind() == "TensorType"]
    assert constants and not [n for n in saved.graph.nodes() if n.kind() == "prim::GetAttr"]
    # Checked at both shapes: the alt set ran wherever the contract has dynamic dims, and passed.
    assert rec["check"]["status"] == "pass" and rec["check"]["skipped_sets"] == {}
    if m["contract"]["dims"]:
        assert set(rec["golden_outputs"]) >= {"main", "alt"}
    # The runtime loads it as the manifest says, and optimizes it at load when told to; either way
    # it computes the stored outputs.
    rt = RUNTIMES["torchscript"]
    as_recorded = rt.load(bundle / rec["path"], M.read(bundle).artifacts["torchscript"].load_settings())
    assert rt.settings(as_recorded)["optimize_for_inference"] is options["load_settings"]["optimize_for_inference"]
    session = rt.load(bundle / rec["path"], {"optimize_for_inference": True})
    assert rt.settings(session)["optimize_for_inference"] is True
    assert session.module.graph.str() != saved.graph.str()  # what optimize_for_inference rewrote
    inputs = npz.load(bundle / m["golden"]["sets"]["main"]["inputs"])
    ref = npz.load(bundle / m["golden"]["sets"]["main"]["reference"])
    got = rt.run(session, {k: v[0] for k, v in inputs.items()})
    for i, name in enumerate(ref):
        np.testing.assert_allclose(got[f"output_{i}"], ref[name][0], atol=1e-4, rtol=1e-4)


def test_a_model_freezing_rejects_falls_back_to_traced_and_unoptimized(run_cli, tmp_path):
    proc = run_cli("export", "--model", TEST_MODELS / "unfreezable.py", "--formats", "torchscript", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = tmp_path / "unfreezable"
    rec = manifest_of(bundle)["artifacts"]["torchscript"]
    assert rec["check"]["status"] == "pass"
    assert rec["exporter"]["options"]["frozen"] is False
    assert rec["exporter"]["options"]["load_settings"] == {"optimize_for_inference": False}
    assert any("not frozen" in n and "prim::ModuleContainerIndex" in n for n in rec["notes"]), rec["notes"]
    assert any(n.startswith("not optimized at load: torch.jit.optimize_for_inference failed") for n in rec["notes"])
    assert list(_saved_module(bundle).named_children())  # saved as traced: its submodules are still there


def test_freezing_and_optimizing_can_be_turned_off_from_a_config_file(run_cli, tmp_path):
    config = tmp_path / "deploy.toml"
    config.write_text('[export]\nformats = ["torchscript"]\nfreeze = false\noptimize = false\n')
    proc = run_cli("export", "--model", "digits_cnn", "--config", config, "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = manifest_of(tmp_path / "digits_cnn")["artifacts"]["torchscript"]
    assert rec["exporter"]["options"]["frozen"] is False and rec["check"]["status"] == "pass"
    assert rec["exporter"]["options"]["load_settings"] == {"optimize_for_inference": False}
    assert list(_saved_module(tmp_path / "digits_cnn").parameters())


@pytest.mark.parametrize("model", ZOO)
def test_manifest_holds_flops_per_sample(zoo_bundles, model):
    bundle, _ = zoo_bundles[model]
    flops = M.read(bundle).flops
    assert flops is not None and flops.per_sample and flops.per_sample > 0, flops
    assert "FlopCounterMode" in flops.method
    main = manifest_of(bundle)["golden"]["sets"]["main"]["dims"]
    assert flops.dims == main
    if model == "mobilenet_v2":  # 300 M multiply-adds at 224x224
        assert 0.55e9 < flops.per_sample < 0.65e9


def test_a_manifest_without_flops_still_reads(zoo_bundles):
    data = json.loads((zoo_bundles["digits_cnn"][0] / "manifest.json").read_text())
    del data["flops"]
    assert M.load(data).flops is None


@pytest.mark.slow
def test_onnx_graph_count_matches_the_torch_count():
    import io

    import onnx
    import torch

    from deploytool.measuring.flops import onnx_flops, torch_flops
    from deploytool.models import mobilenet_v2, tiny_transformer

    for mod in (mobilenet_v2, tiny_transformer):
        model = mod.build().eval()
        sample = tuple(t[:1] for t in mod.example_inputs())
        buf = io.BytesIO()
        torch.onnx.export(model, sample, buf, dynamo=False)
        feeds = {"x": sample[0].numpy()}  # shapes are already fixed in this graph
        assert onnx_flops(onnx.load_from_string(buf.getvalue()), feeds) == pytest.approx(torch_flops(model, sample))


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.slow  # imports TensorFlow
def test_tensorflow_feeder_matches_tf_constant_on_any_array_and_keeps_results(tmp_path):
    """The TensorFlow runtime hands feeds over through its own aligned buffers (DLPack), not a fresh
    tf.constant per call: same outputs for arrays of any layout, the caller's arrays untouched, each
    buffer 64-byte aligned (TensorFlow aborts the process on a misaligned tensor) and reused while
    the shape holds, strings through tf.constant, and no result changed by a later call."""
    import tensorflow as tf

    from deploytool import tf_io
    from deploytool.core import buffers

    class Passthrough(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([None], tf.string),
                                      tf.TensorSpec([None], tf.int64)])
        def f(self, x, s, ids):
            return {"act": (tf.nn.relu(x) + 1.0) * 2.0, "same": x,
                    "scattered": tf.tensor_scatter_nd_update(x, [[0, 0]], [42.0]), "s": s, "ids": ids * 2}

    module = Passthrough()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f})
    fn = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    feeder = tf_io.Feeder()
    base = np.random.default_rng(0).standard_normal(80).astype(np.float32)
    arrays = {"aligned (passed as is)": buffers.aligned(base[1:33].reshape(4, 8)),
              "unaligned view": base[1:33].reshape(4, 8), "transposed": base[:32].reshape(8, 4).T,
              "read-only (aligned)": _read_only(buffers.aligned(base[:32].reshape(4, 8))),
              "big-endian": base[:32].reshape(4, 8).astype(">f4"), "other rows": base[:48].reshape(6, 8)}
    for what, x in arrays.items():
        before = np.array(x, np.float32)
        feeds = {"x": x, "s": np.array([b"a", b"bc"]), "ids": np.arange(3, dtype=np.int64)}
        got = tf_io.signature_call(fn, feeds, feeder)
        expected = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
        assert set(got) == set(expected)
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{what}: {k}")
        np.testing.assert_array_equal(np.asarray(x, np.float32), before, err_msg=f"{what}: the caller's array changed")
        assert all(b.ctypes.data % 64 == 0 for b in feeder._buffers.values())
        assert "s" not in feeder._buffers, "strings are not DLPack's: they go through tf.constant"
        if buffers.as_is(x) and x.flags.writeable:  # numpy exports no read-only buffer to DLPack: copied
            assert any(p is x for p in feeder._passed), f"{what}: copied, not passed as is"
            x[...] = 0  # the caller reuses its array: no result may change with it
            np.testing.assert_array_equal(got["same"], before, err_msg=f"{what}: a result aliases the input")
        else:
            assert "x" in feeder._buffers
            buffer = feeder._buffers["x"]
            tf_io.signature_call(fn, {**feeds, "x": before + 5}, feeder)  # same shape: the buffer is reused
            assert feeder._buffers["x"] is buffer
        tf_io.signature_call(fn, {**feeds, "x": before - 3}, feeder)
        np.testing.assert_array_equal(got["same"], before, err_msg=f"{what}: a later call changed an earlier result")


@pytest.mark.slow  # a fresh process: torch's inter-op thread count can be set once per process
def test_two_torch_artifacts_load_in_one_process_with_the_same_thread_settings(tmp_path):
    import subprocess
    import sys

    code = """
import sys, torch
from deploytool.runtimes import RUNTIMES
path = sys.argv[1]
torch.jit.save(torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.ones(1, 3)), path)
settings = {"threads": 1, "inter_op_threads": 1}
for _ in range(2):
    session = RUNTIMES["torchscript"].load(path, settings)
    RUNTIMES["torchscript"].run(session, {"x": torch.ones(1, 3).numpy()})
print("loaded twice", torch.get_num_interop_threads())
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded twice 1" in proc.stdout
