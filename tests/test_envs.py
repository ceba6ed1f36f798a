"""Workers in another Python environment (issue 23, item 4; ``deploytool/envs``): a stage whose packages cannot share
deploytool's own (the TF.js converter) runs the same worker under a venv deploytool creates from a lock it ships,
once, in its cache; the worker sees that venv's packages and deploytool's package, nothing else of deploytool's own
environment. Made for real here with an empty lock (``python -m venv``: seconds, nothing downloaded)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploytool import envs
from deploytool.commands import setup
from deploytool.core.errors import UsageError
from deploytool.formats import FORMATS
from deploytool.running import jobs
from deploytool.running.spawn import Worker


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(envs.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny(tmp_path, cache) -> envs.Env:
    lock = tmp_path / "tiny.txt"
    lock.write_text("# nothing: the worker needs numpy, so it fails to start, naming it\n")
    return envs.Env("tiny", "a test", (), requirements=lock)


def test_every_shipped_lock_pins_every_package_and_what_a_worker_needs():
    for env in envs.ENVS.values():
        lines = [ln.split("#")[0].strip() for ln in env.lock.read_text().splitlines()]
        lines = [ln for ln in lines if ln]
        assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", ln) for ln in lines), env.name
        pins = envs.pins(env)
        assert "numpy" in pins  # deploytool's worker imports it
        assert all(d in pins for d in env.recorded), env.name
    assert envs.pins(envs.ENVS["tfjs"])["tensorflowjs"] == "4.22.0"
    assert all(envs.for_stage(f.stage) is None or f.name == "tfjs" for f in FORMATS.values())
    assert envs.for_stage("tfjs") is envs.ENVS["tfjs"] and envs.for_stage("tensorflow") is None


def test_an_environment_not_created_starts_no_worker_and_says_to_run_setup(tiny, tmp_path):
    assert not tiny.installed() and tiny.versions() == {}
    with pytest.raises(envs.SetupError, match=r"the tiny Python environment \(a test\) is not set up: run `deploytool "
                                              r"setup`"):
        envs.worker_interpreter(tiny)
    worker = Worker(tmp_path / "w" / "base", tmp_path / "w" / "log", env=tiny).start()
    assert worker.proc is None
    reply = worker.run(jobs.LoadSource({"kind": "onnx", "path": "x.onnx", "name": "x", "framework": "onnx"}))
    assert not reply.ok and "run `deploytool setup`" in reply.error


def test_a_worker_runs_under_the_environment_and_sees_only_its_packages(tiny, cache, tmp_path):
    made = envs.ensure(tiny)
    assert made.install_s > 0 and tiny.installed() and made.folder.parent == cache / "envs"
    assert envs.ensure(tiny).install_s == 0.0  # made once, reused
    assert tiny.versions() == {"tiny/python": json.loads((made.folder / envs.READY).read_text())["python"]}
    python, extra = envs.worker_interpreter(tiny)
    assert python == str(tiny.python())
    links = Path(extra["PYTHONPATH"])  # deploytool's package, and nothing else of its environment
    assert [p.name for p in links.iterdir()] == ["deploytool"]
    assert (links / "deploytool").resolve() == Path(envs.__file__).resolve().parent.parent
    log = tmp_path / "w" / "log"
    worker = Worker(tmp_path / "w" / "base", log, env=tiny).start()
    assert worker.proc is not None and worker.proc.args[0] == str(tiny.python())
    reply = worker.run(jobs.LoadSource({"kind": "onnx", "path": "x.onnx", "name": "x", "framework": "onnx"}),
                       timeout=120)
    # numpy is in deploytool's own environment, not in this one: the worker cannot see it
    assert not reply.ok and "No module named 'numpy'" in log.read_text()


def test_a_changed_lock_is_another_environment(tiny):
    before = tiny.folder()
    tiny.lock.write_text("numpy==2.1.3\n")
    assert tiny.folder() != before and tiny.folder().name.startswith("tiny-")


def test_setup_skip_names_what_it_installs():
    assert setup.parts() == ["npm", *envs.ENVS, "aarch64"]
    with pytest.raises(UsageError, match="--skip nope: setup installs npm, tfjs, aarch64"):
        setup.run(skip=("nope",))


@pytest.mark.slow
def test_tfjs_is_converted_in_its_environment_and_recorded(run_cli, cli_env, tmp_path):
    """The converter ran under TensorFlow 2.19 (the worker says so) while deploytool's own has another, and the
    manifest records the environment's versions; without the environment the format fails, saying to run setup,
    and the other formats are still made."""
    if not envs.ENVS["tfjs"].installed():
        pytest.skip("the tfjs environment is not created here: run `deploytool setup`")
    proc = run_cli("export", "--model", "multi_io", "-f", "tfjs", "--out", tmp_path / "b")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    m = json.loads(next((tmp_path / "b").iterdir()).joinpath("manifest.json").read_text())
    pins = envs.pins(envs.ENVS["tfjs"])
    assert m["artifacts"]["tfjs"]["exporter"]["version"] == f"tensorflowjs 4.22.0, tensorflow {pins['tensorflow']}"
    assert m["versions"]["tfjs/tensorflow"] == pins["tensorflow"] != m["versions"]["tensorflow"]
    assert m["versions"]["tfjs/tensorflowjs"] == "4.22.0"
    # multi_io's Tanh after a Dense: fused by the converter, split out for the wasm backend, and it passes there
    assert any("split out of fused nodes" in n and "Tanh" in n for n in m["artifacts"]["tfjs"]["notes"])
    assert m["artifacts"]["tfjs"]["checks"]["tfjs@tfjs_wasm"]["status"] == "pass"

    empty = {**cli_env, envs.CACHE_ENV: str(tmp_path / "empty-cache")}
    proc = subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "multi_io", "-f", "tfjs", "--out",
                           str(tmp_path / "c")], capture_output=True, text=True, env=empty, timeout=900)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "multi_io/tfjs: export failed: exporter needs the tfjs Python environment" in proc.stderr
    assert "run `deploytool setup`" in proc.stderr
    m = json.loads(next((tmp_path / "c").iterdir()).joinpath("manifest.json").read_text())
    assert m["artifacts"]["savedmodel"]["status"] == "ok" and m["artifacts"]["tfjs"]["status"] == "failed"
    assert not any(k.startswith("tfjs/") for k in m["versions"])


def test_what_wasm_cannot_run_fused_is_split_out(tmp_path):
    """An activation tfjs-backend-wasm has no fused kernel for (Tanh), and a MatMul "bias" that is not a vector
    (``a @ W + b @ U``): each split into nodes of their own; the last keeps the node's name, so readers stay."""
    import base64

    from deploytool.formats.tfjs import unfuse_activations

    def node(name, op, inputs, fused):
        ops = [base64.b64encode(f.encode()).decode() for f in fused]
        attr = {"T": {"type": "DT_FLOAT"}, "transpose_a": {"b": False}, "fused_ops": {"list": {"s": ops}}}
        return {"name": name, "op": op, "input": inputs, "attr": attr}

    nodes = [node("dense/Tanh", "_FusedMatMul", ["x", "w", "b"], ["BiasAdd", "Tanh"]),
             node("conv/Relu", "_FusedConv2D", ["dense/Tanh", "k", "c"], ["BiasAdd", "Relu"]),
             node("gates/Add", "_FusedMatMul", ["x", "w", "hU"], ["BiasAdd", "Tanh"]),
             {"name": "Identity", "op": "Identity", "input": ["conv/Relu"]}]
    weights = [{"weights": [{"name": n, "shape": shape} for n, shape in
                            (("w", [3, 4]), ("b", [4]), ("k", [3, 3, 4, 2]), ("c", [2]))]}]
    (tmp_path / "model.json").write_text(json.dumps({"modelTopology": {"node": nodes}, "weightsManifest": weights}))
    assert unfuse_activations(tmp_path) == ["Tanh after dense/Tanh", "Tanh after gates/Add", "AddV2 after gates/Add"]
    got = {n["name"]: n for n in json.loads((tmp_path / "model.json").read_text())["modelTopology"]["node"]}

    def fused(name):
        return [base64.b64decode(s).decode() for s in got[name]["attr"]["fused_ops"]["list"]["s"]]

    assert got["dense/Tanh"]["op"] == "Tanh" and got["dense/Tanh"]["input"] == ["dense/Tanh/deploytool_unfused_0"]
    assert fused("dense/Tanh/deploytool_unfused_0") == ["BiasAdd"]  # its bias is a vector: stays fused
    assert got["conv/Relu"]["op"] == "_FusedConv2D" and got["conv/Relu"]["input"][0] == "dense/Tanh"  # Relu: kept
    mm, add = got["gates/Add/deploytool_unfused_0"], got["gates/Add/deploytool_unfused_1"]
    assert mm["op"] == "MatMul" and mm["input"] == ["x", "w"] and "fused_ops" not in mm["attr"]
    assert add["op"] == "AddV2" and add["input"] == ["gates/Add/deploytool_unfused_0", "hU"]
    assert got["gates/Add"]["op"] == "Tanh" and got["gates/Add"]["input"] == ["gates/Add/deploytool_unfused_1"]
    assert unfuse_activations(tmp_path) == []  # nothing left to split


def test_a_stage_is_not_split_by_a_format_of_another_stage_sorting_between_its_formats():
    """tfjs (its own stage) sorts between savedmodel and the tflite_* (the tensorflow stage): the tensorflow stage
    must still be one worker, and every parent made before its children."""
    from deploytool.formats import plan, resolve, stage_order

    for framework in ("torch", "onnx", "tensorflow"):
        formats = plan(framework)
        names = [n for n in resolve(None, framework)[0] if not formats[n].not_applicable]
        order = stage_order(names, formats)
        assert sorted(order) == sorted(names)
        stages = [formats[n].stage for n in order]
        runs = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
        assert len(runs) == len(set(runs)), (framework, runs)
        assert all(formats[n].parent not in order[order.index(n):] for n in order), framework


def test_signature_keys_the_converter_replaced_by_tensor_names_are_restored(tmp_path):
    from deploytool.formats.tfjs import restore_signature_keys

    sig = {"inputs": {"arg_1st_input": {"name": "arg_1st_input:0"}, "x_y:0": {"name": "x_y:0"},
                      "x_y_2:0": {"name": "x_y_2:0"}},
           "outputs": {"Identity:0": {"name": "Identity:0"}, "Identity_1:0": {"name": "Identity_1:0"}}}
    (tmp_path / "model.json").write_text(json.dumps({"signature": sig}))
    got = restore_signature_keys(tmp_path, ["arg_1st_input", "x_y", "x_y_2"], ["output_0", "output_1"])
    assert got == ["x_y:0 -> x_y", "x_y_2:0 -> x_y_2", "Identity:0 -> output_0", "Identity_1:0 -> output_1"]
    sig = json.loads((tmp_path / "model.json").read_text())["signature"]
    assert sig["inputs"]["x_y_2"] == {"name": "x_y_2:0"} and sig["outputs"]["output_1"] == {"name": "Identity_1:0"}
    assert restore_signature_keys(tmp_path, ["arg_1st_input", "x_y", "x_y_2"], ["output_0", "output_1"]) == []
    # not accounted for: left as it is (the export's check then fails the format, naming both)
    assert restore_signature_keys(tmp_path, ["a", "b", "c"], ["output_0", "output_1"]) == []


def test_doctor_lists_each_environment_and_warns_when_it_is_not_set_up(cache):
    from deploytool import doctor

    rows = [c for c in doctor.components() if c.name == "tfjs environment"]
    assert len(rows) == 1 and rows[0].kind == "converter" and rows[0].extra == envs.HINT and not rows[0].installed
    assert rows[0].verified == envs.pins(envs.ENVS["tfjs"])["tensorflowjs"]
    outcome = doctor.run("export", guard=False)
    assert any(w.startswith("tfjs environment is not set up: the formats made in it fail to export (run `deploytool "
                            "setup`)") for w in outcome.warnings), outcome.warnings


def test_the_ops_tfjs_lacks_are_named():
    from deploytool.formats.tfjs import explain

    exc = ValueError("Unsupported Ops in the model before optimization\nErfc, BroadcastArgs")
    assert explain(exc, "=== deploytool: exporting tfjs (tensorflowjs_converter) ===\nlog: line", None) == \
        "TensorFlow.js has no kernel for ops of this model: Erfc, BroadcastArgs"
    assert explain(RuntimeError("boom\nlast line"), "", None) == "the TF.js converter failed: RuntimeError: last line"
