"""Multi-step parity for stateful models (checking/steps.py, commands/stepping.py, running/stepping.py): the loop's
declaration, the free-running trajectory, the comparison and its gates, decoys, the reports, and end to end on a
tiny seeded GRU language model (tests/models/gru_lm.py) over 32 greedy steps."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import TEST_MODELS, manifest_of, result_of

from deploytool.checking import steps as S
from deploytool.core.contract import Contract

GRU_LM = TEST_MODELS / "gru_lm.py"
V, H = 16, 16


def _contract(token_shape=(1,)) -> Contract:
    return Contract.from_dict({
        "inputs": [{"name": "token", "shape": list(token_shape), "dtype": "int64", "range": [0, V]},
                   {"name": "h", "shape": [1, H], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [1, V], "dtype": "float32"},
                    {"name": "h_out", "shape": [1, H], "dtype": "float32"}]})


PAIRS = S.parse(["logits->token:argmax", "h_out->h"])


class _NumpyRnn:
    """A seeded tanh RNN in numpy: the same step on [samples, ...] batches, with an optional weight change."""

    def __init__(self, scale: float = 0.0, seed: int = 1) -> None:
        g = np.random.default_rng(seed)
        self.emb = g.normal(size=(V, H)).astype(np.float32)
        self.w = (g.normal(size=(H, H)) * 4.0 / np.sqrt(H) * (1 + scale)).astype(np.float32)  # chaotic: gain 4
        self.head = (g.normal(size=(H, V)) * 4.0 / np.sqrt(H)).astype(np.float32)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = np.tanh(self.emb[inputs["token"][:, 0]][:, None, :] + inputs["h"] @ self.w)
        return {"logits": h @ self.head, "h_out": h.astype(np.float32)}


def _initial(samples: int = 4) -> dict[str, np.ndarray]:
    g = np.random.default_rng(0)
    return {"token": g.integers(0, V, (samples, 1)).astype(np.int64),
            "h": g.uniform(-1, 1, (samples, 1, H)).astype(np.float32)}


# ---- declaring the loop -------------------------------------------------------------------------

def test_feedback_parses_repeated_and_comma_separated_pairs():
    assert S.parse(["logits->token:argmax, h_out->h"]) == S.parse(["logits->token:argmax", "h_out->h"]) == \
        [S.Pair("logits", "token", True), S.Pair("h_out", "h", False)]
    assert S.texts(PAIRS) == ["logits->token:argmax", "h_out->h"]


@pytest.mark.parametrize("spec", ["logits", "logits->", "->h", "logits->token:max", "a-b"])
def test_a_malformed_feedback_pair_is_named(spec):
    with pytest.raises(ValueError, match="expected OUTPUT->INPUT"):
        S.parse([spec])


@pytest.mark.parametrize("spec, message", [
    ("nope->h", "'nope' is no output"),
    ("h_out->nope", "'nope' is no input"),
    ("h_out->token", "must match its input's shape and dtype"),
    ("logits->h:argmax", "argmax feeds a float output's choice to an integer input"),
    ("h_out->h,logits->h", "fed back twice"),
])
def test_a_pair_the_contract_cannot_take_is_refused_with_its_cause(spec, message):
    with pytest.raises(ValueError, match=message):
        S.check(_contract(), S.parse([spec]))


def test_argmax_may_feed_a_token_of_another_rank_with_as_many_values():
    S.check(_contract((1, 1)), PAIRS)  # [1, V] -> argmax [1] -> token [1, 1]
    with pytest.raises(ValueError, match="has 1 values, 'token' is \\[1, 2\\]"):
        S.check(_contract((1, 2)), PAIRS)


def test_the_model_file_declares_its_loop_without_being_run(tmp_path):
    assert S.declared_in_file(GRU_LM) == ({"logits": "token:argmax", "h_out": "h"}, 32)
    assert S.from_mapping({"logits": "token:argmax", "h_out": "h"}, "gru_lm.py") == PAIRS
    odd = tmp_path / "m.py"
    odd.write_text("import os\nFEEDBACK = dict(os.environ)\n")
    with pytest.raises(ValueError, match="FEEDBACK must be a literal"):
        S.declared_in_file(odd)


def test_feedback_on_the_command_line_wins_over_the_model_file():
    from deploytool.commands import stepping

    source = {"kind": "file", "ref": str(GRU_LM)}
    assert stepping.declared(source, [], None) == (PAIRS, 32, "the model file (FEEDBACK)")
    assert stepping.declared(source, ["h_out->h"], 5) == ([S.Pair("h_out", "h")], 5, "--feedback")
    assert stepping.declared({"kind": "zoo", "ref": "digits_cnn"}, [], None) is None


# ---- running and judging ------------------------------------------------------------------------

def test_the_loop_feeds_the_greedy_token_and_the_state_back():
    rnn = _NumpyRnn()
    traj = S.trajectory(rnn, _initial(), PAIRS, 6)
    ins, outs = S.split(traj)
    assert ins["token"].shape == (6, 4, 1) and outs["logits"].shape == (6, 4, 1, V)
    np.testing.assert_array_equal(ins["token"][1:], np.argmax(outs["logits"][:-1], axis=-1))
    np.testing.assert_array_equal(ins["h"][1:], outs["h_out"][:-1])
    np.testing.assert_array_equal(ins["token"][0], _initial()["token"])


def test_a_failing_step_is_named():
    calls = []

    def run(inputs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return _NumpyRnn()(inputs)

    with pytest.raises(S.StepFailed, match="step 3: RuntimeError: boom"):
        S.trajectory(run, _initial(), PAIRS, 5)


def test_a_correct_fp32_trajectory_passes_and_agrees_on_every_step():
    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    got = S.trajectory(lambda x: {k: v + np.float32(1e-7) * (k == "h_out") for k, v in _NumpyRnn()(x).items()},
                       _initial(), PAIRS, 32)
    rec = S.compare(ref, got, PAIRS, "fp32", S.Gates())
    assert rec["first_diverging_step"] is None and rec["agree_steps"] == 32
    assert rec["failures"] == [] and rec["uninformative"] is None and rec["gated"]
    assert rec["gates"] == {"min_agree_steps": 32, "max_step_error": None, "tier": "fp32"}
    assert len(rec["step_error"]) == 32 and 0 < rec["step_error"][-1] < 1e-2


def test_a_planted_weight_change_names_the_first_diverging_step():
    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    got = S.trajectory(_NumpyRnn(scale=1e-3), _initial(), PAIRS, 32)
    rec = S.compare(ref, got, PAIRS, "fp32", S.Gates())
    first = rec["first_diverging_step"]
    assert first is not None and 1 < first <= 32
    ref_tokens, got_tokens = S.decisions(PAIRS, S.split(ref)[1])["token"], S.decisions(PAIRS, S.split(got)[1])["token"]
    assert (ref_tokens[:first - 1] == got_tokens[:first - 1]).all()
    assert (ref_tokens[first - 1] != got_tokens[first - 1]).any()
    d = rec["divergence"]
    assert d["reference"] == ref_tokens[first - 1][d["sample"]][0] != d["artifact"]
    (failure,) = rec["failures"]
    assert failure.startswith(f"greedy token differs first at step {first} of 32 (reference {d['reference']}, "
                              f"artifact {d['artifact']}, sample {d['sample']})") and "step error grows" in failure
    assert S.reason(rec) == f"multi-step: {failure}"
    # --min-agree-steps below the diverging step lets it pass; the int8 tier reports it without gating
    assert S.compare(ref, got, PAIRS, "fp32", S.Gates(min_agree_steps=first - 1))["failures"] == []
    int8 = S.compare(ref, got, PAIRS, "int8", S.Gates())
    assert int8["failures"] == [] and not int8["gated"] and int8["first_diverging_step"] == first


@pytest.mark.parametrize("decoy", ["zeros", "another", "mean"])
def test_a_wrong_trajectory_fails_the_same_check(decoy):
    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    ins, outs = S.split(ref)
    wrong = {"zeros": {k: np.zeros_like(v) for k, v in outs.items()},
             "another": {k: np.roll(v, 1, axis=1) for k, v in outs.items()},
             "mean": {k: np.broadcast_to(v.mean(axis=1, keepdims=True), v.shape) for k, v in outs.items()}}[decoy]
    got = {**{S.IN + k: v for k, v in ins.items()}, **{S.OUT + k: v for k, v in wrong.items()}}
    assert S.compare(ref, got, PAIRS, "fp32", S.Gates())["failures"]


def test_a_loop_without_decisions_is_gated_on_its_step_error():
    pairs = S.parse(["h_out->h"])
    ref = S.trajectory(_NumpyRnn(), _initial(), pairs, 8)
    ok = S.compare(ref, ref, pairs, "fp32", S.Gates())
    assert ok["gates"]["max_step_error"] == 1e-3 and ok["failures"] == [] and ok["uninformative"] is None
    got = S.trajectory(_NumpyRnn(scale=1e-2), _initial(), pairs, 8)
    (failure,) = S.compare(ref, got, pairs, "fp32", S.Gates())["failures"]
    assert failure.startswith("step error ") and "> 0.001" in failure


def test_a_trajectory_a_decoy_would_match_proves_nothing():
    """Every sample settles on the same token and state: another sample's trajectory is the same one."""
    ref = S.trajectory(lambda x: {"logits": np.tile(np.eye(V, dtype=np.float32)[3], (len(x["h"]), 1, 1)),
                                  "h_out": np.zeros_like(x["h"])}, _initial(), PAIRS, 8)
    rec = S.compare(ref, ref, PAIRS, "fp32", S.Gates())
    assert rec["failures"] == [] and "another sample's trajectory" in rec["uninformative"]
    assert S.reason(rec).startswith("multi-step: uninformative")


def test_apply_fails_a_passing_check_with_the_cause_appended(tmp_path):
    from deploytool.commands import stepping
    from deploytool.core import npz
    from deploytool.results import ArtifactCheck
    from deploytool.running.jobs import ArtifactRan, CheckStatus, RunStatus

    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    npz.save(tmp_path / "ref.npz", ref)
    npz.save(tmp_path / "good.npz", ref)
    npz.save(tmp_path / "bad.npz", S.trajectory(_NumpyRnn(scale=1e-3), _initial(), PAIRS, 32))
    checks = {k: ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS, reason="") for k in ("good", "bad", "err")}
    replies = {"good": ArtifactRan(RunStatus.OK, steps=str(tmp_path / "good.npz")),
               "bad": ArtifactRan(RunStatus.OK, steps=str(tmp_path / "bad.npz")),
               "err": ArtifactRan(RunStatus.OK, steps_error="step 2: RuntimeError: no")}
    record = S.StepsRecord(S.texts(PAIRS), 32, 4)
    stepping.apply(checks, replies, tmp_path / "ref.npz", record, {"onnx": "fp32"}, S.Gates())
    assert checks["good"].status == CheckStatus.PASS and checks["good"].steps["first_diverging_step"] is None
    assert checks["bad"].status == CheckStatus.FAIL
    assert checks["bad"].reason.startswith("multi-step: greedy token differs first at step ")
    assert checks["err"].status == CheckStatus.FAIL and checks["err"].reason == "multi-step: step 2: RuntimeError: no"


def test_the_report_has_a_multi_step_section():
    from deploytool.report.steps import steps_section
    from deploytool.report.view import ArtifactView

    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    bad = S.compare(ref, S.trajectory(_NumpyRnn(scale=1e-3), _initial(), PAIRS, 32), PAIRS, "fp32", S.Gates())
    views = [ArtifactView("onnx", "onnxruntime", "fp32", [], None, "ok", steps=bad),
             ArtifactView("torchscript", "torchscript", "fp32", [], None, "ok")]
    text = "\n".join(steps_section(views))
    assert "## Multi-step parity" in text and f"| {bad['first_diverging_step']} |" in text and "FAIL: greedy" in text
    assert "torchscript" not in text
    assert steps_section(views[1:]) == []


# ---- end to end ---------------------------------------------------------------------------------

FP32 = "torchscript,onnx,savedmodel,tflite_fp32"
RUNTIMES = "torchscript,onnxruntime,tensorflow,litert"


@pytest.fixture(scope="module")
def gru_bundle(run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("steps")
    proc = run_cli("export", "-m", GRU_LM, "-f", FP32, "--runtime", RUNTIMES, "--samples", "4", "-o", out)
    return out / "gru_lm", proc


@pytest.mark.slow
def test_every_fp32_target_gives_the_same_32_greedy_tokens(gru_bundle):
    bundle, proc = gru_bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(bundle)
    assert m["steps"] == {"feedback": ["logits->token:argmax", "h_out->h"], "steps": 32, "samples": 4,
                          "path": "golden/steps.npz", "declared": "the model file (FEEDBACK)"}
    assert "golden/steps.npz" in [f["path"] for f in m["golden"]["files"]]
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    for fmt in FP32.split(","):
        rec = result_of(report, fmt)["steps"]
        assert rec["first_diverging_step"] is None and rec["agree_steps"] == 32 and rec["failures"] == [], fmt
        assert rec["gated"] and rec["uninformative"] is None and len(rec["step_error"]) == 32


@pytest.mark.slow
def test_a_planted_weight_change_is_named_at_its_first_diverging_step(gru_bundle, run_cli, tmp_path):
    from deploytool.core import records
    from deploytool.store import bundle as B

    original, _ = gru_bundle
    planted_model = tmp_path / "planted" / "gru_lm.py"
    planted_model.parent.mkdir()
    planted_model.write_text(GRU_LM.read_text().replace("\nSCALE = 0.0\n", "\nSCALE = 1e-3\n"))
    proc = run_cli("export", "-m", planted_model, "-f", "onnx", "--runtime", "onnxruntime", "--samples", "4",
                   "-o", tmp_path / "planted_out")
    assert proc.returncode == 0, proc.stderr  # against its own source, the planted model's artifact is right
    bundle = tmp_path / "gru_lm"
    shutil.copytree(original, bundle)
    shutil.copyfile(tmp_path / "planted_out" / "gru_lm" / "artifacts" / "gru_lm.onnx",
                    bundle / "artifacts" / "gru_lm.onnx")
    m = manifest_of(bundle)
    m["artifacts"]["onnx"]["files"] = records.dump(B.file_records(bundle, bundle / m["artifacts"]["onnx"]["path"]))
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", bundle, "-f", "onnx", "--runtime", "onnxruntime")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    rec = result_of(json.loads((bundle / "reports" / "validation.json").read_text()), "onnx")
    first = rec["steps"]["first_diverging_step"]
    assert first is not None and 1 < first <= 32 and rec["status"] == "fail"
    assert f"multi-step: greedy token differs first at step {first} of 32" in rec["reason"]
    assert f"differs first at step {first} of 32" in proc.stderr


@pytest.mark.slow
def test_a_tampered_reference_trajectory_is_refused(gru_bundle, run_cli, tmp_path):
    from faults import rehash

    bundle = tmp_path / "gru_lm"
    shutil.copytree(gru_bundle[0], bundle)
    path = bundle / "golden" / "steps.npz"
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["out:logits"][5, 0, 0, 0] = np.nan
    np.savez(path, **arrays)
    rehash(bundle)
    proc = run_cli("validate", bundle, "-f", "onnx")
    assert proc.returncode == 8 and "manifest.steps: golden/steps.npz: output 'logits' holds NaN/Inf" in proc.stderr


@pytest.mark.slow
def test_a_feedback_pair_the_contract_cannot_take_is_a_usage_error(run_cli, tmp_path):
    proc = run_cli("export", "-m", GRU_LM, "-f", "onnx", "--feedback", "h_out->token", "-o", tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "gru_lm").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "deploytool: error: --feedback h_out->token: 'h_out' is float32[1, 16], 'token' is int64[1]: a fed-back "
        "output must match its input's shape and dtype (or use :argmax for a greedy choice)")


def test_the_html_report_plots_the_error_growth_per_target():
    from deploytool.report import plots
    from deploytool.report.view import ArtifactView

    if not plots.available():
        pytest.skip("matplotlib is not installed (the report extra)")
    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    bad = S.compare(ref, S.trajectory(_NumpyRnn(scale=1e-3), _initial(), PAIRS, 32), PAIRS, "fp32", S.Gates())
    svg = plots.step_errors([ArtifactView("onnx", "onnxruntime", "fp32", [], None, "ok", steps=bad)])
    assert svg is not None and svg.startswith("<svg") and "error growth over the steps" in svg and "onnx" in svg
    assert plots.step_errors([ArtifactView("onnx", "onnxruntime", "fp32", [], None, "ok")]) is None
