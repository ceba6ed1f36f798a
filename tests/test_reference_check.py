"""Meaningful references and near-zero outputs, in process: parity.variation, the tiers' resolution
(absolute error where a reference is below what the precision represents), and how judging, exit
codes and the renderers treat a vacuous check."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from deploytool.checking import parity
from deploytool.checking.golden import GoldenSet
from deploytool.checking.judge import Evidence, Rules, check_accepted, exit_code, judge
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.formats import plan
from deploytool.report import junit
from deploytool.report.console import validate_table
from deploytool.report.markdown import verdict_line
from deploytool.report.view import ArtifactView
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord

RNG = np.random.default_rng(0)
FP16, INT8, FP32 = parity.TIERS["fp16"], parity.TIERS["int8"], parity.TIERS["fp32"]


# ---- parity.variation ----------------------------------------------------------------------------

def test_a_varying_output_varies_at_any_magnitude():
    x = RNG.normal(size=(16, 1, 10)).astype(np.float32)
    for scale in (1.0, 1e-30, 1e-40):  # 1e-40: float32 subnormals still vary
        v = parity.variation(x * np.float32(scale))
        assert v.status == "varies" and not v.vacuous, (scale, v)


def test_constant_zero_and_nonfinite_references_are_vacuous():
    const = np.tile(RNG.normal(size=(1, 1, 10)).astype(np.float32), (16, 1, 1))
    assert parity.variation(const).status == "constant" and parity.variation(const).vacuous
    assert parity.variation(np.full((16, 1, 4), 1e-22, np.float32)).status == "constant"  # the issue's ~1e-22 heads
    assert parity.variation(np.zeros((16, 1, 4), np.float32)).status == "zero"
    assert parity.variation(np.full((4, 2), np.nan, np.float32)).status == "nonfinite"
    # float noise relative to the magnitude is not variation; one ulp more than noise is
    noisy = const.copy()
    noisy[3, 0, 0] = np.nextafter(noisy[3, 0, 0], np.float32(np.inf))
    assert parity.variation(noisy).status == "constant"
    noisy[3, 0, 0] += abs(noisy[3, 0, 0]) * 1e-4
    assert parity.variation(noisy).status == "varies"


def test_some_elements_constant_others_varying_is_varying():
    x = RNG.normal(size=(16, 1, 10)).astype(np.float32)
    x[:, :, :9] = 3.0  # 9 of 10 logits never move
    assert parity.variation(x).status == "varies"


def test_one_sample_cannot_tell_unless_it_is_all_zero():
    assert parity.variation(RNG.normal(size=(1, 1, 4)).astype(np.float32)).status == "one_sample"
    assert not parity.variation(RNG.normal(size=(1, 1, 4)).astype(np.float32)).vacuous
    assert parity.variation(np.zeros((1, 1, 4), np.float32)).status == "zero"
    assert parity.variation(np.zeros((1, 3), np.int64)).status == "one_sample"  # class 0 is an answer


def test_integer_and_bool_outputs_vary_exactly():
    assert parity.variation(np.array([[1], [2], [1]], np.int64)).status == "varies"
    assert parity.variation(np.array([[7], [7], [7]], np.int64)).status == "constant"
    assert parity.variation(np.zeros((3, 2), np.int32)).status == "zero"
    assert parity.variation(np.array([[True], [False]])).status == "varies"
    assert parity.variation(np.array([[True], [True]])).status == "constant"


def test_inputs_vary_and_their_ranges():
    assert parity.input_ranges({"x": np.array([[-1.0], [0.5]]), "ids": np.array([[0], [7]])}) == \
        "x in [-1, 0.5], ids in [0, 7]"
    assert parity.inputs_vary({"x": RNG.normal(size=(3, 1, 2))})
    assert not parity.inputs_vary({"x": np.ones((3, 1, 2)), "ids": np.zeros((3, 1, 4), np.int64)})


# ---- reduced-precision tiers defined everywhere ---------------------------------------------------

def test_fp16_flushed_near_zero_output_passes_on_absolute_error():
    """The issue's case: max abs error 7.5e-41, cosine 0 and SQNR 0 dB because the fp16 artifact flushed
    a float32-subnormal reference to zero: judged on absolute error against fp16's resolution."""
    ref = np.full((4, 1, 3), 7.5e-41, np.float32)
    ref[1] = 2e-41
    got = np.zeros_like(ref)
    m = parity.compare(got, ref, FP16)
    assert m.cosine == 0.0 and m.sqnr_db == 0.0 and m.max_abs == pytest.approx(7.5e-41, rel=1e-2)
    v = parity.judge(m, FP16)
    assert v.passed and v.basis == "absolute" and "absolute error" in v.reason and "resolution" in v.reason
    assert v.to_dict()["basis"] == "absolute"
    assert not parity.judge(m, replace_gate(FP16)).passed  # the old rule: cosine 0 < 0.999


def replace_gate(tier):
    from dataclasses import replace
    return replace(tier, resolution=None)


def test_tiny_reference_judged_on_absolute_error_both_ways():
    ref = (RNG.normal(size=(8, 1, 4)) * 1e-6).astype(np.float32)
    close = ref + np.float32(3e-8)  # fp16 subnormal rounding: cosine and SQNR fail, the error is tiny
    assert parity.check(close, ref, FP16).passed and parity.check(close, ref, INT8).passed
    far = ref + np.float32(1e-3)  # an error above the resolution fails, whatever the reference's size
    for tier in (FP16, INT8):
        v = parity.check(far, ref, tier)
        assert not v.passed and v.basis == "absolute" and "> 6.1e-05" in v.reason


def test_normal_references_keep_the_statistical_gate():
    ref = RNG.normal(size=(8, 1, 10)).astype(np.float32)
    v = parity.check(ref * 0.5, ref, FP16, classifier=True)  # cosine 1, SQNR 6 dB
    assert not v.passed and v.to_dict()["basis"] == "statistical" and "SQNR" in v.reason
    assert parity.check(ref, ref, FP32).to_dict()["basis"] == "elementwise"


def test_an_int8_outputs_quantization_step_raises_the_resolution():
    ref = (RNG.normal(size=(8, 1, 4)) * 0.01).astype(np.float32)
    got = np.zeros_like(ref)  # below one step of 0.1: quantized to zero
    assert not parity.check(got, ref, INT8).passed
    v = parity.check(got, ref, INT8, resolution=0.1)
    assert v.passed and "0.1" in v.reason


# ---- judging ---------------------------------------------------------------------------------------

CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32", "kind": "classifier"},
                {"name": "aux", "shape": ["batch", 2], "dtype": "float32"}],
    "dims": {"batch": {"example": 1, "alt": 3}},
})


def _judge(tmp_path, ref: dict, inputs: dict | None = None, formats=("onnx", "tflite_fp16"), accept_constant=()):
    inputs = inputs if inputs is not None else {"x": RNG.normal(size=(len(ref["logits"]), 1, 4)).astype(np.float32)}
    npz.save(tmp_path / "in.npz", inputs)
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, len(ref["logits"]))]
    records, runs = {}, {}
    for fmt in formats:
        f = plan()[fmt]
        records[fmt] = ArtifactRecord(format=fmt, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                                      runtime=f.runtime, parent=f.parent, path=f"artifacts/m.{fmt}", contract=CONTRACT)
        npz.save(tmp_path / f"{fmt}.npz", ref)
        runs[fmt] = ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs={"main": str(tmp_path / f"{fmt}.npz")})
    return judge(CONTRACT, records, Evidence(runs, sets, {"main": ref}, inputs=lambda s: npz.load(s.inputs)),
                 Rules(accept_constant=accept_constant))


def _ref(n=8, constant_aux=False, zero_logits=False):
    ref = {"logits": RNG.normal(size=(n, 1, 3)).astype(np.float32),
           "aux": RNG.normal(size=(n, 1, 2)).astype(np.float32)}
    if constant_aux:
        ref["aux"] = np.tile(ref["aux"][:1], (n, 1, 1))
    if zero_logits:
        ref["logits"] = np.zeros_like(ref["logits"])
    return ref


def test_a_constant_output_makes_the_check_vacuous_and_fails_the_command(tmp_path):
    checks = _judge(tmp_path, _ref(constant_aux=True))
    for chk in checks.values():
        assert chk.status == CheckStatus.VACUOUS
        assert "'aux'" in chk.reason and "likely causes" in chk.reason and "weights not loaded" in chk.reason
        assert "'logits'" not in chk.reason and "\n" not in chk.reason and "(golden inputs: x in [" in chk.reason
        main = chk.sets["main"]
        assert main["aux"]["reference"]["vacuous"] and not main["logits"]["reference"]["vacuous"]
    assert exit_code(checks, strict=False) == errors.PARITY
    table = validate_table(_manifest(checks), checks)
    assert "VACUOUS" in table and "PASS" not in table


def test_accepting_the_constant_output_says_so_and_is_not_a_pass(tmp_path):
    for accept in (["aux"], ["*"]):
        checks = _judge(tmp_path, _ref(constant_aux=True), accept_constant=accept)
        assert {c.status for c in checks.values()} == {CheckStatus.CONSTANT_ACCEPTED}
        assert "accepted" in checks["onnx"].reason and "'aux'" in checks["onnx"].reason
        assert exit_code(checks, strict=False) == errors.OK
    # accepting another output does not accept this one
    checks = _judge(tmp_path, _ref(constant_aux=True), accept_constant=["logits"])
    assert checks["onnx"].status == CheckStatus.VACUOUS


def test_all_zero_reference_and_identical_inputs_are_named(tmp_path):
    same = {"x": np.ones((8, 1, 4), np.float32)}
    chk = _judge(tmp_path, _ref(zero_logits=True), inputs=same)["onnx"]
    assert chk.status == CheckStatus.VACUOUS and "all zero" in chk.reason
    assert "golden inputs themselves are identical" in chk.reason


def test_a_failure_stays_a_failure_on_a_constant_reference(tmp_path):
    ref = _ref(constant_aux=True)
    checks = _judge_with(tmp_path, ref, {**ref, "logits": ref["logits"] + 1.0})
    assert checks["onnx"].status == CheckStatus.FAIL and "vacuous" not in checks["onnx"].reason
    assert exit_code(checks, False) == errors.PARITY


def test_a_failure_after_a_vacuous_parent_is_blamed_on_its_own_hop(tmp_path):
    ref = _ref(constant_aux=True)
    checks = _judge_with(tmp_path, ref, {**ref, "logits": ref["logits"] + 1.0}, fmt="savedmodel",
                         also={"onnx": ref})
    assert checks["onnx"].status == CheckStatus.VACUOUS and checks["savedmodel"].status == CheckStatus.FAIL
    assert checks["savedmodel"].hop_blamed == "onnx -> savedmodel"


def _judge_with(tmp_path, ref, got, fmt="onnx", also=None):
    records, runs = {}, {}
    for name, out in {**(also or {}), fmt: got}.items():
        f = plan()[name]
        records[name] = ArtifactRecord(format=name, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                                       runtime=f.runtime, parent=f.parent, path=f"artifacts/m.{name}",
                                       contract=CONTRACT)
        npz.save(tmp_path / f"got.{name}.npz", out)
        runs[name] = ArtifactRan(status=RunStatus.OK, runtime=f.runtime,
                                 outputs={"main": str(tmp_path / f"got.{name}.npz")})
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, len(ref["logits"]))]
    return judge(CONTRACT, records, Evidence(runs, sets, {"main": ref}))


def test_one_sample_passes_with_a_note_that_variation_was_not_checked(tmp_path):
    chk = _judge(tmp_path, _ref(n=1))["onnx"]
    assert chk.status == CheckStatus.PASS
    assert any("cannot be told from the 1 main golden sample" in n and "only an artifact returning all zeros could "
               "be tried" in n for n in chk.notes)
    assert [d["passed"] for d in chk.sets["main"]["logits"]["decoys"]] == [False, None, None]
    assert "cannot be told" in validate_table(_manifest({"onnx": chk}), {"onnx": chk})


def test_tiny_references_are_vacuous_in_every_tier_and_pass_scaled(tmp_path):
    """Issue 22 item 2: an output far below the fp32 atol, and below the fp16 resolution (judged on absolute
    error there), passes an artifact that returns zeros: no plain PASS. The same output scaled passes."""
    ref = _ref()
    checks = _judge(tmp_path, {k: v * np.float32(1e-30) for k, v in ref.items()})
    for fmt, basis in (("onnx", "judged on elementwise atol/rtol (fp32 tier)"),
                       ("tflite_fp16", "judged on absolute error (max 6.1e-05: reference below the fp16 resolution)")):
        chk = checks[fmt]
        assert chk.status == CheckStatus.VACUOUS, (fmt, chk.reason)
        assert chk.basis == f"{basis}, which an artifact returning all zeros or the per-element mean over the " \
                            "golden samples or another sample's reference would pass too: proves nothing"
        assert "an artifact returning all zeros would pass too (max abs error" in chk.reason
        assert "'logits'" in chk.reason and "'aux'" in chk.reason and "tighten the tolerance" in chk.reason
        assert "likely causes" not in chk.reason  # the reference varies: not a head that did not load
        assert chk.sets["main"]["logits"]["reference"]["status"] == "varies"
        assert chk.sets["main"]["logits"]["reference"]["vacuous"]
    assert exit_code(checks, strict=False) == errors.PARITY
    scaled = _judge(tmp_path, ref)
    assert {c.status for c in scaled.values()} == {CheckStatus.PASS}
    assert not any(d["passed"] for d in scaled["onnx"].sets["main"]["logits"]["decoys"])


def test_accepted_names_must_be_outputs():
    assert check_accepted(CONTRACT, ["aux", "*"]) == ["aux", "*"] and check_accepted(CONTRACT, "aux") == ["aux"]
    with pytest.raises(ValueError, match="no such output"):
        check_accepted(CONTRACT, ["nope"])


# ---- renderers ---------------------------------------------------------------------------------------

def test_junit_and_the_report_never_count_vacuous_as_passed(tmp_path):
    checks = _judge(tmp_path, _ref(constant_aux=True), formats=("onnx",))
    suite = ET.fromstring(junit.render("m", checks))
    assert suite.get("failures") == "1"
    (fail,) = suite.iter("failure")
    assert fail.get("type") == "VacuousReference"
    accepted = _judge(tmp_path, _ref(constant_aux=True), formats=("onnx",), accept_constant=["aux"])
    suite = ET.fromstring(junit.render("m", accepted))
    assert suite.get("failures") == "0" and suite.get("skipped") == "1"
    vac = ArtifactView("onnx", "onnxruntime", "fp32", [], 1, "ok", {"ci": "vacuous"})
    acc = ArtifactView("tflite_fp32", "litert", "fp32", [], 1, "ok", {"ci": "constant_accepted"})
    assert vac.failed and not vac.passed and not acc.passed and not acc.failed
    assert verdict_line([vac, acc]).startswith("**FAIL**") and "vacuous" in verdict_line([vac, acc])
    assert "constant_accepted" in verdict_line([acc])


def _manifest(checks):
    class M:  # validate_table reads each artifact's tier only
        artifacts = {c.format: type("R", (), {"tier": plan()[c.format].tier, "route": None})() for c in checks.values()}
    return M()
