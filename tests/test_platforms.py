"""Emulated CPUs as a third axis of targets (issue 24; ``deploytool/platforms.py``): ``--emulate`` names them, each
artifact a runtime with an emulated build runs gets a target per CPU model, judged and reported apart (its own row,
key and matrix column), and every target says the precision it really computed in."""
from __future__ import annotations

import pytest

from deploytool import emulation, platforms
from deploytool.commands.validate import select_targets
from deploytool.core.errors import UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.running.jobs import ArtifactStatus
from deploytool.store.manifest import ArtifactRecord


def test_emulate_names_cpus_and_defaults_to_one_per_kernel_family():
    assert platforms.parse("aarch64") == ["aarch64-cortex-a72", "aarch64-cortex-a55", "aarch64-neoverse-v1"]
    assert platforms.parse(["aarch64:neoverse-v1, cortex-a76", "aarch64:cortex-a76"]) == \
        ["aarch64-neoverse-v1", "aarch64-cortex-a76"]
    assert platforms.parse(None) == [] and platforms.parse([]) == []
    with pytest.raises(UsageError, match=r"--emulate arm64: unknown architecture 'arm64'.*known: aarch64"):
        platforms.parse("arm64")
    with pytest.raises(UsageError, match=r"unknown CPU model 'cortex-a7'.*did you mean.*cortex-a72"):
        platforms.parse("aarch64:cortex-a7")
    # the three defaults cover plain NEON, fp16 arithmetic + dotprod, and SVE
    assert [emulation.fp16_arith(c) for c in emulation.DEFAULT_CPUS] == [False, True, True]


def _manifest(*names: str):
    recs = {n: ArtifactRecord(format=n, status=ArtifactStatus.OK, precision="fp32", tier="fp32", runtime="x")
            for n in names}
    return type("M", (), {"artifacts": recs})()


def test_emulated_targets_exist_for_the_artifacts_an_emulated_runtime_runs():
    chosen = select_targets(_manifest("onnx", "tflite_int8"), ["onnx", "tflite_int8"], None,
                            platforms.parse("aarch64:cortex-a72,cortex-a55"))
    emulated = [t.key for t in chosen if t.platform != NATIVE]
    assert emulated == ["onnx@onnxruntime@aarch64-cortex-a72", "onnx@onnxruntime@aarch64-cortex-a55",
                        "tflite_int8@litert@aarch64-cortex-a72", "tflite_int8@litert@aarch64-cortex-a55"]
    assert Target.parse(emulated[2]) == Target("tflite_int8", "litert", "aarch64-cortex-a72")
    assert Target.parse(emulated[2]).where == "litert (aarch64-cortex-a72)"
    with pytest.raises(UsageError, match=r"--emulate: no artifact chosen \(torchscript\) runs on a runtime with an "
                                         r"emulated build \(emulated: litert, onnxruntime\)"):
        select_targets(_manifest("torchscript"), ["torchscript"], None, platforms.parse("aarch64"))
    # --runtime narrows the emulated targets too
    chosen = select_targets(_manifest("onnx", "tflite_int8"), ["onnx", "tflite_int8"], ["onnxruntime", "litert"],
                            platforms.parse("aarch64:cortex-a72"))
    keys = ["onnx@onnxruntime", "onnx@onnxruntime@aarch64-cortex-a72", "tflite_int8@litert",
            "tflite_int8@litert@aarch64-cortex-a72"]
    assert [t.key for t in chosen] == keys


def test_the_precision_executed_says_where_fp16_arithmetic_ran():
    assert platforms.executed_precision("int8", None, NATIVE) == "int8"
    assert platforms.executed_precision("fp16", "fp16", NATIVE) == platforms.FP32_NO_FP16  # x86: fp32
    assert platforms.executed_precision("fp16", "fp16", "aarch64-cortex-a72") == platforms.FP32_NO_FP16
    assert platforms.executed_precision("fp16", "fp16", "aarch64-cortex-a55") == platforms.FP16_ARITH
    assert platforms.executed_precision("fp16", "fp32", "aarch64-cortex-a55") == "fp32 (fp16 weights)"  # tflite_fp16
    assert platforms.executed_precision("fp16", None, NATIVE) == "fp16"


def test_an_emulated_target_without_the_emulation_is_skipped_naming_the_command(tmp_path, monkeypatch):
    from deploytool.running.pool import RunPool

    monkeypatch.setenv("DEPLOYTOOL_CACHE", str(tmp_path / "empty"))
    assert "deploytool setup" in (emulation.unavailable() or "")
    pool = RunPool(tmp_path / "logs", tmp_path)
    pool.submit("t", "litert", tmp_path / "x.tflite", None, [], platform="aarch64-cortex-a72")
    reply = pool.results()["t"]
    assert reply.status == "skipped" and "deploytool setup" in reply.error


def test_bench_refuses_emulated_cpus_saying_why(run_cli, tmp_path):
    proc = run_cli("bench", tmp_path, "--emulate", "aarch64")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--emulate: bench does not time emulated CPUs" in proc.stderr and "validate --emulate" in proc.stderr


EMULATED_FORMATS = ("tflite_fp32", "tflite_int8", "tflite_fp16_arith")


@pytest.fixture(scope="module")
def emulated_run(run_cli, tmp_path_factory):
    """digits_cnn's TFLite artifacts validated on the three default emulated CPUs (the emulation built as `deploytool
    setup` does, once: ~20 s)."""
    from deploytool.emulation import build

    build.ensure()
    out = tmp_path_factory.mktemp("emulated")
    proc = run_cli("export", "--model", "digits_cnn", "-f", ",".join(EMULATED_FORMATS), "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = run_cli("validate", out / "digits_cnn", "-f", ",".join(EMULATED_FORMATS), "--emulate", "aarch64")
    return out / "digits_cnn", proc


@pytest.mark.slow
def test_every_tflite_passes_on_each_emulated_cpu_and_fp16_arithmetic_runs_only_where_the_cpu_has_it(emulated_run,
                                                                                                        run_cli):
    import json

    bundle, proc = emulated_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    targets = json.loads((bundle / "reports/validation.json").read_text())["targets"]
    cpus = emulation.DEFAULT_CPUS
    for fmt in EMULATED_FORMATS:
        for cpu in cpus:
            t = targets[f"{fmt}@litert@aarch64-{cpu}"]
            assert t["status"] == "pass" and t["platform"] == f"aarch64-{cpu}", (fmt, cpu, t.get("reason"))
            assert "emulated_cpu" in t["settings"] and not t["timings"].get("p50_ms")
    arith = {cpu: targets[f"tflite_fp16_arith@litert@aarch64-{cpu}"] for cpu in cpus}
    native = targets["tflite_fp16_arith@litert"]
    assert native["executed"] == platforms.FP32_NO_FP16 and arith["cortex-a72"]["executed"] == platforms.FP32_NO_FP16
    assert arith["cortex-a55"]["executed"] == arith["neoverse-v1"]["executed"] == platforms.FP16_ARITH
    # fp16 arithmetic moves the outputs on the CPUs that have it, not on cortex-a72 (fp32 there, as on x86)
    assert abs(arith["cortex-a72"]["max_abs"] - native["max_abs"]) < 0.1 * native["max_abs"]
    assert min(arith["cortex-a55"]["max_abs"], arith["neoverse-v1"]["max_abs"]) > 2 * native["max_abs"]
    assert targets["tflite_int8@litert@aarch64-cortex-a55"]["executed"] == "int8"
    assert run_cli("report", bundle).returncode == 0
    md = (bundle / "reports/report.md").read_text()
    assert "| `tflite_fp16_arith` | litert (aarch64-cortex-a55) | fp16 arith | PASS |" in md
    assert "| `tflite_fp16_arith` | litert (aarch64-cortex-a72) | fp32 (CPU lacks fp16) | PASS |" in md


@pytest.mark.slow
def test_a_planted_weight_change_fails_on_every_emulated_cpu(emulated_run, run_cli, tmp_path):
    import json

    from test_localise import _tflite_edited

    bundle = _tflite_edited(emulated_run[0], tmp_path / "digits_cnn")
    proc = run_cli("validate", bundle, "-f", "tflite_fp32", "--emulate", "aarch64", "--samples", "4")
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    targets = json.loads((bundle / "reports/validation.json").read_text())["targets"]
    for cpu in emulation.DEFAULT_CPUS:
        assert targets[f"tflite_fp32@litert@aarch64-{cpu}"]["status"] == "fail", cpu


def test_an_artifact_not_exported_keeps_its_verdict_under_emulate():
    """--emulate with an artifact whose export failed: its NOT_EXPORTED verdict stays (no usage error)."""
    m = _manifest("tflite_int8")
    m.artifacts["tflite_int8"].status = ArtifactStatus.FAILED
    chosen = select_targets(m, ["tflite_int8"], None, platforms.parse("aarch64"))
    assert [t.key for t in chosen] == ["tflite_int8@litert"]


def test_the_report_says_what_an_export_only_bundle_computed_in(tmp_path):
    from types import SimpleNamespace

    from deploytool.report.view import artifacts
    from deploytool.results import Results

    def rec(name, precision):
        return SimpleNamespace(precision=precision, chain=["source", name], size_bytes=1, route=None, checks={},
                               check=None, runtime="litert", status="ok")

    manifest = SimpleNamespace(artifacts={"tflite_fp16": rec("tflite_fp16", "fp16"),
                                          "tflite_fp16_arith": rec("tflite_fp16_arith", "fp16")},
                               created="2026-01-02T00:00:00+00:00", model=SimpleNamespace(name="m"))
    views = {v.name: v for v in artifacts(Results(tmp_path, manifest, "sha", validations=[], benches=[]))}
    assert views["tflite_fp16"].executed == "fp32 (fp16 weights)"
    assert views["tflite_fp16_arith"].executed == platforms.FP32_NO_FP16


def test_the_cache_folder_is_absolute(tmp_path, monkeypatch):
    from deploytool.core import cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cache.CACHE_ENV, "rel/cache")
    assert cache.root() == tmp_path.resolve() / "rel" / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, "~/c")
    assert cache.root().is_absolute() and "~" not in str(cache.root())


def test_a_native_arm_host_with_half_precision_is_said_to_compute_in_fp16(tmp_path, monkeypatch):
    # On an ARM machine itself (not emulated), the fp16-arithmetic model runs in fp16 where the CPU has asimdhp; the
    # label must not say the CPU lacks it. Decided from /proc/cpuinfo's Features line.
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n")
    monkeypatch.setattr(platforms.pyplatform, "machine", lambda: "aarch64")
    assert platforms.host_fp16_arith(str(arm)) and not platforms.host_fp16_arith(str(old))
    monkeypatch.setattr(platforms.pyplatform, "machine", lambda: "x86_64")
    assert not platforms.host_fp16_arith(str(tmp_path / "x86-same-text-as-arm"))
