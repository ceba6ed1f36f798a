"""The aarch64 emulation (deploytool/emulation): its locks, its build (QEMU >= 10, sysroot, wheels), the emulated
LiteRT and onnxruntime sessions as drop-ins for the native ones, and their lifecycle (no emulator left behind).

The fast tests need nothing built. The slow ones build the environment for real into the real cache (later runs reuse
it; skipped only when the package registries cannot be reached) and run digits_cnn's TFLite and ONNX artifacts under
it.
"""
from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from deploytool import emulation
from deploytool.emulation import build

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "deploytool" / "emulation" / "runner.py"
SAMPLES = 4  # fp32 runs ~900x slower under the emulator: a few golden samples only


# --- the locks --------------------------------------------------------------------------------------------------

def test_the_debian_lock_pins_every_package_by_version_and_sha256():
    pinned = build.debs()
    assert {d.arch for d in pinned} == {"amd64", "arm64"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", d.sha256) for d in pinned)
    qemu = next(d for d in pinned if d.name == "qemu-user")
    upstream = tuple(int(x) for x in qemu.version.split(":", 1)[1].split("+")[0].split("."))
    assert upstream >= build.MIN_QEMU and "bpo12" in qemu.version  # bookworm-backports, not bookworm's 7.2
    assert {"python3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6"} <= {d.name for d in pinned}


def test_the_wheel_lock_pins_deploytools_litert_and_a_numpy_2_with_hashes():
    lines = [ln for ln in (build.HERE / build.LOCKS[1]).read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+ --hash=sha256:[0-9a-f]{64}", ln) for ln in lines), lines
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"ai-edge-litert=={build.wheels()['ai-edge-litert']}" in extras["litert"]
    assert build.wheels()["numpy"].startswith("2.")


def test_the_wheel_lock_pins_deploytools_onnxruntime_with_its_dependencies_and_the_build_imports_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"onnxruntime=={build.wheels()['onnxruntime']}" in extras["onnxruntime"]
    assert {"numpy", "protobuf", "flatbuffers", "packaging"} <= set(build.wheels())  # onnxruntime's Requires-Dist
    assert "onnxruntime" in build.SMOKE.split("import", 1)[1].replace(" ", "").split(",")


def test_the_folder_is_keyed_by_the_locks(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    first = build.folder()
    assert first == tmp_path / "emulation" / f"aarch64-{build.key()}"
    for name in build.LOCKS:
        (tmp_path / name).write_text((build.HERE / name).read_text())
    monkeypatch.setattr(build, "HERE", tmp_path)
    assert build.folder() == first  # the same pins: the same folder
    (tmp_path / build.LOCKS[1]).write_text("numpy==2.4.5 --hash=sha256:" + "0" * 64 + "\n")
    assert build.folder() != first  # another pin: a folder of its own


# --- not built: said, with the command ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, file", [("litert", "m.tflite"), ("onnxruntime", "m.onnx")])
def test_without_the_environment_emulated_targets_say_to_run_setup(tmp_path, monkeypatch, name, file):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    from deploytool import platforms

    assert not build.installed() and build.record() == {}
    assert emulation.unavailable() == "the aarch64 emulation environment is not set up: run `deploytool setup`"
    runtime = platforms.runtime(name, "aarch64-cortex-a72")
    assert runtime.name == name and runtime.time is None  # emulated rows are never timed
    assert "cortex-a72" in runtime.description and runtime.packages == ()  # nothing of it needed on the host
    assert "run `deploytool setup`" in (runtime.unavailable() or "")
    with pytest.raises(build.SetupError, match="not set up: run `deploytool setup`"):
        runtime.load(tmp_path / file, {"threads": 1})


def test_only_runtimes_with_an_aarch64_build_are_emulated():
    from deploytool import platforms

    assert platforms.ARCHES["aarch64"] == ("litert", "onnxruntime")
    assert [t.key for t in platforms.targets("onnx_int8", ["onnxruntime", "openvino"], ["aarch64-neoverse-v1"])] == \
        ["onnx_int8@onnxruntime@aarch64-neoverse-v1"]
    with pytest.raises(ValueError, match="runtime openvino has no emulated aarch64 build"):
        platforms.runtime("openvino", "aarch64-cortex-a72")


def test_setup_has_an_aarch64_part_and_doctor_warns_when_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    from deploytool import doctor
    from deploytool.commands import setup

    assert setup.parts()[-1] == "aarch64"
    [component] = doctor.emulation_components()
    assert (component.kind, component.installed, component.extra) == ("emulation", False, build.HINT)
    outcome = doctor.run("device", guard=False)
    assert any("aarch64 emulation is not set up" in w and "deploytool setup" in w for w in outcome.warnings)
    assert not any("emulation" in p for p in outcome.problems)  # never needed: its targets are SKIPPED


def test_a_machine_that_cannot_build_it_warns_and_sets_up_the_rest(tmp_path, monkeypatch):
    """The emulation is optional: without Debian's keyring (or apt, or on a non-x86_64 host) setup says why in a
    warning and exits 0; emulated targets are then SKIPPED saying the emulation is not set up."""
    from click.testing import CliRunner

    from deploytool.cli import main

    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(build, "KEYRING", tmp_path / "no-keyring.gpg")  # a machine without Debian's keyring
    result = CliRunner().invoke(main, ["setup", "--skip", "npm", "--skip", "tfjs"])
    assert result.exit_code == 0, result.output
    keyring = tmp_path / "no-keyring.gpg"
    assert f"deploytool: warning: aarch64: not built on this machine: no Debian archive keyring at {keyring} to " \
        "check the packages: apt-get install debian-archive-keyring" in result.output
    assert not (tmp_path / "emulation").exists() or not any((tmp_path / "emulation").glob("aarch64-*/installed.json"))


def test_a_build_that_fails_is_one_line_and_exit_11(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deploytool.cli import main
    from deploytool.core.errors import UNUSABLE

    def fails(*args, **kwargs):
        raise build.SetupError("apt-get download failed: E: Can't find a source to download version '2.36-9' of "
                               "'libc6:arm64' (log: x.log)")

    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(build, "_check_host", lambda: None)
    monkeypatch.setattr(build, "_fetch_debs", fails)
    result = CliRunner().invoke(main, ["setup", "--skip", "npm", "--skip", "tfjs"])
    assert result.exit_code == UNUSABLE, result.output
    assert "Traceback" not in result.output
    assert "setup: apt-get download failed: E: Can't find a source to download version" in result.output
    assert not [p for p in (tmp_path / "emulation").glob("aarch64-*") if p.is_dir()]  # the temporary folder removed


# --- QEMU's version ------------------------------------------------------------------------------------------------

def test_qemu_10_is_accepted():
    assert build.qemu_version("qemu-aarch64 version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)") == (10, 0, 2)


@pytest.mark.parametrize("text, why", [
    ("qemu-aarch64 version 7.2.0 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "QEMU 7.2.0 is too old .* needs >= 10.0"),
    ("qemu-aarch64 version 9.2.1", "QEMU 9.2.1 is too old"),
    ("Segmentation fault", "cannot read QEMU's version"),
])
def test_older_or_unreadable_qemu_is_refused(text, why):
    with pytest.raises(build.SetupError, match=why):
        build.qemu_version(text)


# --- CPU models ----------------------------------------------------------------------------------------------------

def test_default_cpus_cover_neon_fp16_and_sve_and_say_which_compute_fp16():
    assert emulation.DEFAULT_CPUS == ("cortex-a72", "cortex-a55", "neoverse-v1")
    assert set(emulation.WHY) == set(emulation.DEFAULT_CPUS)
    assert [emulation.fp16_arith(c) for c in emulation.DEFAULT_CPUS] == [False, True, True]
    assert emulation.FP16_ARITH <= set(emulation.QEMU_CPUS)
    with pytest.raises(ValueError, match="unknown aarch64 CPU model 'cortex-a99'"):
        emulation.fp16_arith("cortex-a99")


# --- the runner's protocol (on the host's own Python and runtimes: no emulator needed) ------------------------------

def test_the_runner_answers_failures_as_one_error_line_and_ends_with_its_stdin(tmp_path):
    commands = ['load litert {"path": "/nonexistent/m.tflite", "threads": 1}',
                'load onnxruntime {"path": "/nonexistent/m.onnx", "options": {}, "config": {}}',
                "load tvm {}", f"run {tmp_path / 'request.json'}", "bogus x"]
    proc = subprocess.run([sys.executable, "-P", str(RUNNER)], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 5, proc.stdout + proc.stderr
    assert lines[0].startswith("error ValueError: ") and "/nonexistent/m.tflite" in lines[0]
    assert lines[1].startswith("error NoSuchFile: ") and "/nonexistent/m.onnx" in lines[1]
    assert lines[2] == "error ValueError: unknown runtime 'tvm' (known: litert, onnxruntime)"
    assert lines[3] == "error ValueError: nothing is loaded"
    assert lines[4] == "error ValueError: unknown command 'bogus'"
    assert "Traceback" in proc.stderr and "Traceback" not in proc.stdout


def _two_outputs_with_external_data(folder: Path) -> Path:
    """A small ONNX model whose weights are external data beside it, with two outputs of two dtypes in an order that
    is not alphabetical (``zeta`` float32, then ``alpha`` int64) and a batch dimension of any size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["zeta"]),
             helper.make_node("ArgMax", ["zeta"], ["alpha"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("zeta", TensorProto.FLOAT, ["n", 32]),
                               helper.make_tensor_value_info("alpha", TensorProto.INT64, ["n"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "two.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="two.weights", size_threshold=0)
    assert (folder / "two.weights").stat().st_size == (64 * 32 + 32) * 4  # the weights are beside it, not inside
    return path


def test_the_onnxruntime_session_is_the_native_one_over_the_runners_protocol(tmp_path, monkeypatch):
    """The host side and the runner together, with the host's own Python and onnxruntime standing in for the emulated
    ones (no emulator needed): the same describe, settings, outputs (names, order, dtypes) as the native runtime, and
    external data read from beside the file, though the runner works in a folder of its own."""
    from deploytool.emulation.onnxruntime import emulated_runtime
    from deploytool.runtimes import onnxruntime as native

    monkeypatch.setattr(build, "installed", lambda: True)
    monkeypatch.setattr(build, "record", lambda: {"qemu": "none (the host's Python)"})
    monkeypatch.setattr(build, "emulated_python", lambda cpu, args: ([sys.executable, "-P", *args], dict(os.environ)))
    (tmp_path / "model").mkdir()
    path = _two_outputs_with_external_data(tmp_path / "model")
    runtime, asked = emulated_runtime("neoverse-v1"), {"threads": 1, "spinning": False}
    session, want_session = runtime.load(path, asked), native.load(path, asked)
    assert runtime.describe(session) == native.describe(want_session)
    assert runtime.describe(session)["outputs"][1] == {"name": "alpha", "dtype": "int64", "shape": [None]}
    feeds = {"x": np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)}
    got, want = runtime.run(session, feeds), native.run(want_session, feeds)
    assert list(got) == list(want) == ["zeta", "alpha"]
    assert [v.dtype for v in got.values()] == [np.float32, np.int64]
    np.testing.assert_array_equal(got["zeta"], want["zeta"])
    np.testing.assert_array_equal(got["alpha"], want["alpha"])
    assert runtime.run(session, {"x": feeds["x"][:1]})["zeta"].shape == (1, 32)  # another batch size
    settings = runtime.reported_settings(session)
    assert settings == {**native.RUNTIME.reported_settings(want_session), "inter_op_threads": 1,
                        "emulated_cpu": "neoverse-v1", "qemu": "none (the host's Python)"}
    assert settings["threads"] == 1 and settings["spinning"] is False


# --- for real: built, run, compared with the native runtime, ended ----------------------------------------------------

def _reachable() -> bool:
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=10).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def built():
    """The environment in the real cache (built once; reused by later runs)."""
    try:
        return build.ensure()
    except build.SetupError as e:
        if "apt-get update" in str(e) or "pip download" in str(e):
            if not _reachable():
                pytest.skip(f"the package registries cannot be reached to build the aarch64 emulation: {e}")
        raise


@pytest.fixture(scope="module")
def tflite(built, tmp_path_factory):
    """digits_cnn's tflite_fp32 and tflite_int8 (the default model), exported once: (artifacts, golden folder)."""
    out = tmp_path_factory.mktemp("emulated")
    proc = subprocess.run([sys.executable, "-m", "deploytool", "export", "-f", "tflite_fp32,tflite_int8", "--out",
                           str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = next(p for p in out.iterdir() if (p / "manifest.json").is_file())
    return bundle / "artifacts", bundle / "golden"


@pytest.mark.slow
def test_the_build_is_recorded_checked_and_idempotent(built):
    record = build.record()
    assert build.qemu_version(f"version {record['qemu']}") >= build.MIN_QEMU
    assert record["wheels"]["ai-edge-litert"] == build.wheels()["ai-edge-litert"]
    assert set(record["debs"]) == {d.spec.split("=")[0] for d in build.debs()}
    assert record["size_bytes"] > 50e6 and record["build_s"] > 0
    assert (built.folder / "qemu-aarch64").is_file() and (built.folder / "sysroot" / build.PYTHON).exists()
    t0 = time.perf_counter()
    again = build.ensure()
    assert again.build_s == 0.0 and again.folder == built.folder and time.perf_counter() - t0 < 1.0


def _int8_step(path: Path, shape: tuple[int, ...]) -> float:
    """The quantization step of the int8 tensor the float output is dequantized from."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return max(d["quantization"][0] for d in interp.get_tensor_details()
               if d["dtype"] == np.int8 and tuple(d["shape"][1:]) == shape[1:])


@pytest.mark.slow
@pytest.mark.parametrize("fmt, file", [("tflite_fp32", "digits_cnn_float32.tflite"),
                                       ("tflite_int8", "digits_cnn_int8.tflite")])
def test_the_emulated_session_is_a_drop_in_for_native_litert(tflite, fmt, file):
    from deploytool.emulation.litert import emulated_runtime
    from deploytool.runtimes import litert

    artifacts, golden = tflite
    images = np.load(golden / "inputs.npz")["image"][:SAMPLES]  # (N, 1, 1, 8, 8): one NCHW batch per sample
    feeds = {"image": np.concatenate(list(images)).transpose(0, 2, 3, 1)}  # the .tflite is NHWC
    runtime = emulated_runtime("cortex-a72")
    session = runtime.load(artifacts / file, {"threads": 1})
    native = litert.load(artifacts / file, {"threads": 1})
    assert runtime.describe(session) == litert.describe(native)
    got, want = runtime.run(session, feeds), litert.run(native, feeds)
    one = runtime.run(session, {"image": feeds["image"][:1]})  # another batch: resized
    assert list(got) == list(want) == list(one)
    assert {k: (v.dtype, v.shape) for k, v in got.items()} == {k: (v.dtype, v.shape) for k, v in want.items()}
    for name in want:
        err = float(np.abs(got[name] - want[name]).max())
        if fmt == "tflite_int8":
            assert err <= _int8_step(artifacts / file, want[name].shape) * 1.001, err
        else:
            assert err <= 1e-4, err
        assert np.abs(one[name] - want[name][:1]).max() <= max(err, 1e-4)
    settings = runtime.reported_settings(session)
    assert settings["threads"] == 1 and settings["emulated_cpu"] == "cortex-a72"
    assert runtime.version().startswith(build.wheels()["ai-edge-litert"] + " (aarch64, QEMU 10.")
    pid = session.proc.pid
    del session
    gc.collect()  # dropped: its finalizer closes the runner's stdin, and it ends
    assert _gone(pid, 30), f"the emulator {pid} outlived its session"


# The holder also hands the runner's stdin to a process that outlives it, as a runner busy in a long invoke would not
# read it either: the runner must end because its host died (PR_SET_PDEATHSIG), not because its stdin closed.
_HOLDER = """
import subprocess, sys, time
from deploytool.emulation.litert import emulated_runtime
session = emulated_runtime("cortex-a72").load(sys.argv[1], {"threads": 1})
keeper = subprocess.Popen(["sleep", "600"], pass_fds=[session.proc.stdin.fileno()])
print(session.proc.pid, keeper.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int, timeout: float) -> bool:
    """The process has ended (no such pid, or a zombie its new parent has yet to reap)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_emulator_outlives_the_process_that_holds_the_session(tflite, tmp_path, sig):
    model = tmp_path / "held.tflite"
    model.write_bytes((tflite[0] / "digits_cnn_int8.tflite").read_bytes())
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(model)], stdout=subprocess.PIPE, text=True)
    pid, keeper = map(int, holder.stdout.readline().split())  # the session is loaded
    try:
        assert b"qemu-aarch64" in Path(f"/proc/{pid}/cmdline").read_bytes() and not _gone(pid, 0.01)
        os.kill(holder.pid, sig)
        holder.wait(timeout=30)
        assert _gone(pid, 30), f"qemu-aarch64 {pid} outlived its host after {sig.name}"
    finally:
        holder.kill()
        os.kill(keeper, signal.SIGKILL)


# --- onnxruntime's aarch64 build, for real ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_bundle(built, run_cli, tmp_path_factory):
    """digits_cnn (the default model) exported with onnx and onnx_int8 only, once: the bundle folder."""
    out = tmp_path_factory.mktemp("emulated_onnx")
    proc = run_cli("export", "-f", "onnx,onnx_int8", "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "digits_cnn"


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-a72", "neoverse-v1"])  # plain NEON; SVE, i8mm and dotprod
@pytest.mark.parametrize("fmt, file", [("onnx", "digits_cnn.onnx"), ("onnx_int8", "digits_cnn_int8.onnx")])
def test_the_emulated_onnxruntime_computes_as_the_native_one(onnx_bundle, fmt, file, cpu):
    from deploytool.emulation.onnxruntime import emulated_runtime
    from deploytool.runtimes import onnxruntime as native

    path = onnx_bundle / "artifacts" / file
    runtime = emulated_runtime(cpu)
    session, want_session = runtime.load(path, {"threads": 1}), native.load(path, {"threads": 1})
    assert runtime.describe(session) == native.describe(want_session)
    for image in np.load(onnx_bundle / "golden" / "inputs.npz")["image"][:SAMPLES]:  # one (1, 1, 8, 8) batch each
        got, want = runtime.run(session, {"image": image}), native.run(want_session, {"image": image})
        assert list(got) == list(want) and [v.dtype for v in got.values()] == [v.dtype for v in want.values()]
        for name in want:
            if fmt == "onnx_int8":
                # Bit-identical on every CPU: onnxruntime fuses the QDQ pairs into the same u8s8 QLinearConv / QGemm
                # on both ISAs; their integer sums are exact and the requantisation (an fp32 scale, rounded to
                # nearest even) is the same on x86 (AVX-VNNI) and on ARM (NEON, dotprod, i8mm). A difference of one
                # quantisation step would be legitimate ARM behaviour; none is seen with the pinned 1.32.0.
                np.testing.assert_array_equal(got[name], want[name])
            else:
                assert float(np.abs(got[name] - want[name]).max()) <= 1e-4
    settings = runtime.reported_settings(session)
    assert (settings["threads"], settings["emulated_cpu"], settings["providers"]) == (1, cpu, ["CPUExecutionProvider"])
    assert runtime.version().startswith(build.wheels()["onnxruntime"] + " (aarch64, QEMU 10.")


@pytest.mark.slow
def test_validate_checks_onnx_artifacts_on_an_emulated_cpu_through_the_cli(onnx_bundle, run_cli):
    import json

    proc = run_cli("validate", onnx_bundle, "-f", "onnx,onnx_int8", "--runtime", "onnxruntime",
                   "--emulate", "aarch64:cortex-a72", "--samples", str(SAMPLES), "--wide")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"onnx_int8 +onnxruntime \(aarch64-cortex-a72\) +PASS +int8 ", proc.stdout), proc.stdout
    targets = json.loads((onnx_bundle / "reports/validation.json").read_text())["targets"]
    assert sorted(k for k in targets if "@aarch64-" in k) == ["onnx@onnxruntime@aarch64-cortex-a72",
                                                              "onnx_int8@onnxruntime@aarch64-cortex-a72"]
    for fmt in ("onnx", "onnx_int8"):
        t = targets[f"{fmt}@onnxruntime@aarch64-cortex-a72"]
        assert (t["status"], t["platform"], t["settings"]["emulated_cpu"]) == ("pass", "aarch64-cortex-a72",
                                                                              "cortex-a72"), t.get("reason")
        assert t["runtime_version"].startswith(f"{build.wheels()['onnxruntime']} (aarch64, QEMU 10.")
        assert not t["timings"].get("p50_ms")  # never timed
    assert targets["onnx_int8@onnxruntime@aarch64-cortex-a72"]["max_abs"] == targets["onnx_int8@onnxruntime"]["max_abs"]
