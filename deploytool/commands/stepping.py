"""The coordinator side of the multi-step check (``checking/steps.py``), shared by export and validate: which
loop a source declares (``--feedback`` / ``--steps``, or the model file's ``FEEDBACK`` / ``STEPS``), the plan each
target runs, and the judged result on each check (``ArtifactCheck.steps``, the reason of a failure)."""
from __future__ import annotations

from pathlib import Path

from deploytool.checking import judge
from deploytool.checking import steps as S
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.core.errors import UsageError
from deploytool.results import ArtifactCheck
from deploytool.running.jobs import ArtifactRan, CheckStatus, StepsPlan

RAN = (CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.VACUOUS, CheckStatus.CONSTANT_ACCEPTED)


def model_file(source: dict) -> Path | None:
    """The Python file a torch source is defined in (zoo module, model file, factory file), or None."""
    if source.get("kind") == "zoo":
        from deploytool.sources.zoo import zoo_dir

        return zoo_dir() / f"{source['ref']}.py"
    ref = str(source.get("ref", ""))
    ref = ref.rsplit(":", 1)[0] if source.get("kind") == "factory" else ref
    return Path(ref) if ref.endswith(".py") and Path(ref).is_file() else None


def declared(source: dict, feedback: list[str], steps: int | None,
             gates: S.Gates | None = None) -> tuple[list[S.Pair], int, str] | None:
    """The loop to check: (pairs, steps, where it was declared), or None. ``--feedback`` wins over the model
    file's FEEDBACK; ``--steps`` over its STEPS. UsageError (one line) for a declaration that cannot run, or
    for ``--steps`` or a gate (``gates``) given without a loop to apply it to."""
    counted = "--steps" if steps is not None else "the default; --steps N runs more"
    try:
        pairs, where = S.parse(feedback), "--feedback"
        path = model_file(source)
        file_feedback, file_steps = S.declared_in_file(path) if path is not None else (None, None)
        if not pairs and file_feedback is not None:
            pairs, where = S.from_mapping(file_feedback, f"{path.name if path else 'model'}"), \
                "the model file (FEEDBACK)"
        if steps is None and file_steps is not None:
            if isinstance(file_steps, bool) or not isinstance(file_steps, int):
                raise ValueError(f"{path.name if path else 'model'}: STEPS must be an integer, got {file_steps!r}")
            steps, counted = file_steps, f"{path.name if path else 'the model file'}'s STEPS"
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not pairs:
        given = f"--steps {steps}" if steps is not None else (gates.describe() if gates is not None else "")
        if given:
            raise UsageError(f"{given} needs a feedback loop: declare one with --feedback OUTPUT->INPUT (or "
                             "FEEDBACK in the model file)")
        return None
    n = S.DEFAULT_STEPS if steps is None else steps
    if not 1 <= n <= S.MAX_STEPS:
        raise UsageError(f"--steps must be in [1, {S.MAX_STEPS}], got {n}")
    agree = gates.min_agree_steps if gates is not None else None
    if agree is not None and agree > n:
        raise UsageError(f"--min-agree-steps {agree}: the loop runs {n} steps ({counted}), so at most {n} can agree")
    return pairs, n, where


def check_declared(contract: Contract, pairs: list[S.Pair], where: str = "--feedback",
                   source: dict | None = None) -> None:
    """The declared pairs against the source's contract: UsageError naming where they were declared (``where``,
    as ``declared`` returns it: --feedback, or the model file's FEEDBACK)."""
    path = model_file(source) if source is not None and where != "--feedback" else None
    label = "--feedback" if where == "--feedback" else f"FEEDBACK in {path.name if path else 'the model file'}:"
    try:
        S.check(contract, pairs, label)
    except ValueError as e:
        raise UsageError(str(e)) from None


def gates_for(record: S.StepsRecord | None, given: S.Gates, tier_defaults: bool, bundle: Path) -> S.Gates:
    """validate's gates: the ones export stored in the bundle (unless ``tier_defaults``), each replaced by this
    run's where given. UsageError (exit 2) for a gate given on a bundle that declares no loop."""
    if record is None:
        if given.given():
            raise UsageError(f"{given.describe()}: bundle {bundle} declares no feedback loop (export --feedback "
                             "OUTPUT->INPUT), so there is no multi-step check to gate")
        return given
    if given.min_agree_steps is not None and given.min_agree_steps > record.steps:
        raise UsageError(f"--min-agree-steps {given.min_agree_steps}: bundle {bundle}'s loop runs {record.steps} "
                         f"steps (set at export), so at most {record.steps} can agree")
    return given if tier_defaults else record.gates().merged(given)


def stored_note(record: S.StepsRecord, given: S.Gates, tier_defaults: bool) -> str:
    """The note a check gets when gates stored at export apply to it (or are ignored), else ""."""
    stored = record.gates()
    if not stored.given():
        return ""
    if tier_defaults:
        return f"multi-step gates stored at export ({stored.describe()}) ignored (--tier-defaults)"
    kept = S.Gates(stored.min_agree_steps if given.min_agree_steps is None else None,
                   stored.max_step_error if given.max_step_error is None else None)
    return f"multi-step gates from the bundle's export: {kept.describe()} (--tier-defaults ignores them)" \
        if kept.given() else ""


def incomplete(chk: ArtifactCheck) -> str:
    """Why a passing check's multi-step check did not run every step ("" when it did, or did not need to): such
    a PASS is not a full proof, and --strict fails it (exit 7, ``strict_code``)."""
    rec = chk.steps or {}
    if chk.status not in (CheckStatus.PASS, CheckStatus.CONSTANT_ACCEPTED):  # CONSTANT_ACCEPTED exits 0 too
        return ""
    return rec.get("skipped") or rec.get("partial") or ""


def strict_code(checks: dict[str, ArtifactCheck], strict: bool) -> int:
    """Exit 7 under --strict where a passing target's multi-step check was skipped or stopped early, else 0."""
    return errors.SKIPPED if strict and any(incomplete(c) for c in checks.values()) else errors.OK


def plan(root: Path, record: S.StepsRecord) -> StepsPlan:
    """What each target is asked to run (the pool names where its trajectory goes)."""
    return StepsPlan(str(root / record.path), list(record.feedback), record.steps, "")


def apply(checks: dict[str, ArtifactCheck], replies: dict[str, ArtifactRan], reference: Path,
          record: S.StepsRecord, tiers: dict[str, str], gates: S.Gates, note: str = "") -> None:
    """Each check that ran gets its ``steps`` record; a failure of the multi-step check fails it (the cause
    appended to its reason), a check whose gates a decoy passes too is not a PASS (VACUOUS). A loop not run, or
    stopped early (its time budget: running/stepping.py), is compared over the steps it ran and gets a note
    naming why (``incomplete``). ``note``: where the gates came from, added to every check that ran the loop."""
    ref = npz.load(reference)
    pairs = S.parse(record.feedback)
    for key, chk in checks.items():
        reply = replies.get(key)
        if reply is None or chk.status not in RAN:
            continue
        head = {"steps": record.steps, "samples": record.samples, "feedback": record.feedback}
        got = npz.load(reply.steps) if reply.steps and not reply.steps_error else {}
        done = len(next(iter(got.values()))) if got else 0
        if reply.steps_error:
            chk.steps = {**head, "error": reply.steps_error}
        elif not done:
            why = reply.steps_stopped or "the artifact does not take the main golden set the steps start from"
            chk.steps = {**head, "skipped": why}
            chk.notes.append(f"multi-step check not run: {why}")
            continue
        else:
            chk.steps = S.compare(S.truncated(ref, done), got, pairs, tiers.get(chk.format, "fp32"), gates)
            if done < record.steps:
                chk.steps["partial"] = reply.steps_stopped or f"ran {done} of {record.steps} steps"
                chk.notes.append(f"multi-step check stopped early: {chk.steps['partial']}; steps 1-{done} compared")
        if note:
            chk.notes.append(note)
        why = S.reason(chk.steps)
        if not why:
            continue
        if chk.steps.get("error") or chk.steps.get("failures"):
            judge.add_failure(chk, why)
        else:
            judge.add_uninformative(chk, why)
