"""Judging, blame and exit codes, in process, on synthetic outputs (no runtime, no export)."""
from __future__ import annotations

import numpy as np
import pytest

from deploytool.checking.golden import GoldenSet
from deploytool.checking.judge import ArtifactCheck, Evidence, Rules, blame, exit_code, judge, worst_sample
from deploytool.checking.parity import Tolerances
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.formats import lineage, plan
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord

CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32", "kind": "classifier"}],
    "dims": {"batch": {"example": 2, "alt": 3}},
})
RNG = np.random.default_rng(0)
REF = {"logits": RNG.normal(size=(8, 1, 3)).astype(np.float32)}


def _record(fmt: str, status=ArtifactStatus.OK, framework="torch") -> ArtifactRecord:
    f = plan(framework)[fmt]
    return ArtifactRecord(format=fmt, status=status, precision=f.precision, tier=f.tier, runtime=f.runtime,
                          parent=f.parent, path=f"artifacts/m.{fmt}", contract=CONTRACT)


def _ran(tmp_path, fmt: str, outputs: dict) -> ArtifactRan:
    path = tmp_path / f"{fmt}.main.npz"
    npz.save(path, outputs)
    return ArtifactRan(status=RunStatus.OK, runtime=plan()[fmt].runtime, outputs={"main": str(path)})


def _judge(tmp_path, outputs_by_fmt: dict, framework="torch", rules: Rules | None = None,
           **evidence) -> dict[str, ArtifactCheck]:
    """``evidence``: further ``Evidence`` fields (refused, skipped_sets, ...)."""
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]
    records = {f: _record(f, framework=framework) for f in outputs_by_fmt}
    runs = {f: _ran(tmp_path, f, out) for f, out in outputs_by_fmt.items() if out is not None}
    return judge(CONTRACT, records, Evidence(runs, sets, {"main": REF}, **evidence), rules, framework=framework)


def test_every_format_passes_on_the_reference_itself(tmp_path):
    checks = _judge(tmp_path, {f: REF for f in plan()})
    assert {c.status for c in checks.values()} == {CheckStatus.PASS}
    assert exit_code(checks, strict=True) == errors.OK


def test_a_failure_is_blamed_on_the_hop_where_it_first_appears(tmp_path):
    bad = {"logits": REF["logits"] + 0.5}
    checks = _judge(tmp_path, {"onnx": REF, "savedmodel": bad, "tflite_fp32": bad, "tflite_fp16": bad})
    assert checks["onnx"].status == CheckStatus.PASS
    for fmt in ("savedmodel", "tflite_fp32"):
        assert checks[fmt].status == CheckStatus.FAIL
        assert checks[fmt].hop_blamed == "onnx -> savedmodel", fmt
        assert "[error appears at hop onnx -> savedmodel]" in checks[fmt].reason
    assert exit_code(checks, strict=False) == errors.PARITY
    # per hop: tflite_fp32 matches its (wrong) parent exactly
    assert checks["tflite_fp32"].hop["main"]["logits"]["passed"]
    assert worst_sample(checks["savedmodel"]) is not None and worst_sample(checks["onnx"]) is None


def test_blame_names_unchecked_ancestors(tmp_path):
    bad = {"logits": REF["logits"] + 0.5}
    checks = _judge(tmp_path, {"tflite_fp32": bad})  # onnx and savedmodel not run here
    assert checks["tflite_fp32"].hop_blamed == "savedmodel -> tflite_fp32 (not checked in this run: onnx, savedmodel)"
    assert blame("tflite_fp32", {"onnx": ArtifactCheck("onnx", "onnxruntime", CheckStatus.FAIL)}) == "source -> onnx"


@pytest.mark.parametrize("framework", ["torch", "onnx", "tensorflow"])
def test_blame_follows_each_frameworks_chain(framework):
    chain = lineage("tflite_fp32", framework)
    checks = {f: ArtifactCheck(f, plan(framework)[f].runtime, CheckStatus.PASS) for f in chain}
    checks["tflite_fp32"].status = CheckStatus.FAIL
    assert blame("tflite_fp32", checks, framework) == f"{chain[-2]} -> tflite_fp32"
    checks[chain[0]].status = CheckStatus.FAIL
    assert blame("tflite_fp32", checks, framework) == f"source -> {chain[0]}"


def test_refused_skipped_errored_and_not_exported(tmp_path):
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]
    records = {"onnx": _record("onnx"), "torchscript": _record("torchscript"), "savedmodel": _record("savedmodel"),
               "tflite_fp32": _record("tflite_fp32", ArtifactStatus.FAILED),
               "tflite_fp16": _record("tflite_fp16", ArtifactStatus.NOT_APPLICABLE)}
    runs = {"torchscript": ArtifactRan(status=RunStatus.SKIPPED, error="runtime torchscript not installed"),
            "savedmodel": ArtifactRan(status=RunStatus.LOAD_FAILED, error="OSError: bad file")}
    evidence = Evidence(runs, sets, {"main": REF}, refused={"onnx": "refused before loading: hash"})
    checks = judge(CONTRACT, records, evidence)
    assert checks["onnx"].status == CheckStatus.CORRUPT and "hash" in checks["onnx"].reason
    assert checks["torchscript"].status == CheckStatus.SKIPPED
    assert checks["savedmodel"].status == CheckStatus.ERROR
    assert checks["savedmodel"].reason == "failed to load in tensorflow: OSError: bad file"
    assert checks["tflite_fp32"].status == CheckStatus.NOT_EXPORTED
    assert checks["tflite_fp16"].status == CheckStatus.NOT_APPLICABLE
    assert exit_code(checks, strict=False) == errors.BUNDLE  # corrupt outranks runtime and export
    del checks["onnx"]
    assert exit_code(checks, strict=False) == errors.RUNTIME
    assert exit_code({"torchscript": checks["torchscript"]}, strict=False) == errors.OK
    assert exit_code({"torchscript": checks["torchscript"]}, strict=True) == errors.SKIPPED


def test_wrong_dtype_fails_even_when_values_match(tmp_path):
    checks = _judge(tmp_path, {"onnx": {"logits": REF["logits"].astype(np.float64)}})
    assert checks["onnx"].status == CheckStatus.FAIL and "dtype float64" in checks["onnx"].reason


def test_tolerance_override_applies_per_format_and_output(tmp_path):
    off = {"logits": REF["logits"] + 1e-3}
    assert _judge(tmp_path, {"onnx": off})["onnx"].status == CheckStatus.FAIL
    loose = Tolerances.from_dict({"onnx:logits": {"atol": 1e-2}})
    chk = _judge(tmp_path, {"onnx": off}, rules=Rules(loose))["onnx"]
    assert chk.status == CheckStatus.PASS and chk.overrides == {"logits": {"atol": 1e-2}}


def test_skipped_sets_are_reported_on_the_check(tmp_path):
    checks = _judge(tmp_path, {"onnx": REF}, skipped_sets={"onnx": {"alt": "artifact fixed batch=1"}})
    assert checks["onnx"].skipped_sets == {"alt": "artifact fixed batch=1"}


def test_an_accuracy_gated_tier_still_fails_on_nan_and_shape(tmp_path):
    labels = tmp_path / "labels.npz"
    npz.save(labels, {"labels": np.argmax(REF["logits"].reshape(8, -1), axis=-1)})
    sets = [GoldenSet("labelled", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8, labels, "logits")]
    records = {"onnx_int8": _record("onnx_int8")}
    for bad, why in ((lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a), "NaN/Inf"),
                     (lambda a: a + 0.5, None)):
        path = tmp_path / "out.npz"
        npz.save(path, {"logits": bad(REF["logits"]).astype(np.float32)})
        run = ArtifactRan(status=RunStatus.OK, runtime="onnxruntime", outputs={"labelled": str(path)})
        chk = judge(CONTRACT, records, Evidence({"onnx_int8": run}, sets, {"labelled": REF}))["onnx_int8"]
        if why:  # a NaN is never waived by the accuracy gate
            assert chk.status == CheckStatus.FAIL and why in chk.reason
        else:  # a uniform shift keeps every top-1: the int8 tier is judged on accuracy, which holds
            assert chk.status == CheckStatus.PASS and chk.accuracy["drop_points"] == 0.0


def test_accuracy_stands_in_for_closeness_only_with_agreement_to_the_source(tmp_path):
    # a source near chance level: garbage of the same accuracy must not pass on accuracy alone
    garbage = np.roll(REF["logits"], 1, axis=-1)
    src_top1 = np.argmax(REF["logits"].reshape(8, -1), axis=-1)
    art_top1 = np.argmax(garbage.reshape(8, -1), axis=-1)
    assert (src_top1 != art_top1).all()
    labels = tmp_path / "labels.npz"
    npz.save(labels, {"labels": np.concatenate([src_top1[:4], art_top1[4:]])})  # both 50 % accurate
    sets = [GoldenSet("labelled", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8, labels, "logits")]
    path = tmp_path / "out.npz"
    npz.save(path, {"logits": garbage})
    run = ArtifactRan(status=RunStatus.OK, runtime="onnxruntime", outputs={"labelled": str(path)})
    chk = judge(CONTRACT, {"onnx_int8": _record("onnx_int8")}, Evidence({"onnx_int8": run}, sets,
                                                                         {"labelled": REF}))["onnx_int8"]
    assert chk.accuracy["drop_points"] == 0.0 and chk.accuracy["top1_agreement"] == 0.0
    assert chk.status == CheckStatus.FAIL and "top-1 agrees with the source's on only 0.0%" in chk.reason


# ---- the basis of each verdict: what it was decided on, said once on the check ----------------------------

def _labelled(tmp_path, got: np.ndarray, fmt: str = "onnx_int8", rules: Rules | None = None) -> ArtifactCheck:
    labels = tmp_path / "labels.npz"
    npz.save(labels, {"labels": np.argmax(REF["logits"].reshape(8, -1), axis=-1)})
    sets = [GoldenSet("labelled", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8, labels, "logits")]
    path = tmp_path / "out.npz"
    npz.save(path, {"logits": got.astype(np.float32)})
    run = ArtifactRan(status=RunStatus.OK, runtime=plan()[fmt].runtime, outputs={"labelled": str(path)})
    return judge(CONTRACT, {fmt: _record(fmt)}, Evidence({fmt: run}, sets, {"labelled": REF}), rules)[fmt]


def test_each_verdict_names_the_basis_it_was_decided_on(tmp_path):
    checks = _judge(tmp_path, {"onnx": REF, "tflite_fp16": REF, "onnx_int8": REF})
    assert checks["onnx"].basis == "judged on elementwise atol/rtol (fp32 tier)"
    assert checks["tflite_fp16"].basis == "judged on cosine/SQNR/top-1 (fp16 tier)"
    assert checks["onnx_int8"].basis == "judged on cosine/SQNR/top-1 (int8 tier)"  # no labels: tensor metrics
    override = _judge(tmp_path, {"tflite_fp16": REF}, rules=Rules(Tolerances({"tflite_fp16:*": {"atol": 1e-3}})))
    assert override["tflite_fp16"].basis == "judged on elementwise atol/rtol (override)"
    tiny = _judge(tmp_path, {"tflite_fp16": {"logits": REF["logits"] * np.float32(1e-30)}})  # vs a non-tiny reference
    assert tiny["tflite_fp16"].status == CheckStatus.FAIL and "cosine/SQNR" in tiny["tflite_fp16"].basis
    # a failure keeps its basis: the reason says what broke, the basis what it was held to
    bad = _judge(tmp_path, {"onnx": {"logits": REF["logits"] + 0.5}})["onnx"]
    assert bad.status == CheckStatus.FAIL and bad.basis == "judged on elementwise atol/rtol (fp32 tier)"


def test_an_int8_verdict_on_labelled_data_says_it_was_judged_on_accuracy(tmp_path):
    # a uniform shift: every top-1 kept, tensor metrics far off; the int8 tier passes it on accuracy
    chk = _labelled(tmp_path, REF["logits"] + 3.0)
    assert chk.status == CheckStatus.PASS
    assert chk.basis == ("judged on task accuracy on the labelled set: drop 0.00 pts (max 1), top-1 agreement "
                         "100.0% (min 80%)")
    verdict = chk.sets["labelled"]["logits"]
    assert not verdict["passed"] and not verdict["gating"]  # its tensor metrics did not decide it, and say so
    assert verdict["basis"] == "accuracy" and verdict["reason"].startswith("not gating (judged on task accuracy)")
    from deploytool.report import junit

    suite = junit.render("m", {chk.key: chk})
    assert 'failures="0"' in suite and "judged on task accuracy" in suite  # a non-gating metric fails no case
    fp32 = _labelled(tmp_path, REF["logits"], "onnx", Rules(max_drop={"*": 0.5}))  # accuracy as one more gate
    assert fp32.basis == ("judged on elementwise atol/rtol (fp32 tier); and task accuracy on the labelled set: "
                          "drop 0.00 pts (max 0.5)")


def test_a_vacuous_or_accepted_constant_verdict_says_so_in_its_basis(tmp_path):
    constant = {"logits": np.broadcast_to(REF["logits"][:1], REF["logits"].shape).copy()}
    sets = [GoldenSet("main", tmp_path / "in.npz", tmp_path / "ref.npz", {"batch": 1}, 8)]
    path = tmp_path / "c.npz"
    npz.save(path, constant)
    run = ArtifactRan(status=RunStatus.OK, runtime="onnxruntime", outputs={"main": str(path)})
    which = "judged on elementwise atol/rtol (fp32 tier), which an artifact returning the per-element mean over " \
            "the golden samples or another sample's reference would pass too"
    for accept, status, basis in (([], CheckStatus.VACUOUS, f"{which}: proves nothing"),
                                  (["*"], CheckStatus.CONSTANT_ACCEPTED, f"{which} (accepted)")):
        chk = judge(CONTRACT, {"onnx": _record("onnx")}, Evidence({"onnx": run}, sets, {"main": constant}),
                    Rules(accept_constant=accept))["onnx"]
        assert chk.status == status and chk.basis.startswith(basis), chk.basis


def test_a_gate_applied_after_the_tensor_checks_fails_the_target_and_is_blamed_by_finish():
    """The multi-step check and the pipeline's decisions fail a target after the judge's tensor checks
    (``add_failure``); ``finish`` then blames its hop, and the emulated target's 'passes natively' cross-check is
    not said of an artifact that now fails natively too."""
    from deploytool.checking import judge as J
    from deploytool.results import Checks

    checks = Checks()
    for key in ("onnx", "savedmodel", "tflite_fp32", "tflite_fp32@litert@aarch64-cortex-a72"):
        fmt, _, rest = key.partition("@")
        runtime, _, platform = rest.partition("@")
        checks[key] = ArtifactCheck(fmt, runtime or plan()[fmt].runtime, CheckStatus.PASS,
                                    platform=platform or "native")
    checks["tflite_fp32@litert@aarch64-cortex-a72"].status = CheckStatus.FAIL
    checks["tflite_fp32@litert@aarch64-cortex-a72"].reason = "y: max abs error 1"
    checks["savedmodel"].status = CheckStatus.VACUOUS  # passed only vacuously: a failing gate still fails it
    J.add_failure(checks["savedmodel"], "multi-step: greedy token differs first at step 3 of 32")
    J.add_failure(checks["tflite_fp32"], "pipeline: 2 of 64 decisions differ")
    J.finish(checks, "torch")
    sm, tfl = checks["savedmodel"], checks["tflite_fp32"]
    assert (sm.status, tfl.status) == (CheckStatus.FAIL, CheckStatus.FAIL)
    assert sm.hop_blamed == "onnx -> savedmodel" and sm.reason.endswith("[error appears at hop onnx -> savedmodel]")
    assert tfl.hop_blamed == "onnx -> savedmodel"  # the first failing target of its lineage
    assert "multi-step: greedy token differs first at step 3" in sm.reason
    assert not any("passes on litert natively" in n for n in checks["tflite_fp32@litert@aarch64-cortex-a72"].notes)


def test_a_failure_line_names_the_gate_that_failed_not_a_reported_only_metric():
    from deploytool.report.github import failure_text

    chk = ArtifactCheck("onnx_int8", "onnxruntime", CheckStatus.FAIL, reason="multi-step: differs at step 2")
    chk.sets = {"edge": {"y": {"passed": False, "reason": "SQNR 2.4 dB", "gating": False, "family_ungated": True}}}
    chk.hop = {"main": {"y": {"passed": False, "reason": "hop metric"}}}
    chk.steps = {"failures": ["decisions"]}
    assert failure_text(chk) == "multi-step: differs at step 2"
    chk.steps, chk.reason = None, "y: max abs error 3"
    chk.sets["main"] = {"y": {"passed": False, "reason": "max abs error 3", "gating": True}}
    assert failure_text(chk) == "metric main/y: max abs error 3"


def test_a_failure_of_the_deployed_preprocessing_alone_blames_no_hop_and_a_further_gate_is_not_localised():
    from deploytool.checking import judge as J
    from deploytool.results import Checks

    passed = {"main": {"y": {"passed": True, "gating": True}}}
    checks = Checks()
    checks["onnx"] = ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS, sets=passed)
    checks["savedmodel"] = ArtifactCheck("savedmodel", "tensorflow", CheckStatus.PASS, sets=passed)
    checks["onnx"].pipeline = {"gate": {"passed": True}, "preprocess_deployed": {"match": False}}
    checks["savedmodel"].steps = {"failures": ["decisions"]}
    J.add_failure(checks["onnx"], "preprocess_deployed differs from preprocess: channel order reversed")
    J.add_failure(checks["savedmodel"], "multi-step: greedy token differs first at step 3 of 32")
    J.finish(checks, "torch")
    assert checks["onnx"].status == CheckStatus.FAIL and checks["onnx"].hop_blamed is None
    assert "error appears at hop" not in checks["onnx"].reason
    assert checks["savedmodel"].hop_blamed == "onnx -> savedmodel"  # its own outputs diverged over the steps
    assert J.tensors_passed(checks["savedmodel"])  # ...with no diverging tensor on a golden sample: not localised
    checks["savedmodel"].sets = {"main": {"y": {"passed": False, "gating": True}}}
    assert not J.tensors_passed(checks["savedmodel"])


def test_a_tensor_failure_is_blamed_on_the_first_ancestor_whose_tensors_diverge_not_one_failing_a_further_gate():
    from deploytool.checking import judge as J
    from deploytool.results import Checks

    passed = {"main": {"y": {"passed": True, "gating": True}}}
    failed = {"main": {"y": {"passed": False, "gating": True}}}
    checks = Checks()
    checks["onnx"] = ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS, sets=passed)
    checks["savedmodel"] = ArtifactCheck("savedmodel", "tensorflow", CheckStatus.PASS, sets=passed)
    checks["tflite_fp32"] = ArtifactCheck("tflite_fp32", "litert", CheckStatus.FAIL, reason="y: max abs error 1",
                                          sets=failed)
    checks["onnx"].steps = {"failures": ["decisions"]}
    J.add_failure(checks["onnx"], "multi-step: greedy token differs first at step 5 of 32")
    J.finish(checks, "torch")
    assert checks["onnx"].hop_blamed == "source -> onnx"  # its loop diverged: its own hop
    assert checks["tflite_fp32"].hop_blamed == "savedmodel -> tflite_fp32"  # not onnx, which matches every sample


def test_an_int8_target_judged_on_accuracy_counts_as_passing_its_tensors():
    from deploytool.checking import judge as J

    chk = ArtifactCheck("onnx_int8", "onnxruntime", CheckStatus.PASS,
                        sets={"labelled": {"logits": {"passed": False, "gating": False}}},
                        accuracy={"passed": True})
    assert J.tensors_passed(chk)
    chk.pipeline = {"gate": {"passed": True}, "preprocess_deployed": {"match": False}}
    assert J.deployed_preprocessing_only(chk)
    assert not J.tensors_passed(ArtifactCheck("onnx", "onnxruntime", CheckStatus.FAIL))  # no sets: contract mismatch
