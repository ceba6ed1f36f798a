"""Judging artifacts: verdicts against the reference and the parent artifact, the blamed hop, exit codes.

Shared by ``export`` (the check after export) and ``validate``. Pure: it takes the manifest's
artifact records, the runs' replies and the golden data, and computes verdicts with parity.py;
nothing here starts a process or writes a file. Each artifact is compared with the reference and
with its parent artifact, so a failure names the conversion hop where the error first appears.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from deploytool import platforms
from deploytool.checking import families, informative, parity
from deploytool.checking import oracle as oracle_rule
from deploytool.checking.golden import GoldenSet
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.core.target import NATIVE, Target
from deploytool.formats import DEFAULT_FRAMEWORK, lineage, plan
from deploytool.results import ArtifactCheck, Checks, worst_sample  # noqa: F401 - worst_sample: re-exported
from deploytool.running.jobs import FAILING_CHECKS, ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord


@dataclass
class Evidence:
    """What one run of a command gives the judge: the runs' replies and the golden data to compare them with.

    ``runs``: each target's run reply, by target key (skipped runs included, with their reason).
    ``sets`` and ``references``: the golden sets and their reference outputs, by set name.
    ``stored_outputs(fmt, set)``: a parent's outputs saved in the bundle at export time, used for
    the hop comparison when the parent is not run now (e.g. on a device without TensorFlow).
    ``inputs(set)``: a set's golden inputs, to say when they are themselves identical across samples.
    ``refused``: artifacts (by format) refused before loading (hash mismatch), with the reason.
    ``skipped_sets``: per target key, the golden sets its run was not given (a converter fixed a dim).
    """

    runs: dict[str, ArtifactRan]
    sets: list[GoldenSet]
    references: dict[str, dict[str, np.ndarray]]
    stored_outputs: Callable[[str, str], dict | None] = lambda fmt, set_name: None
    inputs: Callable[[GoldenSet], dict | None] = lambda s: None
    refused: dict[str, str] = field(default_factory=dict)
    skipped_sets: dict[str, dict[str, str]] = field(default_factory=dict)
    oracles: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set -> float64 outputs (oracle.py)


@dataclass
class Rules:
    """What the user asked of the checks, on top of the tiers.

    ``tolerances``: overrides of the tiers (``parity.Tolerances``; one that applies makes its output gate).
    ``max_drop``: {format, target key or "*": points} accuracy gates on a labelled set (else the tier's
    default); an ``accuracy_gated`` tier (int8) is then judged on accuracy, its tensor metrics reported only.
    ``accept_constant``: outputs ("*": all) whose check may be uninformative: a trivial artifact would pass it
    (``informative``; a constant reference is one case): ``--accept-uninformative``, ``--accept-constant-output``.
    """

    tolerances: parity.Tolerances = field(default_factory=parity.Tolerances)
    max_drop: dict[str, float] = field(default_factory=dict)
    accept_constant: list[str] = field(default_factory=list)
    # input families that gate where the tier would only report them (``families.ungated_families``: edge on int8)
    gate_families: list[str] = field(default_factory=list)
    # the float64 oracle rule for the fp32 tier (checking/oracle.py): the bundle's oracle info ({"kind", "why_not"})
    oracle: dict | None = None


def judge(contract: Contract, records: dict[str, ArtifactRecord], evidence: Evidence, rules: Rules | None = None,
          framework: str = DEFAULT_FRAMEWORK, targets: list[Target] | None = None, final: bool = True) -> Checks:
    """Verdicts per target (artifact x runtime), set and output, against the reference and against the
    parent artifact. Keyed by ``Target.key`` (``onnx@openvino``), in registry order of the formats.

    ``records``: manifest artifact records of the artifacts to judge (in registry order).
    ``evidence``: the runs and the golden data (``Evidence``); ``rules``: the user's tolerances, accuracy
    gates and accepted constant outputs (``Rules``; default: none).
    ``framework``: the source's, which decides each artifact's parent (``formats.plan``).
    ``targets``: the targets to judge (default: each record on its format's default runtime).

    ``final``: False when the caller applies further gates (``add_failure``: multi-step, pipeline decisions) before
    the verdicts are final; it then calls ``finish`` itself, once, after them.

    The hop comparison of a target takes its parent artifact on the same runtime where that target is
    judged too (so a fault only one runtime sees is blamed on that runtime's hop), else the parent on
    its default runtime, else the parent's outputs stored at export.
    """
    rules = rules or Rules()
    runs, sets, references, stored_outputs = evidence.runs, evidence.sets, evidence.references, evidence.stored_outputs
    inputs, refused, skipped_sets = evidence.inputs, evidence.refused, evidence.skipped_sets
    tolerances, max_drop, accept_constant = rules.tolerances, rules.max_drop, rules.accept_constant
    checks = Checks()
    refcheck = reference_check(contract, sets, references)
    decoy_cache: dict[tuple, list[informative.Decoy]] = {}  # the same check on the same reference: judged once

    def tensor_decoys(set_name: str, output: str, tier: parity.Tier, classifier: bool,
                      resolution: float | None) -> list[informative.Decoy]:
        key = (set_name, output, tier, classifier, resolution)
        if key not in decoy_cache:
            decoy_cache[key] = informative.trivial_passes(
                references[set_name][output], _tensor_rule(references[set_name][output], tier, classifier, resolution))
        return decoy_cache[key]
    loaded: dict[str, dict | None] = {}  # each set's inputs read once, only where a reference is constant

    def set_inputs(s: GoldenSet) -> dict | None:
        if s.name not in loaded:
            loaded[s.name] = inputs(s)
        return loaded[s.name]
    produced: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # target key -> set -> outputs
    formats = plan(framework)
    if targets is None:
        targets = [Target(n, formats[n].runtime) for n in formats if n in records]
    order = {n: i for i, n in enumerate(formats)}
    targets = sorted(targets, key=lambda t: (order.get(t.format, len(order)), t.runtime != formats[t.format].runtime,
                                             t.runtime, t.platform != NATIVE, t.platform))
    keys = {t.key for t in targets}
    drops = max_drop or {}
    for target in targets:
        name, key = target.format, target.key
        fmt, rec = formats[name], records[name]
        # a run keyed by its bare format name is that format's on its default runtime
        run = runs.get(key) or (runs.get(name) if target.runtime == fmt.runtime and target.platform == NATIVE
                                else None)
        chk = ArtifactCheck(format=name, runtime=target.runtime, platform=target.platform,
                            status=CheckStatus.NOT_EXPORTED,
                            executed=platforms.executed_precision(fmt.precision, fmt.compute, target.platform))
        checks[key] = chk
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
        chk.skipped_sets = dict((skipped_sets or {}).get(key, (skipped_sets or {}).get(name, {})))
        if run.status == RunStatus.SKIPPED:
            chk.status, chk.reason = CheckStatus.SKIPPED, run.error or "skipped"
            continue
        if run.status == RunStatus.CONTRACT_MISMATCH:
            chk.status, chk.reason = CheckStatus.FAIL, f"does not honour its I/O contract: {run.error}"
            chk.basis = "judged on its I/O contract (input and output names, shapes, dtypes)"
            continue
        if run.status != RunStatus.OK:
            chk.status = CheckStatus.ERROR
            where = "load" if run.status == RunStatus.LOAD_FAILED else "run"
            chk.reason = f"failed to {where} in {target.where}: {run.error or 'worker died'}"
            continue
        failures = []
        produced[key] = {}
        base_tier = parity.TIERS[fmt.tier]
        labelled_set = next((s for s in sets if s.labels is not None and s.name in run.outputs), None)
        # An accuracy-gated tier (int8) with labels is judged on accuracy for the labelled output;
        # every other output, a user's explicit tolerance, and shape/dtype/NaN failures still gate.
        waived_output = labelled_set.labelled_output if labelled_set and base_tier.accuracy_gated else None
        parent_keys = _parent_keys(target, fmt.parent, formats, keys)
        set_families = {s.name: families.family_of(s.name, s.family) for s in sets}
        ungated = families.ungated_families(base_tier, rules.gate_families)  # reported, not gating (edge on int8)
        bases: dict[str, list[str]] = {}  # gating output -> what its verdicts were decided on (per set)
        trivial: dict[str, tuple[str, list[informative.Decoy]]] = {}  # output -> (first set, decoys that pass)
        for set_name, out_path in run.outputs.items():
            got = npz.load(out_path)
            produced[key][set_name] = got
            chk.outputs[set_name] = out_path
            ref = references[set_name]
            parent_out = None
            if fmt.parent:
                parent_out = next((produced[k][set_name] for k in parent_keys
                                   if set_name in produced.get(k, {})), None) or stored_outputs(fmt.parent, set_name)
            chk.sets[set_name], chk.hop[set_name] = {}, {}
            for spec in contract.outputs:
                tier = tolerances.tier(parity.TIERS[fmt.tier], name, spec.name, key)
                overrides = tolerances.for_output(name, spec.name, key)
                if overrides:
                    chk.overrides[spec.name] = overrides
                classifier = spec.kind == "classifier"
                resolution = _step(rec, spec.name) if tier.gate == "statistical" else None
                verdict = parity.check(got[spec.name], ref[spec.name], tier, classifier, resolution)
                if verdict.passed and str(got[spec.name].dtype) != spec.dtype:
                    verdict.passed, verdict.reason = False, f"dtype {got[spec.name].dtype}, contract says {spec.dtype}"
                orc = evidence.oracles.get(set_name, {}).get(spec.name) if rules.oracle is not None and \
                    oracle_rule.applies(tier, overrides) else None
                if orc is not None:  # judged against the float64 result; the fixed tier's verdict kept beside it
                    verdict, figures = oracle_rule.verdict(verdict, got[spec.name], ref[spec.name], orc)
                    chk.oracle = oracle_rule.record(chk.oracle, rules.oracle, set_name, spec.name, figures)
                elif rules.oracle is not None and oracle_rule.applies(tier, overrides) and chk.oracle is None:
                    chk.oracle = oracle_rule.absent(rules.oracle)
                    _note(chk, f"fp32 tier: {chk.oracle['why_not']}")
                structural = not verdict.metrics.shape_ok or bool(verdict.metrics.nonfinite_new) or \
                    bool(verdict.metrics.nonfinite_ref) or str(got[spec.name].dtype) != spec.dtype
                gating = structural or spec.name != waived_output or bool(overrides)
                family_ungated = set_families.get(set_name) in ungated and not structural
                # a family asked to gate (--gate-families) gates on its tensors even where accuracy stands in for
                # them elsewhere: its sets have no labels
                gating = (gating or set_families.get(set_name) in rules.gate_families) and not family_ungated
                tried = (oracle_rule.decoys(ref[spec.name], orc) if orc is not None else
                         tensor_decoys(set_name, spec.name, tier, classifier, resolution)) \
                    if verdict.passed and gating else []
                _record_decoys(chk.sets[set_name], spec.name, verdict.to_dict(), gating, tried,
                               refcheck[set_name][spec.name], set_name, trivial)
                if family_ungated:  # its family's verdict counts it; the check does not (families.py)
                    chk.sets[set_name][spec.name].update(
                        family_ungated=True, family_reason=verdict.reason,
                        reason=f"not gating ({set_families[set_name]} family on the {base_tier.name} tier; "
                               f"--gate-families {set_families[set_name]} gates it): {verdict.reason}")
                elif gating:
                    bases.setdefault(spec.name, []).append(verdict.judged_on)
                else:  # its tensor metrics are reported only: say so where they are read
                    chk.sets[set_name][spec.name].update(basis="accuracy", reason=f"not gating (judged on task "
                                                         f"accuracy): {verdict.reason}")
                if not verdict.passed and gating:
                    failures.append(families.failure_line(spec.name, set_name, verdict.reason))
                if parent_out is not None and spec.name in parent_out:
                    chk.hop[set_name][spec.name] = parity.check(got[spec.name], parent_out[spec.name], tier,
                                                                classifier, resolution).to_dict()
        labelled = labelled_set
        accuracy_basis = None
        if labelled is not None and labelled.labelled_output:
            limit = drops.get(key, drops.get(name, drops.get("*", base_tier.max_accuracy_drop)))
            failure = _accuracy(chk, labelled, produced[key][labelled.name], references[labelled.name],
                                limit, base_tier.min_top1 if waived_output else None)
            if failure:
                failures.append(failure)
            accuracy_basis = _accuracy_basis(chk.accuracy) if chk.accuracy else None
            if waived_output and not failure:  # decoys judged by the accuracy rule that gates this output
                _accuracy_decoys(chk, labelled, references[labelled.name][waived_output], limit, base_tier.min_top1,
                                 trivial)
        chk.basis = _basis(bases, accuracy_basis, waived_output)
        if chk.oracle and chk.oracle.get("available") and chk.oracle["passed"] != chk.oracle["fixed_tier_passed"]:
            _note(chk, oracle_rule.summary(chk.oracle))  # the two verdicts differ: both, side by side
        chk.max_abs = max((v["metrics"]["max_abs"] for per_set in chk.sets.values() for v in per_set.values()
                           if v["metrics"]["max_abs"] is not None), default=None)
        chk.status, chk.reason = (CheckStatus.FAIL, "; ".join(failures)) if failures else (CheckStatus.PASS, "")
        disagree, cited = families.judge(chk, set_families, ungated)
        if disagree and chk.status == CheckStatus.FAIL:  # said once: the failing family's reason is the failure's
            chk.reason = "; ".join([disagree, *(f for f in failures if f != cited and f not in disagree)])
        elif disagree:
            _note(chk, f"{disagree} (not gating: {', '.join(sorted(ungated))} on the {base_tier.name} tier)")
        _informativeness(chk, trivial, refcheck, accept_constant or [], set_inputs, sets)
    return finish(checks, framework) if final else checks


# A target that got through the judge's checks (passed, or passed only vacuously): a further gate can still fail it.
OPEN_TO_FURTHER_GATES = (CheckStatus.PASS, CheckStatus.VACUOUS, CheckStatus.CONSTANT_ACCEPTED)


def add_failure(chk: ArtifactCheck, why: str) -> None:
    """A gate checked beside the tensor checks (the multi-step check, the pipeline's decisions) failed on ``chk``: a
    target that passed, or passed only vacuously, FAILs; the cause is appended to its reason either way. Call before
    ``finish``, which blames the hop of every failure."""
    if chk.status in OPEN_TO_FURTHER_GATES:
        chk.status = CheckStatus.FAIL
    chk.reason = f"{chk.reason}; {why}" if chk.reason else why


def add_uninformative(chk: ArtifactCheck, why: str) -> None:
    """A further gate passed, but so would a trivial artifact (``informative.py``): a PASS is VACUOUS; the cause is
    appended to the reason."""
    if chk.status == CheckStatus.PASS:
        chk.status = CheckStatus.VACUOUS
    chk.reason = f"{chk.reason}; {why}" if chk.reason else why


def tensors_passed(chk: ArtifactCheck) -> bool:
    """Whether every output verdict that gates ``chk`` passed (and its task accuracy): a failure then came from a
    further gate only (the multi-step check, the pipeline), with no diverging tensor on a golden sample to
    localise."""
    verdicts = [v for per_set in chk.sets.values() for v in per_set.values()
                if v.get("gating", True) and not v.get("family_ungated")]
    # no gating verdict at all is a pass where the outputs were judged on task accuracy (int8 with labels); a check
    # with no sets (an I/O contract mismatch) has failed on its tensors
    return bool(chk.sets) and all(v.get("passed") for v in verdicts) and \
        (chk.accuracy is None or chk.accuracy.get("passed", True) is not False)


def deployed_preprocessing_only(chk: ArtifactCheck) -> bool:
    """Whether ``chk`` failed only because the pipeline's deployed preprocessing differs from the reference one: no
    hop of the artifact causes that, so none is blamed."""
    pipe = chk.pipeline or {}
    steps_failed = bool(chk.steps and (chk.steps.get("failures") or chk.steps.get("error")))
    return (pipe.get("preprocess_deployed") or {}).get("match") is False and pipe.get("gate", {}).get("passed", True) \
        and not steps_failed and tensors_passed(chk)


def finish(checks: Checks, framework: str = DEFAULT_FRAMEWORK) -> Checks:
    """The verdicts made final, once every gate has been applied: each failure's blamed hop (the first target of its
    lineage that fails; none where only the deployed preprocessing is at fault), and on an emulated CPU the
    cross-check against the same artifact natively."""
    for chk in checks.values():
        if chk.status == CheckStatus.FAIL and not deployed_preprocessing_only(chk):
            chk.hop_from, chk.hop_to = blame_targets(chk.target, checks, framework)
            chk.hop_blamed = hop_text(chk.hop_from, chk.hop_to, checks, framework)
            chk.reason = f"{chk.reason} [error appears at hop {chk.hop_blamed}]"
        native = checks.get(Target(chk.format, chk.runtime).key)
        if chk.platform != NATIVE and chk.status in FAILING_CHECKS and native is not None and \
                native.status == CheckStatus.PASS:  # the x86 cross-check: an emulator bug looks like a model bug
            chk.notes.append(f"the same artifact passes on {chk.runtime} natively: the difference is in the "
                             f"{chk.platform} kernels or in the emulator (QEMU)")
    return checks


def _parent_keys(target: Target, parent: str | None, formats: dict, keys: set[str]) -> list[str]:
    """Where a target's parent outputs come from, in order of preference: the parent on the same
    runtime (and platform), then on its default runtime natively."""
    if parent is None:
        return []
    same = Target(parent, target.runtime, target.platform).key
    default = Target(parent, formats[parent].runtime).key
    return [k for k in dict.fromkeys([same, default]) if k in keys]


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
    """``--accept-uninformative`` (``--accept-constant-output``) names: outputs of the contract, or "*"
    (ValueError otherwise)."""
    accept = [accept] if isinstance(accept, str) else accept
    unknown = [n for n in accept or [] if n != "*" and n not in contract.output_names]
    if unknown:
        raise ValueError(f"--accept-uninformative {', '.join(unknown)}: no such output (the outputs are "
                         f"{', '.join(contract.output_names)}; '*' accepts all)")
    return list(accept or [])


def _accuracy_basis(a: dict) -> str | None:
    """``task accuracy on the labelled set: drop 0.22 pts (max 1)``: what an accuracy gate held the artifact to
    (None when accuracy was measured but gates nothing: no limit, no agreement floor)."""
    gates = []
    if a["max_drop_points"] is not None:
        gates.append(f"drop {a['drop_points']:.2f} pts (max {a['max_drop_points']:g})")
    if a["min_top1_agreement"] is not None:
        gates.append(f"top-1 agreement {a['top1_agreement']:.1%} (min {a['min_top1_agreement']:.0%})")
    return f"task accuracy on the {a['set']} set: {', '.join(gates)}" if gates else None


def _basis(bases: dict[str, list[str]], accuracy: str | None, waived: str | None) -> str:
    """The check's basis, one phrase: what each gating output was judged on (once when all agree), with the
    accuracy gate first where it replaces the tensor metrics of the labelled output (``waived``), after them
    where it is one more gate."""
    per_output = {out: " and ".join(dict.fromkeys(phrases)) for out, phrases in bases.items()}
    distinct = list(dict.fromkeys(per_output.values()))
    if len(distinct) == 1 and not (waived and accuracy):
        tensors = distinct[0]
    else:
        tensors = "; ".join(f"{out}: {phrase}" for out, phrase in per_output.items())
    parts: list[str | None]
    if waived and accuracy:
        parts = [f"{accuracy} ({waived})" if tensors else accuracy, tensors]
    else:
        parts = [tensors, f"and {accuracy}" if accuracy and tensors else accuracy]
    text = "; ".join(p for p in parts if p)
    return f"judged on {text}" if text else ""


def _note(chk: ArtifactCheck, text: str) -> None:
    if text not in chk.notes:
        chk.notes.append(text)


def _step(rec: ArtifactRecord, output: str) -> float | None:
    """The quantization step of an artifact's integer output (its contract's scale), if it has one."""
    spec = next((o for o in rec.contract.outputs if o.name == output), None) if rec.contract else None
    return float(spec.quant[0]) if spec is not None and spec.quant else None


def _tensor_rule(ref: np.ndarray, tier: parity.Tier, classifier: bool, resolution: float | None) -> Callable:
    """The tensor check an artifact's output gets (``parity.check``), as the informativeness rule calls it on a
    decoy: candidate -> (passed, what it measured)."""
    def verdict_of(candidate: np.ndarray) -> tuple[bool, str]:
        v = parity.check(candidate, ref, tier, classifier, resolution)
        m = v.metrics
        measured = f"max abs error {m.max_abs:.3g}"
        if tier.gate == "statistical" and v.basis != "absolute":
            measured += f", cosine {m.cosine:.4f}, SQNR {m.sqnr_db:.1f} dB"
            measured += f", top-1 agreement {m.top1_agreement:.0%}" if m.top1_agreement is not None else ""
        return v.passed, f"{measured} on {v.judged_on}"
    return verdict_of


def _accuracy_rule(s: GoldenSet, ref: np.ndarray, limit: float | None, min_agreement: float | None) -> Callable:
    """The task-accuracy gate of a labelled set (``_accuracy_gate``) as the informativeness rule calls it."""
    labels = _labels(s)

    def verdict_of(candidate: np.ndarray) -> tuple[bool, str]:
        gate = _accuracy_gate(candidate, ref, labels, limit, min_agreement)
        return gate["passed"], (f"accuracy {gate['accuracy']:.1%} vs the source's {gate['source_accuracy']:.1%}, "
                                f"top-1 agreement {gate['top1_agreement']:.0%} on task accuracy on the {s.name} set")
    return verdict_of


def _accuracy_decoys(chk: ArtifactCheck, s: GoldenSet, ref: np.ndarray, limit: float | None,
                     min_agreement: float | None, trivial: dict) -> None:
    """The decoys of an output judged on task accuracy, by that rule (``_accuracy_rule``): kept in
    ``chk.accuracy``, and in ``trivial`` when one passes."""
    tried = informative.trivial_passes(ref, _accuracy_rule(s, ref, limit, min_agreement))
    if chk.accuracy is not None:  # set by ``_accuracy`` on the same set
        chk.accuracy["decoys"] = [d.to_dict() for d in tried]
    if informative.passing(tried):
        trivial.setdefault(s.labelled_output, (s.name, informative.passing(tried)))


def _record_decoys(per_set: dict, output: str, verdict: dict, gating: bool, tried: list[informative.Decoy],
                   variation: parity.Variation, set_name: str, trivial: dict) -> None:
    """One output's verdict as ``chk.sets`` holds it, with the decoys tried against it; its reference counts as
    ``vacuous`` when it does not vary or when a decoy passes the same check, and the first set where a decoy
    passes is kept in ``trivial`` for ``_informativeness``."""
    passed = informative.passing(tried)
    per_set[output] = {**verdict, "gating": gating, "decoys": [d.to_dict() for d in tried],
                       "reference": {**variation.to_dict(), "vacuous": variation.vacuous or bool(passed)}}
    if passed:
        trivial.setdefault(output, (set_name, passed))


TOO_FINE = ("the tolerance cannot tell a wrong artifact from this output: its values are too small, or vary too "
            "little across the golden samples; tighten the tolerance for it (--atol FMT:OUTPUT=VALUE), scale the "
            "output, or widen the golden inputs (--input-range, --data)")


def _uninformative(output: str, set_name: str, passed: list[informative.Decoy], v: parity.Variation,
                   inputs: Callable, sets: list[GoldenSet]) -> tuple[str, str]:
    """(what makes one output's check uninformative, what likely causes it) for a reason line."""
    decoys = "; ".join(d.describe() for d in passed)
    if not v.vacuous:
        return f"output {output!r} on the {set_name} set: {decoys}", TOO_FINE
    text = v.describe(output, set_name)
    given = next((s for s in sets if s.name == set_name), None)
    got = inputs(given) if given is not None else None
    if got is not None and not parity.inputs_vary(got):
        text += " (the golden inputs themselves are identical across samples)"
    elif got:  # the range the inputs covered: is it the one the model expects?
        text += f" (golden inputs: {parity.input_ranges(got)})"
    return f"{text}: {decoys}", LIKELY_CAUSES


def _informativeness(chk: ArtifactCheck, trivial: dict[str, tuple[str, list[informative.Decoy]]], refcheck: dict,
                     accept: list[str], inputs: Callable, sets: list[GoldenSet]) -> None:
    """A check that passed is not a pass when a trivial artifact (``informative.DECOYS``) would pass it too:
    VACUOUS (or CONSTANT_ACCEPTED for outputs the user accepted). A failure stays a failure."""
    for set_name in chk.sets:
        for output in chk.sets[set_name]:
            v = refcheck[set_name][output]
            if v.status == "one_sample" and all(refcheck[s][output].status == "one_sample" for s in chk.sets):
                _note(chk, f"{v.describe(output, set_name)}; only an artifact returning all zeros could be tried "
                           "against it (the mean and a shuffle of one sample are that sample)")
    if chk.status != CheckStatus.PASS or not trivial:
        return
    vacuous: list[str] = []
    causes: list[str] = []
    accepted: list[str] = []
    for output, (set_name, passed) in trivial.items():
        text, cause = _uninformative(output, set_name, passed, refcheck[set_name][output], inputs, sets)
        if "*" in accept or output in accept:
            accepted.append(text)
        else:
            vacuous.append(text)
            causes.append(cause)
    names = [o for o in trivial if not ("*" in accept or o in accept)]
    which = " or ".join(dict.fromkeys(informative.DECOYS[d.name] for _, passed in trivial.values() for d in passed))
    if vacuous:
        chk.status = CheckStatus.VACUOUS
        chk.basis = f"{chk.basis}, which an artifact returning {which} would pass too: proves nothing"
        chk.reason = (f"vacuous check: {'; '.join(vacuous)}; {'; '.join(dict.fromkeys(causes))}; "
                      f"{' '.join(f'--accept-uninformative {n}' for n in names)} accepts it")
    else:
        chk.status = CheckStatus.CONSTANT_ACCEPTED
        chk.basis = f"{chk.basis}, which an artifact returning {which} would pass too (accepted)"
        chk.reason = f"not a full pass: {'; '.join(accepted)} (accepted with --accept-uninformative)"


def _labels(s: GoldenSet) -> np.ndarray:
    return npz.load(s.labels)["labels"] if s.labels else np.zeros(0, np.int64)


def _accuracy_gate(got: np.ndarray, ref: np.ndarray, labels: np.ndarray, limit: float | None,
                   min_agreement: float | None) -> dict:
    """The task-accuracy rule on one labelled output: the artifact's top-1 accuracy against the labels, its drop
    in points from the source's (at most ``limit``), and its top-1 agreement with the source's (at least
    ``min_agreement``)."""
    acc, src = parity.accuracy(got, labels), parity.accuracy(ref, labels)
    drop = (src - acc) * 100
    agreement = parity.top1_agreement(got, ref)
    dropped = limit is not None and drop > limit + 1e-9
    disagrees = min_agreement is not None and agreement < min_agreement
    return {"accuracy": acc, "source_accuracy": src, "drop_points": drop, "top1_agreement": agreement,
            "max_drop_points": limit, "min_top1_agreement": min_agreement, "dropped": dropped,
            "disagrees": disagrees, "passed": not (dropped or disagrees)}


def _accuracy(chk: ArtifactCheck, s: GoldenSet, got: dict, ref: dict, limit: float | None,
              min_agreement: float | None) -> str | None:
    """Task accuracy of the artifact and of the source on a labelled set (``_accuracy_gate``); the failure line
    when the drop exceeds ``limit`` points. ``min_agreement``: when accuracy stands in for the closeness checks
    (int8), the artifact's top-1 must also agree with the source's on that many samples: a source near chance
    level would otherwise let any garbage of the same accuracy pass."""
    out = s.labelled_output or ""
    labels = _labels(s)
    gate = _accuracy_gate(got[out], ref[out], labels, limit, min_agreement)
    dropped, disagrees = gate.pop("dropped"), gate.pop("disagrees")
    chk.accuracy = {"set": s.name, "output": out, "samples": int(len(labels)), **gate}
    acc, src, drop, agreement = gate["accuracy"], gate["source_accuracy"], gate["drop_points"], gate["top1_agreement"]
    problems = []
    if dropped:
        problems.append(f"accuracy {acc:.2%} on the {s.name} set is {drop:.2f} points below the source's {src:.2%} "
                        f"(max drop {limit:g} points)")
    if disagrees:
        problems.append(f"top-1 agrees with the source's on only {agreement:.1%} of the {s.name} set "
                        f"(< {min_agreement:g})")
    return "; ".join(problems) or None


def blame_targets(target: Target, checks: dict[str, ArtifactCheck],
                  framework: str = DEFAULT_FRAMEWORK) -> tuple[str, str]:
    """The hop into the first target of the lineage that fails against the reference, as
    (parent target key or "source", child target key).

    Each ancestor format is taken on the same runtime as ``target`` where it was checked there, else
    on whichever runtime it was checked on (its default first). An ancestor not checked in this run
    cannot be cleared; then the hop into ``target`` is named. When the parent passes against the
    reference but this target does not, the error appeared at this hop.
    """
    chain = lineage(target.format, framework)
    formats = plan(framework)

    def checked(fmt: str) -> ArtifactCheck | None:
        same = checks.get(Target(fmt, target.runtime, target.platform).key)
        if same is not None:
            return same
        mine = [c for c in checks.values() if c.format == fmt]
        return next((c for c in mine if c.runtime == formats[fmt].runtime and c.platform == NATIVE),
                    mine[0] if mine else None)

    # a target whose own tensors diverge is blamed on the first ancestor whose tensors diverge too (one that failed only
    # a further gate, the multi-step check or a decision, matches the source on every golden sample)
    own = next((c for c in checks.values() if c.target == target), None)
    tensors_only = own is not None and not tensors_passed(own)
    prev = "source"
    for fmt in chain[:-1]:
        c = checked(fmt)
        if c is not None and c.status == CheckStatus.FAIL and not deployed_preprocessing_only(c) and \
                not (tensors_only and tensors_passed(c)):
            return prev, c.key
        prev = c.key if c is not None else Target(fmt, formats[fmt].runtime).key
    return prev, target.key


def hop_text(parent: str, child: str, checks: dict[str, ArtifactCheck], framework: str = DEFAULT_FRAMEWORK) -> str:
    """``onnx -> savedmodel``; a target off its format's default runtime is named with it
    (``source -> onnx@openvino``; ``results.target_label``). Ancestors not checked in this run are named
    after it."""
    formats = plan(framework)

    def label(key: str) -> str:
        if key == "source":
            return "source"
        t = Target.parse(key)
        return t.label(formats[t.format].runtime if t.format in formats else None)

    text = f"{label(parent)} -> {label(child)}"
    cleared = (CheckStatus.PASS, CheckStatus.VACUOUS, CheckStatus.CONSTANT_ACCEPTED, CheckStatus.FAIL)
    chain = lineage(Target.parse(child).format, framework)
    stop = chain.index(Target.parse(parent).format) + 1 if parent != "source" else 0
    unchecked = [f for f in chain[:stop] if not any(c.format == f and c.status in cleared for c in checks.values())]
    return f"{text} (not checked in this run: {', '.join(unchecked)})" if unchecked else text


def blame(name: str, checks: dict[str, ArtifactCheck], framework: str = DEFAULT_FRAMEWORK) -> str:
    """The blamed hop of the check keyed ``name`` (a target key, or a format on its default runtime), as text."""
    chk = checks.get(name) or next((c for c in checks.values() if c.format == name), None)
    target = chk.target if chk is not None else Target.parse(name, plan(framework)[name].runtime)
    parent, child = blame_targets(target, checks, framework)
    return hop_text(parent, child, checks, framework)


EXIT_CODE_OF = {CheckStatus.FAIL: errors.PARITY, CheckStatus.VACUOUS: errors.PARITY, CheckStatus.ERROR: errors.RUNTIME,
                CheckStatus.CORRUPT: errors.BUNDLE,
                CheckStatus.NOT_EXPORTED: errors.EXPORT}


def exit_code(checks: dict[str, ArtifactCheck], strict: bool, runtimes: list[str] | None = None) -> int:
    """The worst exit code of the checks. ``strict``: a target skipped for a missing runtime fails (exit 7)
    when that runtime is its artifact's default one or was asked for (``runtimes``); a further runtime
    that is merely not installed here (OpenVINO for an ``onnx`` artifact) stays a skip; and a PASS on golden
    inputs that covered an integer input weakly (``ArtifactCheck.coverage``) fails too (exit 7)."""
    formats = plan()

    def code(c: ArtifactCheck) -> int:
        if c.status == CheckStatus.SKIPPED:
            required = c.runtime in (runtimes or []) or (c.format in formats and c.runtime == formats[c.format].runtime)
            return errors.SKIPPED if strict and required else errors.OK
        if c.status == CheckStatus.PASS and c.coverage:
            return errors.SKIPPED if strict else errors.OK
        return EXIT_CODE_OF.get(c.status, errors.OK)

    return errors.worst(code(c) for c in checks.values())
