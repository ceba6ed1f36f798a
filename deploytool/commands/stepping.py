"""The coordinator side of the multi-step check (``checking/steps.py``), shared by export and validate: which
loop a source declares (``--feedback`` / ``--steps``, or the model file's ``FEEDBACK`` / ``STEPS``), the plan each
target runs, and the judged result on each check (``ArtifactCheck.steps``, the reason of a failure)."""
from __future__ import annotations

from pathlib import Path

from deploytool.checking import judge
from deploytool.checking import steps as S
from deploytool.core import npz
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


def declared(source: dict, feedback: list[str], steps: int | None) -> tuple[list[S.Pair], int, str] | None:
    """The loop to check: (pairs, steps, where it was declared), or None. ``--feedback`` wins over the model
    file's FEEDBACK; ``--steps`` over its STEPS. UsageError (one line) for a declaration that cannot run."""
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
            steps = file_steps
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not pairs:
        if steps is not None:
            raise UsageError(f"--steps {steps} needs a feedback loop: declare one with --feedback OUTPUT->INPUT (or "
                             "FEEDBACK in the model file)")
        return None
    n = S.DEFAULT_STEPS if steps is None else steps
    if not 1 <= n <= S.MAX_STEPS:
        raise UsageError(f"--steps must be in [1, {S.MAX_STEPS}], got {n}")
    return pairs, n, where


def check_declared(contract: Contract, pairs: list[S.Pair]) -> None:
    try:
        S.check(contract, pairs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def plan(root: Path, record: S.StepsRecord) -> StepsPlan:
    """What each target is asked to run (the pool names where its trajectory goes)."""
    return StepsPlan(str(root / record.path), list(record.feedback), record.steps, "")


def apply(checks: dict[str, ArtifactCheck], replies: dict[str, ArtifactRan], reference: Path,
          record: S.StepsRecord, tiers: dict[str, str], gates: S.Gates) -> None:
    """Each check that ran gets its ``steps`` record; a failure of the multi-step check fails it (the cause
    appended to its reason), a check whose gates a decoy passes too is not a PASS (VACUOUS)."""
    ref = npz.load(reference)
    pairs = S.parse(record.feedback)
    for key, chk in checks.items():
        reply = replies.get(key)
        if reply is None or chk.status not in RAN:
            continue
        if reply.steps_error:
            chk.steps = {"steps": record.steps, "samples": record.samples, "feedback": record.feedback,
                         "error": reply.steps_error}
        elif not reply.steps:
            chk.steps = {"skipped": "the artifact does not take the main golden set the steps start from"}
            continue
        else:
            chk.steps = S.compare(ref, npz.load(reply.steps), pairs, tiers.get(chk.format, "fp32"), gates)
        why = S.reason(chk.steps)
        if not why:
            continue
        if chk.steps.get("error") or chk.steps.get("failures"):
            judge.add_failure(chk, why)
        else:
            judge.add_uninformative(chk, why)
