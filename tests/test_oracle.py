"""The float64 oracle for the fp32 tier (issue 25 item 3; checking/oracle.py, sources/_float64.py): the rule on
synthetic outputs in process, then end to end on tests/models/cancellation.py (outputs that are differences of
~1e4 intermediates), where the fixed fp32 tier fails a correct ONNX artifact and the oracle passes it, and a
planted relative weight change of 1e-3 fails under the oracle."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TEST_MODELS, error_lines, result_of

from deploytool.checking import oracle
from deploytool.checking.golden import GoldenSet
from deploytool.checking.judge import Evidence, Rules, judge
from deploytool.checking.parity import Tolerances
from deploytool.core import errors, npz, records
from deploytool.core.contract import Contract
from deploytool.formats import plan
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.sources import _float64 as float64
from deploytool.store import bundle as B
from deploytool.store.manifest import ArtifactRecord

CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
    "outputs": [{"name": "y", "shape": ["batch", 3], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3}},
})
RNG = np.random.default_rng(0)
ORACLE = RNG.normal(size=(8, 1, 3)) * 10  # float64: the exact result
NOISE = 1e-3  # the fp32 reference's own error against it (as a model with cancellation has)
REF = (ORACLE + RNG.choice([-NOISE, NOISE], size=ORACLE.shape)).astype(np.float32)


ON = Rules(oracle={"kind": "float64", "why_not": ""})


def _judge(tmp_path, got: np.ndarray, rules: Rules = ON, oracles: dict | None = None, fmt: str = "onnx"):
    path = tmp_path / f"{fmt}.main.npz"
    npz.save(path, {"y": got})
    f = plan()[fmt]
    rec = ArtifactRecord(format=fmt, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier, runtime=f.runtime,
                         parent=f.parent, path=f"artifacts/m.{fmt}", contract=CONTRACT)
    run = ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs={"main": str(path)})
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]
    evidence = Evidence({fmt: run}, sets, {"main": {"y": REF}},
                        oracles={"main": {"y": ORACLE}} if oracles is None else oracles)
    return judge(CONTRACT, {fmt: rec}, evidence, rules)[fmt]


def test_an_artifact_as_far_from_float64_as_the_reference_passes_where_the_fixed_tier_fails(tmp_path):
    # another correct fp32 implementation: its own rounding, of the reference's size, in other places
    other = (ORACLE + RNG.choice([-NOISE, NOISE], size=ORACLE.shape)).astype(np.float32)
    chk = _judge(tmp_path, other)
    assert chk.status == CheckStatus.PASS, chk.reason
    f = chk.oracle["sets"]["main"]["y"]
    assert f["passed"] and not f["fixed_tier"]["passed"]  # the fixed tier (1e-4 + 1e-4 |y|) fails it
    assert chk.oracle["passed"] and not chk.oracle["fixed_tier_passed"]
    assert f["noise_floor"] == pytest.approx(NOISE, rel=1e-3) and f["ratio"] < 2
    assert len(f["noise_per_sample"]) == len(f["error_per_sample"]) == 8
    assert "float64 oracle" in chk.basis
    assert any(n.startswith("float64 oracle: PASS (max ") and n.endswith("fixed fp32 tier: FAIL") for n in chk.notes)
    # without the rule the same artifact fails the fixed tier
    fixed = _judge(tmp_path, other, rules=Rules())
    assert fixed.status == CheckStatus.FAIL and fixed.oracle is None


def test_an_error_beyond_factor_times_the_noise_floor_fails_naming_both(tmp_path):
    wrong = REF.copy()
    wrong[3, 0, 1] += 40 * NOISE  # 40x the reference's own error
    chk = _judge(tmp_path, wrong)
    assert chk.status == CheckStatus.FAIL
    assert chk.reason.startswith("y: sample 3: error ") and "against the float64 result is" in chk.reason and \
        "the fp32 reference's own on it (0.001; max 10x)" in chk.reason, chk.reason
    f = chk.oracle["sets"]["main"]["y"]
    assert not f["passed"] and f["ratio"] > oracle.FACTOR and f["error_per_sample"][3] == max(f["error_per_sample"])


def test_each_sample_is_judged_on_its_own_noise_not_the_largest_samples(tmp_path):
    """Three samples of magnitude 1e3 and one of 1e-3: a candidate that returns zeros for the small one is off by
    all of it (1e-3), far within 10x the large samples' fp32 noise (~1e-4 each); judged per sample it fails, as the
    fixed tier fails it."""
    rng = np.random.default_rng(3)
    exact = np.concatenate([rng.normal(size=(3, 1, 3)) * 1e3, rng.normal(size=(1, 1, 3)) * 1e-3])
    ref = exact.astype(np.float32)
    zeros_small = ref.copy()
    zeros_small[3] = 0
    m = oracle.measure(zeros_small, ref, exact)
    assert not m["passed"] and m["worst"]["sample"] == 3 and m["ratio"] > 1e3, m
    # what the rule over the whole set let through: 10x the largest noise or 4-ulp floor of any sample
    assert m["error"] <= oracle.FACTOR * max(m["noise_floor"], m["ulps_floor"])
    assert oracle.measure(ref.copy(), ref, exact)["passed"]  # the correct output still passes
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 4)]
    chk = judge(CONTRACT, {"onnx": _record()}, Evidence({"onnx": _ran(tmp_path, zeros_small)}, sets,
                                                          {"main": {"y": ref}}, oracles={"main": {"y": exact}}),
                ON)["onnx"]
    assert chk.status == CheckStatus.FAIL and chk.reason.startswith("y: sample 3: error "), chk.reason
    f = chk.oracle["sets"]["main"]["y"]
    assert not f["passed"] and not f["fixed_tier"]["passed"]
    # the decoys are judged per sample too: the set's mean is the large samples', far from the small one
    mean = np.broadcast_to(ref.mean(axis=0), ref.shape).astype(np.float32)
    assert not oracle.decoy_rule(ref, exact)(mean)[0]
    # a sample of zeros is held to float32's denormal range, not to nothing: a runtime that flushes denormals passes
    zeros = exact.copy()
    zeros[3] = 0
    denormal = zeros.astype(np.float32)
    denormal[3] = 1e-40
    assert oracle.measure(denormal, zeros.astype(np.float32), zeros)["passed"]
    assert not oracle.measure(np.where(zeros == 0, 1e-9, zeros).astype(np.float32), zeros.astype(np.float32),
                              zeros)["passed"]


def test_the_decoys_are_judged_by_the_oracle_rule(tmp_path):
    chk = _judge(tmp_path, REF.copy())
    decoys = chk.sets["main"]["y"]["decoys"]
    assert {d["name"] for d in decoys} == {"zeros", "mean", "shuffled"}
    assert all(not d["passed"] and "against the float64 result" in d["detail"] for d in decoys), decoys
    # an output too small for the noise floor: the mean passes the oracle rule too, so the check is vacuous
    flat = ORACLE * 0 + 5.0 + RNG.normal(size=ORACLE.shape) * 1e-4
    ref = (flat + 1e-3).astype(np.float32)
    vac = judge(CONTRACT, {"onnx": _record()}, Evidence({"onnx": _ran(tmp_path, ref)}, _sets(tmp_path),
                                                          {"main": {"y": ref}}, oracles={"main": {"y": flat}}),
                Rules(oracle={"kind": "float64"}))["onnx"]
    assert vac.status == CheckStatus.VACUOUS and "float64" in vac.reason, vac.reason


def _record() -> ArtifactRecord:
    f = plan()["onnx"]
    return ArtifactRecord(format="onnx", status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                          runtime=f.runtime, path="artifacts/m.onnx", contract=CONTRACT)


def _ran(tmp_path, got) -> ArtifactRan:
    npz.save(tmp_path / "got.npz", {"y": got})
    return ArtifactRan(status=RunStatus.OK, runtime="onnxruntime", outputs={"main": str(tmp_path / "got.npz")})


def _sets(tmp_path) -> list[GoldenSet]:
    return [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]


def test_structural_failures_and_other_tiers_keep_their_own_rule(tmp_path):
    chk = _judge(tmp_path, REF.astype(np.float64))  # the values, in the wrong dtype
    assert chk.status == CheckStatus.FAIL and "dtype float64" in chk.reason
    nan = REF.copy()
    nan[0, 0, 0] = np.nan
    assert "NaN/Inf" in _judge(tmp_path, nan).reason
    # an fp16 target is judged by its own tier; the oracle does not apply to it
    assert _judge(tmp_path, REF.copy(), fmt="tflite_fp16").oracle is None
    # a user's tolerance override is what they asked for: no oracle
    rules = Rules(oracle={"kind": "float64"}, tolerances=Tolerances({"*:*": {"atol": 1e-2}}))
    assert _judge(tmp_path, REF.copy(), rules=rules).oracle is None


def test_no_oracle_in_the_bundle_is_said_once_and_the_fixed_tier_judges(tmp_path):
    chk = _judge(tmp_path, REF.copy(), rules=Rules(oracle={"kind": "float64", "why_not": "no float64 oracle for a "
                                                            "Keras source"}), oracles={})
    assert chk.status == CheckStatus.PASS and chk.oracle == {"kind": "float64", "available": False,
                                                              "why_not": "no float64 oracle for a Keras source"}
    assert sum("Keras" in n for n in chk.notes) == 1
    assert "elementwise atol/rtol" in chk.basis


def test_the_float64_outputs_are_checked_before_they_become_an_oracle():
    ref = {"y": np.ones((2, 3), np.float32), "ids": np.zeros((2,), np.int64)}
    kept, why = float64.check({"y": np.ones((2, 3)), "ids": np.zeros((2,), np.int64)}, ref)
    assert why == "" and kept is not None and list(kept) == ["y"] and kept["y"].dtype == np.float64
    assert "is [2, 4] in float64" in float64.check({"y": np.ones((2, 4)), "ids": ref["ids"]}, ref)[1]
    assert "NaN/Inf" in float64.check({"y": np.full((2, 3), np.nan), "ids": ref["ids"]}, ref)[1]
    assert float64.check({"y": np.ones((2, 3))}, ref)[0] is None


def test_option_values_and_file_names():
    assert oracle.check_option(None) is None and oracle.check_option("float64") == "float64"
    with pytest.raises(ValueError, match="--oracle 'float32': must be one of float64, none"):
        oracle.check_option("float32")
    assert oracle.path_of("golden/reference.npz") == "golden/oracle.npz"
    assert oracle.path_of("golden/reference_alt.npz") == "golden/oracle_alt.npz"


# ---- end to end: the cancellation model -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cancellation(run_cli, tmp_path_factory):
    """tests/models/cancellation.py and the planted model, each exported with --oracle float64 (onnx only)."""
    out = tmp_path_factory.mktemp("oracle")
    proc = run_cli("export", "--model", TEST_MODELS / "cancellation.py", "-f", "onnx", "--runtime", "onnxruntime",
                   "--oracle", "float64", "--samples", "8", "--out", out)
    planted = run_cli("export", "--model", TEST_MODELS / "cancellation_planted.py", "-f", "onnx", "--runtime",
                      "onnxruntime", "--samples", "8", "--oracle", "float64", "--out", out)
    assert planted.returncode == 0, planted.stdout + planted.stderr
    return out / "cancellation", proc, out / "cancellation_planted"


def _copy(src, tmp_path):
    dest = tmp_path / "cancellation"
    shutil.copytree(src, dest)
    return dest


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_cancellation_fixed_tier_fails_the_correct_artifact_the_oracle_passes_it(cancellation, run_cli, tmp_path):
    bundle, proc, _ = cancellation
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = _manifest(bundle)
    assert m["golden"]["sets"]["main"]["oracle"] == "golden/oracle.npz"
    assert "golden/oracle.npz" in {f["path"] for f in m["golden"]["files"]}
    assert m["golden"]["oracle"]["why_not"] == "" and m["golden"]["oracle"]["seconds"] >= 0
    data = json.loads((bundle / "reports/validation.json").read_text())
    chk = result_of(data, "onnx")
    assert chk["status"] == "pass", chk["reason"]
    o = chk["oracle"]
    assert o["passed"] and not o["fixed_tier_passed"], o  # side by side: the fixed tier fails it
    f = o["sets"]["main"]["y"]
    assert f["noise_floor"] > 1e-3 and f["ratio"] <= oracle.FACTOR
    assert run_cli("report", bundle).returncode == 0
    section = (bundle / "reports/report.md").read_text().split("## Float64 oracle (fp32 tier)")[1]
    assert "| onnx@onnxruntime | main | y |" in section and "x (10x) | PASS | FAIL |" in section, section
    page = (bundle / "reports/report.html").read_text()  # the same section in report.html
    assert "<h2>Float64 oracle (fp32 tier)</h2>" in page and "<td>onnx@onnxruntime</td><td>main</td><td>y</td>" in \
        page and "x (10x)</td><td>PASS</td><td>FAIL</td>" in page
    # validate follows the bundle; --oracle none is the fixed tier, which fails the same artifact
    proc = run_cli("validate", bundle, "--runtime", "onnxruntime")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: the bundle holds a float64 oracle from its export: the fp32 tier is judged against it (applied; " \
        "--oracle none ignores it)" in proc.stdout
    fixed = run_cli("validate", bundle, "--runtime", "onnxruntime", "--oracle", "none", "--reports", tmp_path / "r")
    assert fixed.returncode == errors.PARITY and "from its export; --oracle none: the fixed fp32 tier judges" \
        in fixed.stdout, fixed.stdout
    assert "outside atol=0.0001 rtol=0.0001" in json.loads((tmp_path / "r/validation.json").read_text())[
        "targets"]["onnx@onnxruntime"]["reason"]


def test_cancellation_a_planted_weight_change_of_1e_3_fails_under_the_oracle(cancellation, run_cli, tmp_path):
    src, _, planted = cancellation
    bundle = _copy(src, tmp_path)
    m = _manifest(bundle)
    rec = m["artifacts"]["onnx"]
    shutil.copyfile(planted / _manifest(planted)["artifacts"]["onnx"]["path"], bundle / rec["path"])
    rec["files"] = records.dump(B.file_records(bundle, bundle / rec["path"]))  # what a (bad) converter wrote
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", bundle, "--runtime", "onnxruntime", "--reports", tmp_path / "r")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    chk = json.loads((tmp_path / "r/validation.json").read_text())["targets"]["onnx@onnxruntime"]
    assert chk["status"] == "fail" and "against the float64 result is" in chk["reason"], chk["reason"]
    f = chk["oracle"]["sets"]["main"]["y"]
    assert not f["passed"] and f["ratio"] > oracle.FACTOR and not f["fixed_tier"]["passed"]
    assert any("against the float64 result" in ln for ln in error_lines(proc.stderr)), proc.stderr


def test_the_reader_checks_the_oracle_and_validate_needs_one_to_ask_for_it(cancellation, run_cli, tmp_path):
    from faults import rehash

    src, _, planted = cancellation
    bundle = _copy(src, tmp_path)
    path = bundle / "golden/oracle.npz"
    with np.load(path) as d:
        y = d["y"].copy()
    y[2, 0, 5] = np.nan
    np.savez(path, y=y)
    rehash(bundle)
    proc = run_cli("validate", bundle, "--runtime", "onnxruntime")
    assert proc.returncode == errors.BUNDLE, proc.stdout + proc.stderr
    assert error_lines(proc.stderr) == [f"deploytool: error: bundle {bundle}: golden data: set 'main': float64 "
                                        "oracle: 'y' holds NaN/Inf"], proc.stderr
    np.savez(path, y=y.astype(np.float32))
    rehash(bundle)
    assert "expected float64[8, 1, 16]" in run_cli("validate", bundle, "--runtime", "onnxruntime").stderr
    # a bundle exported without it: --oracle float64 is a usage error, one line
    plain = _copy(planted, tmp_path / "plain")
    m = _manifest(plain)
    for info in m["golden"]["sets"].values():
        (plain / info.pop("oracle")).unlink()
    del m["golden"]["oracle"]
    (plain / "manifest.json").write_text(json.dumps(m))
    rehash(plain)
    proc = run_cli("validate", plain, "--runtime", "onnxruntime", "--oracle", "float64")
    assert proc.returncode == errors.USAGE and "holds no float64 oracle (export it with --oracle float64)" in \
        proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_bundle_exported_with_the_option_but_without_an_oracle_says_so_and_float64_is_a_usage_error(
        cancellation, run_cli, tmp_path):
    """export --oracle float64 of a source with no float64 run (Keras, SavedModel, an op without a double kernel)
    records why and writes no oracle file: validate says the fixed tier judges (not that the oracle is applied),
    and an explicit --oracle float64 is a usage error naming why."""
    from faults import rehash

    src, _, _ = cancellation
    bundle = _copy(src, tmp_path)
    m = _manifest(bundle)
    for info in m["golden"]["sets"].values():
        (bundle / info.pop("oracle")).unlink()
    why = "no float64 oracle: the model fails in float64 (no double kernel) (on the main golden set)"
    m["golden"]["oracle"]["why_not"] = why
    (bundle / "manifest.json").write_text(json.dumps(m))
    rehash(bundle)
    proc = run_cli("validate", bundle, "--runtime", "onnxruntime", "--oracle", "float64")
    assert proc.returncode == errors.USAGE and error_lines(proc.stderr) == [
        f"deploytool: error: --oracle float64: bundle {bundle} holds no float64 oracle: {why}"], proc.stderr
    proc = run_cli("validate", bundle, "--runtime", "onnxruntime", "--reports", tmp_path / "r")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr  # the fixed tier fails this artifact
    assert "applied" not in proc.stdout and f"note: the bundle was exported with --oracle float64 but holds no " \
        f"float64 oracle ({why}): the fixed fp32 tier judges" in proc.stdout, proc.stdout
    chk = json.loads((tmp_path / "r/validation.json").read_text())["targets"]["onnx@onnxruntime"]
    assert chk["oracle"] == {"kind": "float64", "available": False, "why_not": why}


def _opened(oracle_info, set_oracle, arrays):
    sets = {"main": SimpleNamespace(oracle=set_oracle)}
    golden = SimpleNamespace(oracle=oracle_info, sets=sets)
    return SimpleNamespace(root=Path("b"), manifest=SimpleNamespace(golden=golden), oracles=arrays)


def test_validate_treats_an_export_without_an_oracle_as_none():
    y = {"main": {"y": np.zeros((2, 3))}}
    held = _opened({"kind": "float64", "why_not": ""}, "golden/oracle.npz", y)
    assert oracle.for_validate(held, None) == ({"kind": "float64", "why_not": ""}, y)
    assert "(applied; --oracle none ignores it)" in oracle.note(held.manifest, None)
    assert oracle.note(held.manifest, "none").endswith("; --oracle none: the fixed fp32 tier judges")
    keras = _opened({"kind": "float64", "why_not": "no float64 oracle for a Keras source"}, None, {})
    no_files = _opened({"kind": "float64", "why_not": ""}, None, {})
    for opened, why in ((keras, "no float64 oracle for a Keras source"),
                        (no_files, "the bundle holds no float64 oracle file (golden.sets.*.oracle)")):
        with pytest.raises(errors.UsageError, match=rf"^--oracle float64: bundle b holds no float64 oracle: "
                                                    rf"{re.escape(why)}$"):
            oracle.for_validate(opened, "float64")
        assert oracle.for_validate(opened, None) == ({"kind": "float64", "why_not": why}, {})
        assert oracle.for_validate(opened, "none") == (None, {})
        assert oracle.note(opened.manifest, None) == (
            f"note: the bundle was exported with --oracle float64 but holds no float64 oracle ({why}): the fixed "
            "fp32 tier judges")
    plain = _opened(None, None, {})
    assert oracle.note(plain.manifest, None) is None and oracle.for_validate(plain, None) == (None, {})


def test_an_onnx_source_gets_its_oracle_from_onnxruntime_in_double(cancellation, run_cli, tmp_path):
    """The ONNX artifact of the cancellation bundle exported as a source: retyped to double, it runs on
    onnxruntime's CPU kernels, so it has an oracle, and its own onnx artifact passes against it."""
    src, _, _ = cancellation
    model = tmp_path / "cancellation.onnx"
    shutil.copyfile(src / _manifest(src)["artifacts"]["onnx"]["path"], model)
    proc = run_cli("export", "--model", model, "-f", "onnx", "--runtime", "onnxruntime", "--oracle", "float64",
                   "--samples", "4", "--out", tmp_path / "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = _manifest(tmp_path / "b/cancellation")
    assert m["golden"]["oracle"]["why_not"] == "" and m["golden"]["sets"]["main"]["oracle"] == "golden/oracle.npz"


def test_oracle_is_an_option_of_export_and_validate_and_a_config_key(tmp_path):
    from click.testing import CliRunner

    from deploytool import config
    from deploytool.cli import main
    from deploytool.cli.options import option_names

    path = tmp_path / "deploy.toml"
    for command in ("export", "validate"):
        path.write_text(f'[{command}]\noracle = "float64"\n')
        assert config.load(path, command, option_names(main.commands[command])) == {"oracle": "float64"}
        assert "--oracle [float64|none]" in CliRunner().invoke(main, [command, "--help"]).output
    result = CliRunner().invoke(main, ["export", "--model", "digits_cnn", "--oracle", "float32"])
    assert result.exit_code == errors.USAGE and "'float32' is not one of 'float64', 'none'" in result.output


def test_a_source_without_a_float64_run_says_why():
    for path, what in (("m.keras", "a Keras"), ("saved_model_dir", "a SavedModel")):
        run, why = float64.oracle_of(SimpleNamespace(module=None if "dir" in path else object(), path=Path(path)))
        assert run is None and why == f"no float64 oracle for {what} source (torch and ONNX sources only)"


@pytest.mark.slow  # imports torch
def test_a_torch_model_that_fails_in_float64_has_no_oracle_and_says_why(tmp_path):
    import torch

    class CastsToFloat32(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x.float())  # float32 input into float64 weights: no such kernel

    loaded = SimpleNamespace(module=CastsToFloat32(), contract=CONTRACT, path=None)
    inputs = {"x": np.ones((2, 1, 4), np.float32)}
    writer = float64.Writer(loaded)
    writer.add("main", tmp_path / "oracle.npz", inputs, {"y": np.ones((2, 1, 3), np.float32)})
    result = writer.result()
    assert result["sets"] == {} and not (tmp_path / "oracle.npz").exists()
    assert result["why_not"].startswith("no float64 oracle: the model fails in float64 (") and \
        result["why_not"].endswith("(on the main golden set)"), result
    # the same model without the cast has one, float64, of the reference's shape
    loaded.module = torch.nn.Sequential(torch.nn.Linear(4, 3))
    writer = float64.Writer(loaded)
    writer.add("main", tmp_path / "oracle.npz", inputs, {"y": np.ones((2, 1, 3), np.float32)})
    assert writer.result()["sets"] == {"main": True} and npz.load(tmp_path / "oracle.npz")["y"].dtype == np.float64
