"""Multi-step parity for stateful models (checking/steps.py, commands/stepping.py, running/stepping.py): the loop's
declaration, the free-running trajectory, the comparison and its gates, decoys, the reports, and end to end on a
tiny seeded GRU language model (tests/models/gru_lm.py) over 32 greedy steps."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

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


@pytest.mark.parametrize("gates, named", [(S.Gates(min_agree_steps=5), "--min-agree-steps 5"),
                                          (S.Gates(max_step_error=0.01), "--max-step-error 0.01")])
def test_a_gate_without_a_loop_is_a_usage_error(gates, named):
    from deploytool.commands import stepping
    from deploytool.core.errors import UsageError

    with pytest.raises(UsageError, match=f"^{named} needs a feedback loop: declare one with --feedback"):
        stepping.declared({"kind": "zoo", "ref": "digits_cnn"}, [], None, gates)
    with pytest.raises(UsageError, match=f"^{named}: bundle b declares no feedback loop"):
        stepping.gates_for(None, gates, False, Path("b"))
    assert stepping.gates_for(None, S.Gates(), False, Path("b")) == S.Gates()


def test_export_refuses_a_gate_without_a_loop_before_anything_runs(run_cli, tmp_path):
    proc = run_cli("export", "-m", "digits_cnn", "-f", "onnx", "--min-agree-steps", "3", "-o", tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "digits_cnn").exists()
    assert proc.stderr.strip().splitlines() == ["deploytool: error: --min-agree-steps 3 needs a feedback loop: declare "
                                                "one with --feedback OUTPUT->INPUT (or FEEDBACK in the model file)"]


def test_validate_re_applies_the_gates_stored_at_export_unless_overridden():
    from deploytool.commands import stepping

    record = S.StepsRecord(S.texts(PAIRS), 32, 4, min_agree_steps=5, max_step_error=0.01)
    assert stepping.gates_for(record, S.Gates(), False, Path("b")) == S.Gates(5, 0.01)
    assert stepping.gates_for(record, S.Gates(max_step_error=0.5), False, Path("b")) == S.Gates(5, 0.5)
    assert stepping.gates_for(record, S.Gates(max_step_error=0.5), True, Path("b")) == S.Gates(None, 0.5)
    assert stepping.stored_note(record, S.Gates(max_step_error=0.5), False) == \
        "multi-step gates from the bundle's export: --min-agree-steps 5 (--tier-defaults ignores them)"
    assert stepping.stored_note(record, S.Gates(), True) == \
        "multi-step gates stored at export (--min-agree-steps 5 --max-step-error 0.01) ignored (--tier-defaults)"
    assert stepping.stored_note(record, S.Gates(7, 0.5), False) == ""
    assert stepping.stored_note(S.StepsRecord(S.texts(PAIRS), 32, 4), S.Gates(), False) == ""


def test_min_agree_steps_beyond_the_loop_is_a_usage_error_naming_its_steps():
    """--min-agree-steps K > the steps the loop runs is refused (it was silently reduced to them)."""
    from deploytool.commands import stepping
    from deploytool.core.errors import UsageError

    gru = {"kind": "file", "ref": str(GRU_LM)}
    with pytest.raises(UsageError, match=r"^--min-agree-steps 40: the loop runs 32 steps \(gru_lm.py's STEPS\), so "
                                         "at most 32 can agree$"):
        stepping.declared(gru, [], None, S.Gates(min_agree_steps=40))
    with pytest.raises(UsageError, match=r"^--min-agree-steps 9: the loop runs 8 steps \(--steps\)"):
        stepping.declared(gru, [], 8, S.Gates(min_agree_steps=9))
    with pytest.raises(UsageError, match=r"the loop runs 32 steps \(the default; --steps N runs more\)"):
        stepping.declared({"kind": "zoo", "ref": "digits_cnn"}, ["h_out->h"], None, S.Gates(min_agree_steps=33))
    assert stepping.declared(gru, [], 8, S.Gates(min_agree_steps=8))[1] == 8
    record = S.StepsRecord(S.texts(PAIRS), 8, 4)
    with pytest.raises(UsageError, match=r"^--min-agree-steps 100: bundle b's loop runs 8 steps \(set at export\), "
                                         "so at most 8 can agree$"):
        stepping.gates_for(record, S.Gates(min_agree_steps=100), False, Path("b"))
    assert stepping.gates_for(record, S.Gates(min_agree_steps=8), False, Path("b")) == S.Gates(8, None)


def test_export_takes_the_feedback_table_form_in_a_config_and_refuses_too_many_agreeing_steps(run_cli, tmp_path):
    """A --config TOML may write feedback as the model file's FEEDBACK does (OUT = "IN[:argmax]"); --min-agree-steps
    beyond the loop's steps is exit 2 before anything runs."""
    config = tmp_path / "deploy.toml"
    config.write_text('[export]\nfeedback = {logits = "token:argmax", h_out = "h"}\nsteps = 8\n')
    proc = run_cli("export", "-m", GRU_LM, "-f", "onnx", "--config", config, "--min-agree-steps", "100",
                   "-o", tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "gru_lm").exists()
    assert proc.stderr.strip().splitlines() == ["deploytool: error: --min-agree-steps 100: the loop runs 8 steps "
                                                "(--steps), so at most 8 can agree"]


def test_a_misspelt_name_is_named_where_it_was_declared_with_a_hint():
    from deploytool.commands import stepping
    from deploytool.core.errors import UsageError

    with pytest.raises(ValueError, match=r"^--feedback logit->token:argmax: 'logit' is no output \(did you mean "
                                         r"logits\?\) \(the outputs are \['logits', 'h_out'\]\)$"):
        S.check(_contract(), S.parse(["logit->token:argmax"]))
    with pytest.raises(UsageError, match=r"^FEEDBACK in gru_lm.py: logits->tok:argmax: 'tok' is no input \(did you "
                                         r"mean token\?\)"):
        stepping.check_declared(_contract(), S.parse(["logits->tok:argmax"]), "the model file (FEEDBACK)",
                                {"kind": "file", "ref": str(GRU_LM)})
    with pytest.raises(ValueError, match=r"^m.py: FEEDBACK \{'logits': 'token:max'\}: expected \{'OUTPUT': 'INPUT'\} "
                                         r"or \{'OUTPUT': 'INPUT:argmax'\}$"):
        S.from_mapping({"logits": "token:max"}, "m.py")


# ---- running and judging ------------------------------------------------------------------------

def test_the_loop_feeds_the_greedy_token_and_the_state_back():
    rnn = _NumpyRnn()
    traj = S.trajectory(rnn, _initial(), PAIRS, 6)
    ins, outs = S.split(traj)
    assert ins["token"].shape == (6, 4, 1) and outs["logits"].shape == (6, 4, 1, V)
    np.testing.assert_array_equal(ins["token"][1:], np.argmax(outs["logits"][:-1], axis=-1))
    np.testing.assert_array_equal(ins["h"][1:], outs["h_out"][:-1])
    np.testing.assert_array_equal(ins["token"][0], _initial()["token"])


def test_the_loop_stops_when_its_time_budget_would_run_out(tmp_path):
    """The worker's loop (running/stepping.py) on a real numpy step that takes 1 s of a fake clock: with 3.5 s left
    it runs 3 steps and says why it stopped; the steps it ran are the reference's first ones."""
    from deploytool.core import npz
    from deploytool.running import jobs
    from deploytool.running.stepping import Budget, run_steps

    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 8)
    npz.save(tmp_path / "ref.npz", ref)
    now = [100.0]

    def step(inputs):
        now[0] += 1.0
        return _NumpyRnn()(inputs)

    plan = jobs.StepsPlan(str(tmp_path / "ref.npz"), S.texts(PAIRS), 8, str(tmp_path / "got.npz"), stop_at=103.5,
                          timeout=10)
    budget = Budget(plan, clock=lambda: now[0])
    got = S.trajectory(step, _initial(), PAIRS, 8, stop=budget.stop)
    assert len(got["out:logits"]) == 3 and budget.why == (
        "stopped after 3 of 8 steps: the loop's time budget (after the golden sets, 75% of --timeout 10 s) ran out "
        "at 1 s a step")
    np.testing.assert_array_equal(got["out:logits"], ref["out:logits"][:3])
    # in the worker, on a budget already spent: no step, no trajectory, the reason
    reply = jobs.ArtifactRan(jobs.RunStatus.OK)
    contract = _contract((1,))
    run_steps(jobs.StepsPlan(plan.reference, plan.feedback, 8, plan.out, stop_at=0.0), lambda s, feeds: {}, None,
              contract, reply)
    assert reply.steps is None and reply.steps_error is None and reply.steps_stopped.startswith("stopped after 0 of 8")


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


def test_a_step_error_failure_names_the_first_step_over_the_limit_and_the_largest():
    ref = {"h_out": np.ones((4, 1, 2), np.float32)}
    got = {"h_out": ref["h_out"] + np.array([0.0005, 0.02, 0.01, 0.05], np.float32)[:, None, None]}
    (failure,) = S.judge(ref, got, S.parse(["h_out->h"]), 0, 1e-3).failures
    assert failure == "step error 0.02 at step 2 > 0.001 (the first step over it; largest 0.05 at step 4; error " \
                      "grows 0.0005 -> 0.05)"


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


def test_the_console_says_in_one_line_that_the_loop_ran(tmp_path):
    """A passing multi-step check shows under the export/validate table: one line over the targets."""
    from deploytool.commands import stepping
    from deploytool.core import npz
    from deploytool.report import console
    from deploytool.report.steps import console_line
    from deploytool.results import ArtifactCheck
    from deploytool.running.jobs import ArtifactRan, CheckStatus, RunStatus

    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    npz.save(tmp_path / "ref.npz", ref)
    npz.save(tmp_path / "bad.npz", S.trajectory(_NumpyRnn(scale=1e-3), _initial(), PAIRS, 32))
    checks = {"onnx": ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS),
              "tflite_fp32": ArtifactCheck("tflite_fp32", "litert", CheckStatus.PASS)}
    replies = {k: ArtifactRan(RunStatus.OK, steps=str(tmp_path / "ref.npz")) for k in checks}
    stepping.apply(checks, replies, tmp_path / "ref.npz", S.StepsRecord(S.texts(PAIRS), 32, 4),
                   {"onnx": "fp32", "tflite_fp32": "fp32"}, S.Gates())
    line = console_line(checks)
    assert line == ("multi-step: 32 steps x 4 samples (logits->token:argmax, h_out->h): every greedy decision agrees "
                    "on onnx, tflite_fp32; largest step error 0.0e+00 (onnx)")
    assert console._with_steps("table", checks, 200) == "table\n" + line
    assert console_line({"onnx": ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS)}) == ""
    replies["tflite_fp32"] = ArtifactRan(RunStatus.OK, steps=str(tmp_path / "bad.npz"))
    stepping.apply(checks, replies, tmp_path / "ref.npz", S.StepsRecord(S.texts(PAIRS), 32, 4),
                   {"onnx": "fp32", "tflite_fp32": "fp32"}, S.Gates())
    first = checks["tflite_fp32"].steps["first_diverging_step"]
    assert f"agrees on onnx; decisions differ on tflite_fp32 (first at step {first}); largest step error " in \
        console_line(checks)


def test_a_loop_not_run_or_stopped_early_is_no_silent_pass_and_strict_fails_it(tmp_path):
    from deploytool.commands import stepping
    from deploytool.core import npz
    from deploytool.results import ArtifactCheck
    from deploytool.running.jobs import ArtifactRan, CheckStatus, RunStatus

    ref = S.trajectory(_NumpyRnn(), _initial(), PAIRS, 32)
    npz.save(tmp_path / "ref.npz", ref)
    npz.save(tmp_path / "part.npz", S.truncated(ref, 5))
    npz.save(tmp_path / "part_bad.npz", S.trajectory(_NumpyRnn(scale=0.5), _initial(), PAIRS, 5))
    why = "stopped after 5 of 32 steps: the loop's time budget ran out"
    checks = {k: ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS) for k in ("none", "part", "bad", "full")}
    replies = {"none": ArtifactRan(RunStatus.OK),  # no main set: the loop had no start
               "part": ArtifactRan(RunStatus.OK, steps=str(tmp_path / "part.npz"), steps_stopped=why),
               "bad": ArtifactRan(RunStatus.OK, steps=str(tmp_path / "part_bad.npz"), steps_stopped=why),
               "full": ArtifactRan(RunStatus.OK, steps=str(tmp_path / "ref.npz"))}
    stepping.apply(checks, replies, tmp_path / "ref.npz", S.StepsRecord(S.texts(PAIRS), 32, 4), {"onnx": "fp32"},
                   S.Gates())
    none, part, bad = checks["none"], checks["part"], checks["bad"]
    assert none.status == CheckStatus.PASS and none.notes == [
        "multi-step check not run: the artifact does not take the main golden set the steps start from"]
    assert part.status == CheckStatus.PASS and part.steps["partial"] == why and part.steps["steps"] == 5
    assert part.notes == [f"multi-step check stopped early: {why}; steps 1-5 compared"]
    assert bad.status == CheckStatus.FAIL and "differs first at step" in bad.reason  # a failure seen is a failure
    assert [k for k, c in checks.items() if stepping.incomplete(c)] == ["none", "part"]
    assert stepping.strict_code(checks, True) == 7 and stepping.strict_code(checks, False) == 0
    assert stepping.strict_code({"full": checks["full"]}, True) == 0
    part.status = CheckStatus.CONSTANT_ACCEPTED  # exits 0 like a PASS: --strict fails its incomplete loop alike
    assert stepping.strict_code({"part": part}, True) == 7


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
    proc = run_cli("export", "-m", GRU_LM, "-f", FP32, "--runtime", RUNTIMES, "--samples", "4", "-o", out,
                   "--max-step-error", "0.5")  # stored in the bundle: validate re-applies it
    return out / "gru_lm", proc


@pytest.mark.slow
def test_every_fp32_target_gives_the_same_32_greedy_tokens(gru_bundle):
    bundle, proc = gru_bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(bundle)
    assert m["steps"] == {"feedback": ["logits->token:argmax", "h_out->h"], "steps": 32, "samples": 4,
                          "path": "golden/steps.npz", "declared": "the model file (FEEDBACK)",
                          "min_agree_steps": None, "max_step_error": 0.5}
    assert "golden/steps.npz" in [f["path"] for f in m["golden"]["files"]]
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    for fmt in FP32.split(","):
        rec = result_of(report, fmt)["steps"]
        assert rec["first_diverging_step"] is None and rec["agree_steps"] == 32 and rec["failures"] == [], fmt
        assert rec["gated"] and rec["uninformative"] is None and len(rec["step_error"]) == 32
    line = " ".join(proc.stdout.split("\nmulti-step: ", 1)[1].split())  # the console's line (wrapped to 100 columns)
    assert line.startswith("32 steps x 4 samples (logits->token:argmax, h_out->h): every greedy decision agrees on ") \
        and all(fmt in line.split(";")[0] for fmt in FP32.split(",")) and "largest step error " in line, proc.stdout


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
    assert rec["notes"] == ["multi-step gates from the bundle's export: --max-step-error 0.5 (--tier-defaults "
                            "ignores them)"]


@pytest.mark.slow
def test_validate_re_applies_the_gates_export_stored(gru_bundle, run_cli, tmp_path):
    """A gate given at export is stored (manifest.steps) and applied by a later validate unless the command line
    sets its own or asks for --tier-defaults."""
    bundle = tmp_path / "gru_lm"
    shutil.copytree(gru_bundle[0], bundle)
    m = manifest_of(bundle)
    m["steps"]["max_step_error"] = 1e-9  # as if exported with --max-step-error 1e-9: no real artifact meets it
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    target = ("-f", "onnx", "--runtime", "onnxruntime")

    def validated(*args):
        proc = run_cli("validate", bundle, *target, *args)
        return proc, result_of(json.loads((bundle / "reports" / "validation.json").read_text()), "onnx")

    proc, rec = validated()
    assert proc.returncode == 5 and "multi-step: step error " in rec["reason"] and "> 1e-09" in rec["reason"]
    assert rec["notes"] == ["multi-step gates from the bundle's export: --max-step-error 1e-09 (--tier-defaults "
                            "ignores them)"]
    proc, rec = validated("--max-step-error", "0.5")
    assert proc.returncode == 0 and rec["steps"]["gates"]["max_step_error"] == 0.5 and rec["notes"] == []
    proc, rec = validated("--tier-defaults")
    assert proc.returncode == 0 and rec["steps"]["gates"]["max_step_error"] is None
    assert rec["notes"] == ["multi-step gates stored at export (--max-step-error 1e-09) ignored (--tier-defaults)"]
    proc = run_cli("validate", bundle, *target, "--min-agree-steps", "33")  # more than the bundle's loop runs
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"deploytool: error: --min-agree-steps 33: bundle {bundle}'s loop runs 32 steps (set at export), so at most "
        "32 can agree"]
    m["steps"]["max_step_error"] = -1.0
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", bundle, *target)
    assert proc.returncode == 8 and "manifest.steps: --max-step-error must be a finite number > 0" in proc.stderr


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
def test_a_slow_loop_stops_within_its_budget_and_the_target_keeps_its_verdicts(gru_bundle, tmp_path):
    """The multi-step loop has its own time budget inside the run (running/stepping.py): a loop far longer than the
    run's timeout (2000 starts x 10000 steps on onnxruntime) stops at 75% of it; the golden sets' outputs stand."""
    from deploytool.checking.golden import MAIN, GoldenSet
    from deploytool.core import npz
    from deploytool.running.jobs import RunStatus, StepsPlan
    from deploytool.running.pool import RunPool
    from deploytool.store.manifest import read

    bundle = gru_bundle[0]
    m = read(bundle)
    info = m.golden.sets[MAIN]
    ins, _ = S.split(npz.load(bundle / m.steps.path))
    many = {S.IN + k: np.repeat(v[:1], 500, axis=1) for k, v in ins.items()}  # 2000 starts: a slow step
    npz.save(tmp_path / "starts.npz", many)
    main = GoldenSet(MAIN, bundle / info.inputs, bundle / info.reference, info.dims, info.samples)
    pool = RunPool(tmp_path, tmp_path, timeout=20)
    rec = m.artifacts["onnx"]
    pool.submit("onnx", "onnxruntime", bundle / rec.path, rec.contract, [main], rec.load_settings(),
                steps=StepsPlan(str(tmp_path / "starts.npz"), m.steps.feedback, S.MAX_STEPS, ""))
    reply = pool.results()["onnx"]
    assert reply.status == RunStatus.OK and MAIN in reply.outputs, reply.error
    assert reply.steps_stopped.startswith("stopped after ") and "of 10000 steps: the loop's time budget" in \
        reply.steps_stopped and "75% of --timeout 20 s" in reply.steps_stopped


@pytest.mark.slow
def test_gates_on_a_bundle_without_a_loop_are_a_usage_error(gru_bundle, run_cli, tmp_path):
    bundle = tmp_path / "gru_lm"
    shutil.copytree(gru_bundle[0], bundle)
    m = manifest_of(bundle)
    del m["steps"]
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", bundle, "-f", "onnx", "--min-agree-steps", "4")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"deploytool: error: --min-agree-steps 4: bundle {bundle} declares no feedback loop (export --feedback "
        "OUTPUT->INPUT), so there is no multi-step check to gate"]


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
