"""The informativeness rule (issue 22 item 2), in process on arrays: a check may PASS only if an artifact that
returns all zeros, the per-element mean over the samples, or another sample's reference would fail it, judged
by the same comparison (tier, tolerances, resolution) or the same task-accuracy rule."""
from __future__ import annotations

import numpy as np

from deploytool.checking import informative, parity
from deploytool.checking.golden import GoldenSet
from deploytool.checking.judge import Evidence, Rules, exit_code, judge
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.formats import plan
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord

RNG = np.random.default_rng(3)
FP32, FP16 = parity.TIERS["fp32"], parity.TIERS["fp16"]
CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32", "kind": "classifier"}],
    "dims": {"batch": {"example": 1, "alt": 3}},
})


def _passing(ref: np.ndarray, tier: parity.Tier, classifier: bool = False) -> list[str]:
    def verdict_of(candidate):
        return parity.check(candidate, ref, tier, classifier).passed, ""
    return [d.name for d in informative.passing(informative.trivial_passes(ref, verdict_of))]


# ---- the decoys -------------------------------------------------------------------------------------------

def test_decoys_are_zeros_the_mean_and_a_derangement_in_the_references_dtype():
    ref = RNG.normal(size=(5, 1, 3)).astype(np.float32)
    made = informative.decoys(ref)
    assert set(made) == set(informative.DECOYS)
    for a in made.values():
        assert a is not None and a.shape == ref.shape and a.dtype == ref.dtype
    assert not made["zeros"].any()
    np.testing.assert_allclose(made["mean"][2], ref.mean(axis=0), rtol=1e-6)
    shuffled = made["shuffled"]
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, ref))  # the same samples ...
    assert not any(np.array_equal(shuffled[i], ref[i]) for i in range(len(ref)))  # ... none in its own place
    ints = informative.decoys(np.array([[0, 3], [1, 4], [1, 4]], np.int64))["mean"]
    assert ints.dtype == np.int64 and ints.tolist() == [[1, 4]] * 3


def test_one_sample_gives_only_the_zeros_decoy_and_says_why():
    ref = RNG.normal(size=(1, 3)).astype(np.float32)
    made = informative.decoys(ref)
    assert made["mean"] is None and made["shuffled"] is None and made["zeros"] is not None
    tried = informative.trivial_passes(ref, lambda c: (True, "x"))
    assert [(d.name, d.passed) for d in tried] == [("zeros", True), ("mean", None), ("shuffled", None)]
    assert tried[1].detail == "cannot be made from one golden sample"


# ---- each decoy against the tiers ---------------------------------------------------------------------------

def test_an_output_of_normal_magnitude_and_spread_fails_every_decoy():
    ref = RNG.normal(size=(8, 1, 10)).astype(np.float32)
    assert _passing(ref, FP32) == [] and _passing(ref, FP16, classifier=True) == []


def test_zeros_pass_an_output_far_below_the_fp32_atol():
    ref = RNG.normal(size=(8, 1, 10)).astype(np.float32) * np.float32(1e-6)
    assert "zeros" in _passing(ref, FP32)
    assert _passing(ref * np.float32(1e6), FP32) == []


def test_zeros_pass_an_output_below_the_fp16_resolution_judged_on_absolute_error():
    ref = RNG.normal(size=(8, 1, 10)).astype(np.float32) * np.float32(1e-7)
    assert parity.check(np.zeros_like(ref), ref, FP16).basis == "absolute"
    assert "zeros" in _passing(ref, FP16)


def test_the_mean_passes_an_output_that_varies_less_than_the_tolerance():
    ref = (1.0 + 1e-6 * RNG.normal(size=(8, 1, 10))).astype(np.float32)
    assert parity.variation(ref).status == "varies"  # it does vary: the old rule let it pass
    assert _passing(ref, FP32) == ["mean", "shuffled"]
    wide = (1.0 + RNG.normal(size=(8, 1, 10))).astype(np.float32)
    assert _passing(wide, FP32) == []


def test_the_mean_passes_the_fp16_tier_when_a_common_part_dominates_the_samples():
    common = RNG.normal(size=(1, 1, 10))
    ref = (common + 1e-3 * RNG.normal(size=(8, 1, 10))).astype(np.float32)  # cosine to the mean > 0.999
    assert "mean" in _passing(ref, FP16)


def test_shuffled_passes_when_the_samples_are_the_same_and_fails_when_any_moves():
    a = RNG.normal(size=(1, 10)).astype(np.float32)
    assert _passing(np.concatenate([a, a, a]), FP32) == ["mean", "shuffled"]
    moved = np.concatenate([a, a, a + 1])  # the mean is 1/3 off everywhere; the shuffle puts a + 1 on a
    assert _passing(moved, FP32) == []


# ---- in the judge ---------------------------------------------------------------------------------------------

def _judge(tmp_path, ref: np.ndarray, fmt: str = "onnx", rules: Rules | None = None, labels=None) -> dict:
    f = plan()[fmt]
    record = ArtifactRecord(format=fmt, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                            runtime=f.runtime, parent=f.parent, path=f"artifacts/m.{fmt}", contract=CONTRACT)
    npz.save(tmp_path / "got.npz", {"logits": ref})
    label_path = None
    if labels is not None:
        label_path = tmp_path / "labels.npz"
        npz.save(label_path, {"labels": labels})
    name = "main" if labels is None else "labelled"
    sets = [GoldenSet(name, tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, len(ref), label_path,
                      "logits" if labels is not None else None)]
    run = ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs={name: str(tmp_path / "got.npz")})
    return judge(CONTRACT, {fmt: record}, Evidence({fmt: run}, sets, {name: {"logits": ref}}), rules)


def test_a_check_a_decoy_passes_is_vacuous_with_the_decoy_and_the_way_out(tmp_path):
    ref = (1.0 + 1e-6 * RNG.normal(size=(8, 1, 3))).astype(np.float32)
    chk = _judge(tmp_path, ref)["onnx"]
    assert chk.status == CheckStatus.VACUOUS
    assert "an artifact returning the per-element mean over the golden samples would pass too (max abs error " in \
        chk.reason and "on elementwise atol/rtol (fp32 tier))" in chk.reason
    assert "--atol FMT:OUTPUT=VALUE" in chk.reason and chk.reason.endswith("--accept-uninformative logits accepts it")
    assert [d["name"] for d in chk.sets["main"]["logits"]["decoys"] if d["passed"]] == ["mean", "shuffled"]
    assert exit_code({"onnx": chk}, strict=False) == errors.PARITY
    # a tolerance tight enough to tell the samples apart makes the same check informative: the same rule decides
    tight = _judge(tmp_path, ref, rules=Rules(tolerances=parity.Tolerances.from_specs(["onnx:logits=1e-8"],
                                                                                        ["onnx:logits=1e-8"])))
    assert tight["onnx"].status == CheckStatus.PASS, tight["onnx"].reason
    accepted = _judge(tmp_path, ref, rules=Rules(accept_constant=["logits"]))["onnx"]
    assert accepted.status == CheckStatus.CONSTANT_ACCEPTED and "accepted with --accept-uninformative" in \
        accepted.reason
    assert exit_code({"onnx": accepted}, strict=False) == errors.OK


def test_an_accuracy_gated_output_is_checked_by_the_accuracy_rule(tmp_path):
    # int8 with labels is judged on task accuracy: logits that vary widely (no tensor decoy passes the int8 tier)
    # but always pick class 0, with every label 0, pass an artifact that returns their mean: top-1 the same.
    ref = 10 * RNG.normal(size=(8, 1, 3)).astype(np.float32)
    ref[..., 0] = ref[..., 1:].max(axis=-1) + 1.0
    assert _passing(ref, parity.TIERS["int8"], classifier=True) == []
    chk = _judge(tmp_path, ref, fmt="onnx_int8", labels=np.zeros(8, np.int64))["onnx_int8"]
    assert chk.status == CheckStatus.VACUOUS, chk.reason
    assert "an artifact returning the per-element mean over the golden samples would pass too (accuracy 100.0% " \
           "vs the source's 100.0%" in chk.reason and "on task accuracy on the labelled set" in chk.reason
    assert [d["name"] for d in chk.accuracy["decoys"] if d["passed"]] == ["zeros", "mean", "shuffled"]  # argmax 0
    # labels that the source gets right across classes: the mean's single class loses accuracy, it fails
    varied = RNG.normal(size=(8, 1, 3)).astype(np.float32)
    ok = _judge(tmp_path, varied, fmt="onnx_int8", labels=np.argmax(varied.reshape(8, 3), axis=-1))["onnx_int8"]
    assert ok.status == CheckStatus.PASS, ok.reason
    assert not any(d["passed"] for d in ok.accuracy["decoys"])
