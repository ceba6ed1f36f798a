"""Targets as a second axis (issue 20): an artifact is checked, timed and reported on every runtime that
runs it (``onnx`` on onnxruntime and on OpenVINO), each (artifact, runtime) its own result; ``--runtime``
narrows; a runtime that is not installed is a SKIPPED target naming its extra; a fault only one runtime
sees fails that target alone and the blame names the runtime."""
from __future__ import annotations

import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import HERE, TEST_MODELS, error_lines, flat

from deploytool.checking.golden import GoldenSet
from deploytool.checking.judge import Evidence, exit_code, judge
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.core.errors import UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.results import Checks, targets_of
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.runtimes import RUNTIMES
from deploytool.store.manifest import ArtifactRecord
from deploytool.targets import check_runtimes, runtimes_of

# ---- the type and the registry join (fast) -----------------------------------------------------------


def test_a_target_key_round_trips_and_a_bare_format_means_its_default_runtime():
    t = Target("onnx", "openvino")
    assert t.key == "onnx@openvino" and Target.parse(t.key) == t and t.platform == NATIVE
    assert Target.parse("tflite_int8@litert@aarch64") == Target("tflite_int8", "litert", "aarch64")
    assert Target("tflite_int8", "litert", "aarch64").where == "litert (aarch64)"
    assert Target.parse("onnx", "onnxruntime") == Target("onnx", "onnxruntime")
    assert t.label("onnxruntime") == "onnx@openvino" and Target("onnx", "onnxruntime").label("onnxruntime") == "onnx"
    for bad in ("onnx", "@x", "onnx@", "a@b@c@d"):
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_every_format_runs_on_its_default_runtime_first_and_onnx_also_on_openvino():
    from deploytool.formats import FORMATS

    for name, fmt in FORMATS.items():
        assert runtimes_of(name)[0] == fmt.runtime and set(runtimes_of(name)) <= set(RUNTIMES)
    # openvino and onnxruntime_web add themselves (Runtime.runs)
    assert runtimes_of("onnx") == ["onnxruntime", "onnxruntime_web", "openvino"]
    assert runtimes_of("onnx_int8") == ["onnxruntime", "onnxruntime_web", "openvino"]
    assert runtimes_of("torchscript") == ["torchscript", "libtorch"]
    assert runtimes_of("openvino") == ["openvino"]
    assert check_runtimes(None) is None and check_runtimes(["openvino", "openvino"]) == ["openvino"]
    with pytest.raises(UsageError, match="no such runtime"):
        check_runtimes(["tensorrt"])


CONTRACT = Contract.from_dict({"inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                               "outputs": [{"name": "y", "shape": ["batch", 3], "dtype": "float32"}],
                               "dims": {"batch": {"example": 2, "alt": 3}}})


def _record(fmt: str) -> ArtifactRecord:
    from deploytool.formats import FORMATS

    f = FORMATS[fmt]
    return ArtifactRecord(format=fmt, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                          runtime=f.runtime, parent=f.parent, path=f"artifacts/m{f.suffix}", contract=CONTRACT)


def _judge(tmp_path, outputs: dict[str, np.ndarray]):
    """Judge the given target keys' outputs against one reference (pure: no worker)."""
    rng = np.random.default_rng(0)
    ref = {"y": rng.normal(size=(8, 3)).astype(np.float32)}
    inputs = {"x": rng.normal(size=(8, 4)).astype(np.float32)}
    npz.save(tmp_path / "in.npz", inputs)
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]
    runs, targets = {}, []
    for key, delta in outputs.items():
        npz.save(tmp_path / f"{key}.npz", {"y": ref["y"] + delta})
        runs[key] = ArtifactRan(status=RunStatus.OK, runtime=key.split("@")[1], outputs={"main": str(tmp_path /
                                                                                                    f"{key}.npz")})
        targets.append(Target.parse(key))
    records = {t.format: _record(t.format) for t in targets}
    return judge(CONTRACT, records, Evidence(runs, sets, {"main": ref}), targets=targets)


def test_a_fault_one_runtime_sees_fails_that_target_alone_and_the_blame_names_the_runtime(tmp_path):
    checks = _judge(tmp_path, {"onnx@onnxruntime": 0.0, "onnx@openvino": 0.5, "openvino@openvino": 0.5})
    assert isinstance(checks, Checks)
    assert checks["onnx@onnxruntime"].status == CheckStatus.PASS
    assert checks["onnx@openvino"].status == CheckStatus.FAIL
    assert checks["onnx@openvino"].hop_blamed == "source -> onnx@openvino"
    # the IR matches the onnx file on the same runtime: the error is the runtime's, not the conversion's
    assert checks["openvino@openvino"].hop_blamed == "source -> onnx@openvino"
    assert checks["openvino@openvino"].hop["main"]["y"]["passed"]
    assert checks["onnx"] is checks["onnx@onnxruntime"]  # a bare format reads its default runtime's check
    assert exit_code(checks, strict=False) == errors.PARITY


def test_a_conversion_fault_is_blamed_on_the_hop_on_the_same_runtime(tmp_path):
    checks = _judge(tmp_path, {"onnx@onnxruntime": 0.0, "onnx@openvino": 0.0, "openvino@openvino": 0.5})
    assert checks["openvino@openvino"].hop_blamed == "onnx@openvino -> openvino"
    assert (checks["openvino@openvino"].hop_from, checks["openvino@openvino"].hop_to) == \
        ("onnx@openvino", "openvino@openvino")


def test_strict_fails_a_skipped_default_runtime_not_a_further_one():
    from deploytool.results import ArtifactCheck

    extra = ArtifactCheck("onnx", "openvino", CheckStatus.SKIPPED, reason="not installed")
    ok = ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS)
    checks = {c.key: c for c in (extra, ok)}
    assert exit_code(checks, strict=True) == errors.OK
    assert exit_code(checks, strict=True, runtimes=["openvino"]) == errors.SKIPPED  # asked for: required
    default = ArtifactCheck("openvino", "openvino", CheckStatus.SKIPPED, reason="not installed")
    assert exit_code({**checks, default.key: default}, strict=True) == errors.SKIPPED


def test_result_files_of_the_previous_schema_read_as_targets():
    old = {"schema_version": 2, "artifacts": {"onnx": {"format": "onnx", "runtime": "onnxruntime", "status": "pass"},
                                              "tflite_fp32": {"runtime": "litert", "status": "fail"}}}
    got = targets_of(old)
    assert set(got) == {"onnx@onnxruntime", "tflite_fp32@litert"} and got["tflite_fp32@litert"]["format"] == \
        "tflite_fp32"
    new = {"schema_version": 3, "targets": {"onnx@openvino": {"format": "onnx", "runtime": "openvino"}}}
    assert targets_of(new) == new["targets"]


# ---- end to end (slow) -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(zoo_bundles, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("targets") / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], dest)
    return dest


def _rows(stdout: str) -> list[list[str]]:
    """The console table's rows (format, runtime, status, ...), the header and rule left out."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("format "))
    out = []
    for ln in lines[start + 2:]:
        if not ln.strip() or ln.startswith(("(", "notes:", "reports:", "  ")):
            break
        out.append(ln.split())
    return out


def test_validate_checks_every_runtime_of_each_artifact_and_runtime_narrows(bundle, run_cli, tmp_path):
    proc = run_cli("validate", bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r[0], r[1]): r[2] for r in _rows(proc.stdout)}
    assert rows[("onnx", "onnxruntime")] == rows[("onnx", "openvino")] == rows[("openvino", "openvino")] == "PASS"
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert data["schema_version"] == 3
    assert {"onnx@onnxruntime", "onnx@openvino", "openvino@openvino"} <= set(data["targets"])
    ov = data["targets"]["onnx@openvino"]
    assert (ov["format"], ov["runtime"], ov["status"]) == ("onnx", "openvino", "pass")
    assert ov["settings"]["inference_precision"] == "f32"  # the fp32 tier ran in fp32, and says so
    # the export's own check covered every runtime too, recorded per target in the manifest
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx"]["checks"]["onnx@openvino"]["status"] == "pass"

    junit = tmp_path / "ov.xml"
    proc = run_cli("validate", bundle, "--runtime", "openvino", "--junit", junit, "--reports", tmp_path / "r")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {tuple(r[:2]) for r in _rows(proc.stdout)} == {("onnx", "openvino"), ("onnx_int8", "openvino"),
                                                          ("openvino", "openvino")}
    data = json.loads((tmp_path / "r/validation.json").read_text())
    assert set(data["targets"]) == {"onnx@openvino", "onnx_int8@openvino", "openvino@openvino"}
    classes = {c.get("classname") for c in ET.parse(junit).getroot().iter("testcase")}
    assert classes == {"digits_cnn.onnx@openvino", "digits_cnn.onnx_int8@openvino", "digits_cnn.openvino@openvino"}


@pytest.mark.parametrize("args,says", [
    (("--runtime", "tensorrt"), "--runtime tensorrt: no such runtime"),
    (("-f", "tflite_fp32", "--runtime", "openvino"), "runs none of the artifacts chosen (tflite_fp32)"),
])
def test_a_runtime_that_runs_nothing_chosen_is_a_usage_error(bundle, run_cli, tmp_path, args, says):
    proc = run_cli("validate", bundle, *args, "--reports", tmp_path)
    assert proc.returncode == errors.USAGE and says in proc.stderr and "Traceback" not in proc.stderr
    assert len(error_lines(proc.stderr)) == 1


def test_bench_times_each_target_and_says_its_runtime(bundle, run_cli, tmp_path):
    proc = run_cli("bench", bundle, "-f", "onnx", "--min-time", "0.1", "--min-runs", "20", "--no-source", "--no-peak",
                   "--reports", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert {(r["format"], r["runtime"], r["status"]) for r in rows} == {("onnx", r, "ok") for r in runtimes_of("onnx")}
    assert {tuple(r[:2]) for r in _rows(proc.stdout)} == {("onnx", r) for r in runtimes_of("onnx")}


def _without_openvino(cli_env: dict) -> dict:
    env = dict(cli_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "openvino"
    return env


def test_without_the_openvino_extra_its_targets_are_skipped_naming_the_extra(bundle, cli_env, tmp_path):
    import subprocess

    env = _without_openvino(cli_env)

    def validate(*args):
        return subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "--reports",
                               str(tmp_path), *args], capture_output=True, text=True, env=env, timeout=600)

    proc = validate("-f", "onnx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r[0], r[1]): r[2] for r in _rows(proc.stdout)}
    assert rows == {("onnx", "onnxruntime"): "PASS", ("onnx", "onnxruntime_web"): "PASS",
                    ("onnx", "openvino"): "SKIPPED"}
    skipped = json.loads((tmp_path / "validation.json").read_text())["targets"]["onnx@openvino"]
    assert "pip install 'deploytool[openvino]'" in skipped["reason"]
    assert "pip install 'deploytool[openvino]'" in proc.stderr  # the warning line names the extra
    # --strict: a further runtime that is not installed stays a skip; an artifact whose own runtime is missing fails
    assert validate("-f", "onnx", "--strict").returncode == 0
    assert validate("-f", "openvino", "--strict").returncode == errors.SKIPPED


@pytest.fixture(scope="module")
def split_bundle(run_cli, tmp_path_factory):
    """An ONNX file one runtime computes wrongly (tests/models/runtime_split.py: OpenVINO ignores Resize's
    antialias), exported to onnx and openvino: (bundle, export result)."""
    sys.path.insert(0, str(TEST_MODELS))
    import runtime_split

    src = runtime_split.build(tmp_path_factory.mktemp("split_src") / "runtime_split.onnx")
    out = tmp_path_factory.mktemp("split")
    return out / "runtime_split", run_cli("export", "--model", src, "--formats", "onnx,openvino", "--out", out)


def test_a_planted_runtime_fault_fails_that_runtime_only_and_is_localised(split_bundle, run_cli, tmp_path):
    bundle, proc = split_bundle
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    data = json.loads((bundle / "reports/validation.json").read_text())["targets"]
    assert data["onnx@onnxruntime"]["status"] == "pass"
    assert data["onnx@openvino"]["status"] == data["openvino@openvino"]["status"] == "fail"
    assert data["onnx@openvino"]["hop_blamed"] == "source -> onnx@openvino"
    assert data["openvino@openvino"]["hop_blamed"] == "source -> onnx@openvino"  # the runtime's fault, not the IR's
    found = data["onnx@openvino"]["first_diverging"]
    assert found["localised"] and found["op_name"] == "node_downsample" and found["op_type"] == "Resize"
    text = flat(proc.stdout)
    assert "error appears at hop source -> onnx@openvino" in text
    errs = error_lines(proc.stderr)
    assert any(e.startswith("deploytool: error: runtime_split/onnx@openvino: ") for e in errs)
    assert not any("onnx@onnxruntime" in e for e in errs)
    # the same bundle on onnxruntime alone passes
    ok = run_cli("validate", bundle, "--runtime", "onnxruntime", "--reports", tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_an_openvino_worker_writes_nothing_in_home(bundle, cli_env, tmp_path):
    """OpenVINO's import runs its telemetry (~/intel/stats, a GA4 event); workers keep it from loading."""
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    env = {**cli_env, "HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "--runtime", "openvino",
                           "--reports", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(home.iterdir()) == []


def test_a_failing_target_off_its_default_runtime_writes_its_repro_under_a_relative_out(run_cli, tmp_path):
    """Export keeps the default runtime's outputs in the bundle and the others' in scratch space: a repro of
    a failing OpenVINO target must find them with --out relative to the working directory too."""
    proc = run_cli("export", "-f", "onnx", "--atol", "onnx@openvino=1e-9", "--rtol", "onnx@openvino=0", "--out",
                   "rel", cwd=tmp_path)
    assert proc.returncode == errors.PARITY and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    repro = tmp_path / "rel/digits_cnn/reports/repro/onnx@openvino"
    assert (repro / "actual.main.npz").is_file() and (repro / "repro.json").is_file()
    assert [e.split(":")[1].strip() for e in error_lines(proc.stderr)] == ["error"]  # onnx@onnxruntime passed


def test_strict_bench_fails_a_skipped_row_only_on_a_runtime_the_artifact_needs():
    from deploytool.commands.bench import _required
    from deploytool.results import BenchRow
    from deploytool.running.jobs import RowStatus

    def row(fmt: str, runtime: str) -> BenchRow:
        return BenchRow(format=fmt, runtime=runtime, threads=1, batch=1, size_bytes=None, settings_requested={},
                        status=RowStatus.SKIPPED, reason="not installed")

    assert _required(row("onnx", "onnxruntime"), None) and _required(row("source", "torch_eager"), None)
    assert not _required(row("onnx", "openvino"), None) and _required(row("onnx", "openvino"), ["openvino"])


def test_a_failed_export_stays_in_view_when_runtime_narrows(bundle, run_cli, tmp_path):
    """An artifact that was not made has one verdict (on its default runtime); --runtime naming any runtime
    that runs it keeps that verdict in view, so the failure is never dropped."""
    broken = tmp_path / "digits_cnn"
    shutil.copytree(bundle, broken)
    m = json.loads((broken / "manifest.json").read_text())
    rec = m["artifacts"]["onnx_int8"]
    (broken / rec["path"]).unlink()
    rec.update(status="failed", error="quantize_static failed (planted)", path=None, files=[], contract=None,
               size_bytes=0, checks={}, check=None)
    (broken / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", broken, "--runtime", "openvino", "--reports", tmp_path / "r")
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    rows = {(r[0], r[1]): r[2] for r in _rows(proc.stdout)}
    assert rows[("onnx_int8", "onnxruntime")] == "NOT_EXPORTED" and rows[("onnx", "openvino")] == "PASS"


def test_formats_and_runtimes_may_be_repeated_or_comma_separated():
    from deploytool.commands.validate import select_formats
    from deploytool.store.manifest import ArtifactRecord as Rec

    manifest = type("M", (), {"artifacts": {n: Rec(format=n, status=ArtifactStatus.OK, precision="fp32", tier="fp32",
                                                   runtime="x") for n in ("onnx", "tflite_fp32", "tflite_fp16")}})()
    assert select_formats(manifest, ["onnx,tflite_fp32"]) == select_formats(manifest, ["onnx", "tflite_fp32"]) == \
        ["onnx", "tflite_fp16", "tflite_fp32"][:1] + ["tflite_fp32"]
    assert select_formats(manifest, ["tflite"]) == ["tflite_fp16", "tflite_fp32"]
    assert check_runtimes(["onnxruntime,openvino", "openvino"]) == ["onnxruntime", "openvino"]
    with pytest.raises(UsageError, match="--format nope"):
        select_formats(manifest, ["onnx,nope"])
