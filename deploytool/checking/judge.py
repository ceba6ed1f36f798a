"""Judging artifacts: verdicts against the reference and the parent artifact, the blamed hop, exit codes.

Shared by ``export`` (the check after export) and ``validate``. Pure: it takes the manifest's
artifact records, the runs' replies and the golden data, and computes verdicts with parity.py;
nothing here starts a process or writes a file. Each artifact is compared with the reference and
with its parent artifact, so a failure names the conversion hop where the error first appears.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from deploytool.checking import parity
from deploytool.checking.golden import GoldenSet
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.formats import DEFAULT_FRAMEWORK, lineage, plan
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord


@dataclass
class ArtifactCheck:
    format: str
    runtime: str
    status: CheckStatus
    reason: str = ""
    sets: dict = field(default_factory=dict)  # set -> output -> verdict vs reference
    hop: dict = field(default_factory=dict)  # set -> output -> verdict vs parent artifact
    hop_blamed: str | None = None  # "onnx -> savedmodel": where the error first appears
    skipped_sets: dict = field(default_factory=dict)  # set -> why not run
    max_abs: float | None = None
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runtime_version: str | None = None
    outputs: dict = field(default_factory=dict)  # set -> path of the artifact's outputs
    overrides: dict = field(default_factory=dict)  # output -> tolerance overrides applied instead of the tier's
    accuracy: dict | None = None  # task accuracy on a labelled set, against the source's
    notes: list[str] = field(default_factory=list)  # how the verdict was reached, where it is not the usual way
    first_diverging: dict | None = None  # localise.Finding of the blamed hop (commands/localising.py)

    def overrides_text(self) -> str:
        """The overrides applied, for a table's note (empty when the tier's defaults were used)."""
        seen = sorted({f"{k}={v:g}" for values in self.overrides.values() for k, v in values.items()})
        return f"tolerance override {', '.join(seen)} (not the {self.format} tier's)" if seen else ""

    def to_dict(self) -> dict:
        return asdict(self)


def judge(contract: Contract, records: dict[str, ArtifactRecord], runs: dict[str, ArtifactRan],
          sets: list[GoldenSet], references: dict[str, dict[str, np.ndarray]], tolerances: dict | None = None,
          stored_outputs: Callable[[str, str], dict | None] = lambda fmt, set_name: None,
          framework: str = DEFAULT_FRAMEWORK, refused: dict[str, str] | None = None,
          skipped_sets: dict[str, dict[str, str]] | None = None,
          max_drop: dict[str, float] | None = None, accept_constant: list[str] | None = None,
          inputs: Callable[[GoldenSet], dict | None] = lambda s: None) -> dict[str, ArtifactCheck]:
    """Verdicts per artifact, set and output, against the reference and against the parent artifact.

    ``records``: manifest artifact records of the artifacts to judge (in registry order).
    ``runs``: each run artifact's reply (skipped runs included, with their reason).
    ``stored_outputs(fmt, set)``: a parent's outputs saved in the bundle at export time, used for
    the hop comparison when the parent is not run now (e.g. on a device without TensorFlow).
    ``framework``: the source's, which decides each artifact's parent (``formats.plan``).
    ``refused``: artifacts refused before loading (hash mismatch), with the reason.
    ``skipped_sets``: per artifact, the golden sets its run was not given (a converter fixed a dim).
    ``max_drop``: {format or "*": points} accuracy gates on a labelled set (else the tier's default);
    an ``accuracy_gated`` tier (int8) is then judged on accuracy, its tensor metrics reported only.
    ``accept_constant``: outputs ("*": all) whose reference may be constant (``reference_check``);
    ``inputs(set)``: a set's golden inputs, to say when they are themselves identical across samples.
    """
    checks: dict[str, ArtifactCheck] = {}
    refcheck = reference_check(contract, sets, references)
    loaded: dict[str, dict | None] = {}  # each set's inputs read once, only where a reference is constant

    def set_inputs(s: GoldenSet) -> dict | None:
        if s.name not in loaded:
            loaded[s.name] = inputs(s)
        return loaded[s.name]
    produced: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    formats = plan(framework)
    refused = refused or {}
    for name in [n for n in formats if n in records]:
        fmt, rec, run = formats[name], records[name], runs.get(name)
        chk = ArtifactCheck(format=name, runtime=fmt.runtime, status=CheckStatus.NOT_EXPORTED)
        checks[name] = chk
        if name in refused:
            chk.status, chk.reason = CheckStatus.CORRUPT, refused[name]
            continue
        if rec.status != ArtifactStatus.OK:
            chk.reason = rec.error or "not exported"
            if rec.status == ArtifactStatus.NOT_APPLICABLE:
                chk.status = CheckStatus.NOT_APPLICABLE
            elif rec.status == ArtifactStatus.NEEDS_DATA:
                chk.status = CheckStatus.NEEDS_DATA
            continue
        if run is None:
            chk.status, chk.reason = CheckStatus.SKIPPED, "not run"
            continue
        chk.timings = run.timings()
        chk.settings, chk.runtime_version = run.settings, run.version
        chk.skipped_sets = dict((skipped_sets or {}).get(name, {}))
        if run.status == RunStatus.SKIPPED:
            chk.status, chk.reason = CheckStatus.SKIPPED, run.error or "skipped"
            continue
        if run.status == RunStatus.CONTRACT_MISMATCH:
            chk.status, chk.reason = CheckStatus.FAIL, f"does not honour its I/O contract: {run.error}"
            continue
        if run.status != RunStatus.OK:
            chk.status = CheckStatus.ERROR
            where = "load" if run.status == RunStatus.LOAD_FAILED else "run"
            chk.reason = f"failed to {where} in {fmt.runtime}: {run.error or 'worker died'}"
            continue
        failures = []
        produced[name] = {}
        base_tier = parity.TIERS[fmt.tier]
        labelled_set = next((s for s in sets if s.labels is not None and s.name in run.outputs), None)
        # An accuracy-gated tier (int8) with labels is judged on accuracy for the labelled output;
        # every other output, a user's explicit tolerance, and shape/dtype/NaN failures still gate.
        waived_output = labelled_set.labelled_output if labelled_set and base_tier.accuracy_gated else None
        for set_name, out_path in run.outputs.items():
            got = npz.load(out_path)
            produced[name][set_name] = got
            chk.outputs[set_name] = out_path
            ref = references[set_name]
            parent_out = None
            if fmt.parent:
                parent_out = produced.get(fmt.parent, {}).get(set_name) or stored_outputs(fmt.parent, set_name)
            chk.sets[set_name], chk.hop[set_name] = {}, {}
            for spec in contract.outputs:
                tier = parity.tier_for(parity.TIERS[fmt.tier], tolerances or {}, name, spec.name)
                overrides = parity.overrides_for(tolerances or {}, name, spec.name)
                if overrides:
                    chk.overrides[spec.name] = overrides
                classifier = spec.kind == "classifier"
                resolution = _step(rec, spec.name) if tier.gate == "statistical" else None
                verdict = parity.check(got[spec.name], ref[spec.name], tier, classifier, resolution)
                if verdict.passed and str(got[spec.name].dtype) != spec.dtype:
                    verdict.passed, verdict.reason = False, f"dtype {got[spec.name].dtype}, contract says {spec.dtype}"
                structural = not verdict.metrics.shape_ok or bool(verdict.metrics.nonfinite_new) or \
                    bool(verdict.metrics.nonfinite_ref) or str(got[spec.name].dtype) != spec.dtype
                gating = structural or spec.name != waived_output or bool(overrides)
                chk.sets[set_name][spec.name] = {**verdict.to_dict(), "gating": gating,
                                                 "reference": refcheck[set_name][spec.name].to_dict()}
                if verdict.basis == "absolute":
                    floor = parity.resolution_floor(tier, resolution)
                    _note(chk, f"{spec.name}: reference below the {tier.name} resolution ({floor:.2g}): judged on "
                               "absolute error, not cosine/SQNR")
                if not verdict.passed and gating:
                    failures.append(f"{spec.name}{'' if set_name == 'main' else f' ({set_name} set)'}: "
                                    f"{verdict.reason}")
                if parent_out is not None and spec.name in parent_out:
                    chk.hop[set_name][spec.name] = parity.check(got[spec.name], parent_out[spec.name], tier,
                                                                classifier, resolution).to_dict()
        labelled = labelled_set
        if labelled is not None and labelled.labelled_output:
            failure = _accuracy(chk, labelled, produced[name][labelled.name], references[labelled.name],
                                (max_drop or {}).get(name, (max_drop or {}).get("*", base_tier.max_accuracy_drop)),
                                base_tier.min_top1 if waived_output else None)
            if failure:
                failures.append(failure)
        chk.max_abs = max((v["metrics"]["max_abs"] for per_set in chk.sets.values() for v in per_set.values()
                           if v["metrics"]["max_abs"] is not None), default=None)
        chk.status, chk.reason = (CheckStatus.FAIL, "; ".join(failures)) if failures else (CheckStatus.PASS, "")
        _vacuity(chk, refcheck, accept_constant or [], set_inputs, sets)
    for name, chk in checks.items():
        if chk.status == CheckStatus.FAIL:
            chk.hop_blamed = blame(name, checks, framework)
            chk.reason = f"{chk.reason} [error appears at hop {chk.hop_blamed}]"
    return checks


LIKELY_CAUSES = ("likely causes: weights not loaded into the head (missing keys, a zero-initialised layer), golden "
                 "inputs out of range that saturate the model (give --input-range or --data), or a model whose "
                 "output ignores its input")


def reference_check(contract: Contract, sets: list[GoldenSet],
                    references: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, parity.Variation]]:
    """Whether each reference output varies with the input, per set: decided once per run, before any
    artifact is judged (``parity.variation``)."""
    return {s.name: {o.name: parity.variation(references[s.name][o.name]) for o in contract.outputs
                     if o.name in references.get(s.name, {})} for s in sets if s.name in references}


def check_accepted(contract: Contract, accept: list[str] | None) -> list[str]:
    """``--accept-constant-output`` names: outputs of the contract, or "*" (ValueError otherwise)."""
    accept = [accept] if isinstance(accept, str) else accept
    unknown = [n for n in accept or [] if n != "*" and n not in contract.output_names]
    if unknown:
        raise ValueError(f"--accept-constant-output {', '.join(unknown)}: no such output (the outputs are "
                         f"{', '.join(contract.output_names)}; '*' accepts all)")
    return list(accept or [])


def _note(chk: ArtifactCheck, text: str) -> None:
    if text not in chk.notes:
        chk.notes.append(text)


def _step(rec: ArtifactRecord, output: str) -> float | None:
    """The quantization step of an artifact's integer output (its contract's scale), if it has one."""
    spec = next((o for o in rec.contract.outputs if o.name == output), None) if rec.contract else None
    return float(spec.quant[0]) if spec is not None and spec.quant else None


def _vacuity(chk: ArtifactCheck, refcheck: dict, accept: list[str], inputs: Callable, sets: list[GoldenSet]) -> None:
    """A check that passed against a reference output that does not vary is not a pass: VACUOUS (or
    CONSTANT_ACCEPTED for outputs the user accepted). A failure stays a failure."""
    vacuous: list[str] = []
    names: list[str] = []
    accepted: list[str] = []
    seen: set[str] = set()  # outputs already named (once, on the first set where they are constant)
    for set_name in chk.sets:
        for output in chk.sets[set_name]:
            v = refcheck[set_name][output]
            text = v.describe(output, set_name)
            if v.status == "one_sample" and all(refcheck[s][output].status == "one_sample" for s in chk.sets):
                _note(chk, text)
            if not v.vacuous or output in seen:
                continue
            seen.add(output)
            given = next((s for s in sets if s.name == set_name), None)
            got = inputs(given) if given is not None else None
            if got is not None and not parity.inputs_vary(got):
                text += " (the golden inputs themselves are identical across samples)"
            elif got:  # the range the inputs covered: is it the one the model expects?
                text += f" (golden inputs: {parity.input_ranges(got)})"
            if "*" in accept or output in accept:
                accepted.append(text)
            else:
                vacuous.append(text)
                names.append(output)
    if chk.status != CheckStatus.PASS:
        return
    if vacuous:
        chk.status = CheckStatus.VACUOUS
        chk.reason = (f"vacuous check: {'; '.join(vacuous)}: it would pass any artifact that outputs that; "
                      f"{LIKELY_CAUSES}; {' '.join(f'--accept-constant-output {n}' for n in names)} accepts it")
    elif accepted:
        chk.status = CheckStatus.CONSTANT_ACCEPTED
        chk.reason = f"not a full pass: {'; '.join(accepted)} (accepted with --accept-constant-output)"


def _accuracy(chk: ArtifactCheck, s: GoldenSet, got: dict, ref: dict, limit: float | None,
              min_agreement: float | None) -> str | None:
    """Task accuracy of the artifact and of the source on a labelled set; the failure line when the
    drop exceeds ``limit`` points. ``min_agreement``: when accuracy stands in for the closeness checks
    (int8), the artifact's top-1 must also agree with the source's on that many samples: a source
    near chance level would otherwise let any garbage of the same accuracy pass."""
    out = s.labelled_output or ""
    labels = npz.load(s.labels)["labels"] if s.labels else np.zeros(0, np.int64)
    acc, src = parity.accuracy(got[out], labels), parity.accuracy(ref[out], labels)
    drop = (src - acc) * 100
    agreement = parity.top1_agreement(got[out], ref[out])
    dropped = limit is not None and drop > limit + 1e-9
    disagrees = min_agreement is not None and agreement < min_agreement
    chk.accuracy = {"set": s.name, "output": out, "samples": int(len(labels)), "accuracy": acc, "source_accuracy": src,
                    "drop_points": drop, "top1_agreement": agreement, "max_drop_points": limit,
                    "min_top1_agreement": min_agreement, "passed": not (dropped or disagrees)}
    problems = []
    if dropped:
        problems.append(f"accuracy {acc:.2%} on the {s.name} set is {drop:.2f} points below the source's {src:.2%} "
                        f"(max drop {limit:g} points)")
    if disagrees:
        problems.append(f"top-1 agrees with the source's on only {agreement:.1%} of the {s.name} set "
                        f"(< {min_agreement:g})")
    return "; ".join(problems) or None


def blame(name: str, checks: dict[str, ArtifactCheck], framework: str = DEFAULT_FRAMEWORK) -> str:
    """The hop into the first artifact of the lineage that fails against the reference.

    An ancestor that was not checked in this run cannot be cleared; then the hop into ``name``
    is named together with the unchecked ancestors. When the parent passes against the
    reference but this artifact does not, the error appeared at this hop.
    """
    chain = lineage(name, framework)
    unchecked: list[str] = []
    for i, fmt in enumerate(chain):
        c = checks.get(fmt)
        if c is not None and c.status == CheckStatus.FAIL:
            hop = f"{chain[i - 1] if i else 'source'} -> {fmt}"
            return hop if not unchecked else f"{hop} (not checked in this run: {', '.join(unchecked)})"
        # a vacuous ancestor did match the (constant) reference: the error appears after it
        if c is None or c.status not in (CheckStatus.PASS, CheckStatus.VACUOUS, CheckStatus.CONSTANT_ACCEPTED):
            unchecked.append(fmt)
    return f"{chain[-2] if len(chain) > 1 else 'source'} -> {name}"


def worst_sample(chk: ArtifactCheck) -> tuple[str, str, int] | None:
    """(set, output, sample index) of the largest out-of-tolerance error among failing outputs."""
    best = None
    for set_name, per_out in chk.sets.items():
        for out, v in per_out.items():
            if not v["passed"]:
                m = v["metrics"]["max_abs"] or 0.0
                if best is None or m > best[0]:
                    best = (m, set_name, out, v["metrics"]["worst_sample"])
    return None if best is None else (best[1], best[2], best[3])


EXIT_CODE_OF = {CheckStatus.FAIL: errors.PARITY, CheckStatus.VACUOUS: errors.PARITY, CheckStatus.ERROR: errors.RUNTIME,
                CheckStatus.CORRUPT: errors.BUNDLE,
                CheckStatus.NOT_EXPORTED: errors.EXPORT}


def exit_code(checks: dict[str, ArtifactCheck], strict: bool) -> int:
    codes = {**EXIT_CODE_OF, CheckStatus.SKIPPED: errors.SKIPPED if strict else errors.OK}
    return errors.worst(codes.get(c.status, errors.OK) for c in checks.values())
