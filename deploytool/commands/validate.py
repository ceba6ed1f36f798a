"""``deploytool validate``: re-check a bundle's artifacts on their runtimes, fail closed.

Needs only the bundle and the runtime of each artifact checked: references come from the
golden outputs stored in the bundle, and the per-hop comparison falls back to the parent's outputs
stored at export time. The source model is run only for ``--data`` (its reference outputs) and to
localise a failing ``source -> FORMAT`` hop; where it is Python the bundle names, only when the
user's ``--source`` names it too (``sources.source_consent``). Every artifact's files are checked
against their sha256 before anything loads them.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploytool import platforms
from deploytool.checking import families, golden, judge, steps
from deploytool.checking import oracle as oracle_rule
from deploytool.checking.golden import DATA, MAIN, GoldenSet, read_user_data
from deploytool.checking.parity import Tolerances
from deploytool.commands import check_run_options, pipeline, stepping, tolerances_of
from deploytool.commands.localising import localise_failures
from deploytool.core import errors, npz
from deploytool.core.contract import Contract, describe_sample, dims_of, nonfinite_sample
from deploytool.core.errors import BundleError, DeployToolError, UsageError
from deploytool.core.target import Target
from deploytool.formats import FORMATS
from deploytool.progress import Progress, as_progress
from deploytool.report.validation import write_reports
from deploytool.results import ArtifactCheck
from deploytool.running.jobs import CHECK_TIMEOUT_S, ArtifactStatus, RunStatus
from deploytool.running.pool import RunPool
from deploytool.sources import check_source_option, source_artifact, source_consent
from deploytool.store import bundle
from deploytool.store.manifest import Manifest
from deploytool.store.reader import OpenedBundle, open_bundle
from deploytool.targets import check_runtimes, format_names, runtimes_of, targets_of


@dataclass
class ValidateOutcome:
    bundle: Path
    manifest: Manifest
    checks: dict[str, ArtifactCheck]
    sets: list[GoldenSet]
    reports: dict[str, Path]
    exit_code: int
    seconds: float


def select_formats(manifest: Manifest, requested: list[str] | None) -> list[str]:
    """The bundle's artifacts that ``--format`` names (``targets.format_names``: one grammar in every command);
    all of them when it names none."""
    present = [n for n in FORMATS if n in manifest.artifacts] + [n for n in manifest.artifacts if n not in FORMATS]
    return format_names(requested, present, "the bundle has no such artifact") or present


def select_targets(manifest: Manifest, names: list[str], runtimes: list[str] | None,
                   emulated: list[str] | None = None) -> list[Target]:
    """The targets of the chosen artifacts: every runtime that runs each, or those of ``runtimes``, and on each
    emulated platform of ``emulated`` whose architecture has a build of one of them (``platforms.targets``).
    A ``--runtime`` that runs none of them is a usage error naming what does."""
    chosen = []
    for n in names:
        rec = manifest.artifacts.get(n)
        if rec is not None and rec.status != ArtifactStatus.OK:  # not made: one verdict, on its default runtime
            # ...kept whenever a runtime asked for runs it, so a failed export is never dropped from view
            chosen += [t for t in targets_of(n)[:1] if runtimes is None or set(runtimes_of(n)) & set(runtimes)]
        else:
            chosen += targets_of(n, runtimes)
            chosen += platforms.targets(n, [t.runtime for t in targets_of(n, runtimes)], emulated or [])
    emulable = {r for rs in platforms.ARCHES.values() for r in rs}
    if emulated and not any(set(runtimes_of(n)) & emulable for n in names):
        raise UsageError(f"--emulate: no artifact chosen ({', '.join(names)}) runs on a runtime with an emulated "
                         f"build (emulated: {', '.join(r for rs in platforms.ARCHES.values() for r in rs)})")
    if runtimes and not chosen:
        runs = sorted({r for n in names for r in runtimes_of(n)})
        raise UsageError(f"--runtime {', '.join(runtimes)}: runs none of the artifacts chosen "
                         f"({', '.join(names)}); their runtimes are {', '.join(runs)}")
    return chosen


@dataclass
class ValidateOptions:
    """Everything ``validate`` takes besides the bundle and where progress goes: built once (by the CLI, or
    from ``run``'s keyword arguments) and passed down. Paths and tables are normalised on construction (a
    plain ``tolerances`` table becomes a checked ``parity.Tolerances``); ``check`` refuses what cannot run.

    ``formats``: the artifacts to check (exact names or prefixes; None: all). ``data``: the user's own inputs
    (references from the source model). ``source``: the bundle's source model as ``export --model`` names it,
    allowing it to run (for ``data`` and for localising a hop from the source) where it is Python the bundle
    names (a model file, a factory); it must name the manifest's source (else exit 2). ``samples``: the first N
    golden samples only.
    ``tolerances``: this run's overrides, on top of those stored in the bundle (``tier_defaults``: ignore the
    stored ones). ``verify_key``: refuse the bundle unless it is signed with its private key.
    ``timeout``: the limit for each artifact's run. ``accept_constant``: outputs ("*": all) whose reference may
    be constant across the golden samples (else such a check is VACUOUS, exit 5). ``runtimes``: check only the
    targets on these runtimes (default: every runtime that runs each artifact; those not installed here are
    SKIPPED, naming the extra that adds them). ``emulate``: emulated CPUs to check on too (``aarch64``,
    ``aarch64:cortex-a72,neoverse-v1``: ``deploytool.platforms``). ``reports_dir``, ``json_path``,
    ``junit_path``: where the reports go (default: the bundle's reports/); ``machine_name``: this machine's label
    in them."""

    formats: list[str] | None = None
    data: Path | None = None
    samples: int | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    strict: bool = False
    reports_dir: Path | None = None
    json_path: Path | None = None
    junit_path: Path | None = None
    verify_key: Path | None = None
    tier_defaults: bool = False
    timeout: float = CHECK_TIMEOUT_S
    max_accuracy_drop: dict[str, float] = field(default_factory=dict)
    machine_name: str | None = None
    accept_constant: list[str] = field(default_factory=list)
    runtimes: list[str] | None = None
    source: str | None = None
    emulate: list[str] | None = None
    # the multi-step check's gates (checking/steps.py; None: the tier's default); the loop is the bundle's
    min_agree_steps: int | None = None
    max_step_error: float | None = None
    # --pipeline FILE.py, --raw-data RAW.npz, --operating-point, --max-decision-flips: commands/pipeline.py
    pipeline: Path | None = None
    raw_data: Path | None = None
    operating_point: str | None = None
    max_decision_flips: str | None = None
    gate_families: list[str] = field(default_factory=list)  # families that gate where a tier only reports them
    # "float64": judge the fp32 tier against the float64 oracle the bundle holds (export --oracle float64; exit 2
    # when it holds none); "none": the fixed fp32 tier; None: as the bundle was exported (checking/oracle.py)
    oracle: str | None = None

    def __post_init__(self) -> None:
        # the API takes strings and plain tables too; from here on each field has its one type
        if isinstance(self.formats, str):
            self.formats = [self.formats]
        self.formats = list(self.formats) or None if self.formats is not None else None
        if isinstance(self.runtimes, str):
            self.runtimes = [self.runtimes]
        self.runtimes = list(self.runtimes) or None if self.runtimes is not None else None
        if isinstance(self.emulate, str):
            self.emulate = [self.emulate]
        self.emulate = list(self.emulate) or None if self.emulate is not None else None
        self.data = Path(self.data) if self.data is not None else None
        self.source = str(self.source) if self.source is not None else None
        self.reports_dir = Path(self.reports_dir) if self.reports_dir else None
        self.json_path = Path(self.json_path) if self.json_path else None
        self.junit_path = Path(self.junit_path) if self.junit_path else None
        self.verify_key = Path(self.verify_key) if self.verify_key is not None else None
        self.tolerances = tolerances_of(self.tolerances)
        self.max_accuracy_drop = dict(self.max_accuracy_drop or {})
        self.pipeline = Path(self.pipeline) if self.pipeline is not None else None
        self.raw_data = Path(self.raw_data) if self.raw_data is not None else None
        accept = self.accept_constant
        self.accept_constant = [accept] if isinstance(accept, str) else list(accept or [])

    def check(self) -> list[str] | None:
        """Refuse, with one line (exit 2), options that cannot run; returns the runtimes asked for (known
        names, once each; None: every runtime)."""
        check_run_options(self.timeout, self.tolerances, self.max_accuracy_drop)
        try:
            steps.Gates(self.min_agree_steps, self.max_step_error).check()
            self.gate_families = families.parse(self.gate_families, "--gate-families")
            oracle_rule.check_option(self.oracle)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return check_runtimes(self.runtimes)


def run(bundle_dir: Path | str, options: ValidateOptions | Sequence[str] | None = None,
        progress: Progress | Callable[[str], None] | None = None, **fields: Any) -> ValidateOutcome:
    """Validate the bundle as ``options`` say (a ``ValidateOptions``; without one, ``fields`` are its fields:
    ``run(bundle, formats=["onnx"], tolerances={"onnx:*": {"atol": 1e-3}})``). A list in place of the options
    is the formats (``run(bundle, ["tflite"])``); fields given with a ``ValidateOptions`` replace its own.
    ``progress``: where the stages are reported (``progress.py``; a callable receives each message)."""
    t0 = time.perf_counter()
    progress = as_progress(progress)
    opts = _options(options, fields)
    wanted = opts.check()
    opened = open_bundle(bundle_dir, opts.verify_key)
    bundle_dir, manifest = opened.root, opened.manifest
    unknown = [n for n in manifest.artifacts if n not in FORMATS]
    if unknown:
        raise BundleError(f"bundle {bundle_dir}: artifacts of formats this deploytool does not know: {unknown}")
    names = select_formats(manifest, opts.formats)
    chosen = select_targets(manifest, names, wanted, platforms.parse(opts.emulate))
    check_source_option(manifest.model.source, opts.source)  # one naming another model: exit 2, before any run
    # the multi-step gates stored at export, each unless given here (or --tier-defaults); given without a loop: exit 2
    given_gates = steps.Gates(opts.min_agree_steps, opts.max_step_error)
    step_gates = stepping.gates_for(manifest.steps, given_gates, opts.tier_defaults, bundle_dir)
    pipe_opts = pipeline.options_of(opts.pipeline, opts.raw_data, opts.operating_point, opts.max_decision_flips,
                                    opts.source)
    # The overrides the bundle was exported with (unless --tier-defaults), then this run's (a more
    # specific key still wins). The checks report each override they applied.
    kept = Tolerances() if opts.tier_defaults else Tolerances.from_dict(manifest.tolerances, "manifest.tolerances")
    tolerances = kept.merged(opts.tolerances)
    try:  # the families export gated on (--gate-families; unless --tier-defaults), and this run's
        gate_families = families.parse([*([] if opts.tier_defaults else manifest.gate_families), *opts.gate_families],
                                       "--gate-families")
    except ValueError as e:
        raise BundleError(f"bundle {bundle_dir}: manifest.gate_families: {e}") from None
    contract = manifest.contract
    try:  # the outputs export accepted as constant (stored in the bundle), and this run's
        accept_constant = [*manifest.accepted_constant, *judge.check_accepted(contract, opts.accept_constant)]
    except ValueError as e:
        raise UsageError(str(e)) from None
    timeout, data = opts.timeout, opts.data
    work = Path(tempfile.mkdtemp(prefix="deploytool-validate-"))
    try:
        sets, references = _sets(opened, opts.samples, work)
        oracle_info, oracles = oracle_rule.for_validate(opened, opts.oracle, opts.samples)
        if data is not None:
            progress.stage(f"computing references for {data} on the source model")
            s, ref = _data_set(bundle_dir, manifest, contract, data, work, timeout, opts.source)
            sets.append(s)
            references[s.name] = ref
        prepared = None
        if pipe_opts is not None:
            progress.stage(f"running the pipeline {pipe_opts.file} on {pipe_opts.raw}")
            prepared = pipeline.prepare(pipe_opts, bundle_dir, manifest.model.source, contract, work,
                                        _logs(bundle_dir, work), timeout, opts.source)
            sets += prepared.sets
            references.update(prepared.references)
        records = {n: manifest.artifacts[n] for n in dict.fromkeys(t.format for t in chosen)}
        runs = RunPool(_logs(bundle_dir, work), work, timeout=timeout)
        refused: dict[str, str] = {}
        for name, rec in records.items():
            if rec.status != ArtifactStatus.OK or rec.path is None or rec.contract is None:
                continue
            try:
                bundle.verify_files(bundle_dir, rec.files, name)
            except BundleError as e:
                refused[name] = f"refused before loading: {e}"
        for target in chosen:
            rec = records[target.format]
            if target.format in refused or rec.status != ArtifactStatus.OK or rec.path is None or rec.contract is None:
                continue
            runs.submit(target.key, target.runtime, bundle_dir / rec.path, rec.contract, sets, rec.load_settings(),
                        target.platform, steps=stepping.plan(bundle_dir, manifest.steps) if manifest.steps else None)
        if runs.futures:
            progress.stage(f"checking {len(runs.futures)} target(s): {len(records)} artifact(s) on their runtimes")
        replies = runs.results(lambda key, reply: progress.step(key, f"ran on {reply.runtime} ({reply.status})"))

        def stored(fmt: str, set_name: str):
            rel = manifest.artifacts[fmt].golden_outputs.get(set_name) if fmt in manifest.artifacts else None
            return npz.load(bundle_dir / rel) if rel and (bundle_dir / rel).is_file() else None

        evidence = judge.Evidence(replies, sets, references, stored, lambda s: npz.load(s.inputs), refused,
                                  runs.skipped_sets, oracles)
        rules = judge.Rules(tolerances, opts.max_accuracy_drop, accept_constant, gate_families=gate_families,
                            oracle=oracle_info)
        checks = judge.judge(contract, records, evidence, rules, manifest.model.framework, chosen, final=False)
        if manifest.steps is not None:
            stepping.apply(checks, replies, bundle_dir / manifest.steps.path, manifest.steps,
                           {n: r.tier for n, r in manifest.artifacts.items()}, step_gates,
                           stepping.stored_note(manifest.steps, given_gates, opts.tier_defaults))
        if prepared is not None:
            progress.stage("comparing the pipeline's decisions with the source's")
            pipeline.judge_decisions(prepared, checks, contract, work, _logs(bundle_dir, work), timeout)
        judge.finish(checks, manifest.model.framework)  # every gate applied: the failures' hops blamed
        golden.annotate(checks, contract, {name: rec.coverage for name, rec in manifest.golden.sets.items()})
        extras = localise_failures(checks, manifest.artifacts, bundle_dir, sets, tolerances, work,
                                   _logs(bundle_dir, work), timeout, progress=progress,
                                   source=manifest.model.source, contract=contract, consent=opts.source)
        try:
            # The bundle's own reports/ only through real directories inside it; --reports is the user's.
            reports_dir = opts.reports_dir or bundle.real_dir(bundle_dir, bundle.REPORTS)
            reports = write_reports(bundle_dir, reports_dir, manifest, checks, sets, tolerances, references,
                                    opts.json_path, opts.junit_path, opts.machine_name, extras)
        except OSError as e:
            raise UsageError(f"cannot write reports to {reports_dir}: {e.strerror or e} (use --reports DIR)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    code = errors.worst([judge.exit_code(checks, opts.strict, wanted), stepping.strict_code(checks, opts.strict)])
    return ValidateOutcome(bundle_dir, manifest, checks, sets, reports, code, time.perf_counter() - t0)


def _options(options: ValidateOptions | Sequence[str] | None, fields: dict[str, Any]) -> ValidateOptions:
    """``run``'s arguments as one ``ValidateOptions`` (TypeError for a field that is no option, or one
    given twice)."""
    if isinstance(options, ValidateOptions):
        return replace(options, **fields) if fields else options
    if options is not None:
        if "formats" in fields:
            raise TypeError("validate: formats given twice (positionally and as formats=)")
        fields["formats"] = options
    return ValidateOptions(**fields)


def _logs(bundle_dir: Path, work: Path) -> Path:
    """Run workers log into the bundle's logs/ (a real directory inside it) when it is writable, else
    into scratch space."""
    try:
        return bundle.real_dir(bundle_dir, bundle.LOGS)
    except OSError:
        return work


def _sets(opened: OpenedBundle, samples: int | None, work: Path) -> tuple[list[GoldenSet], dict]:
    """The golden sets as checked when the bundle was opened, copied to scratch space: workers read
    what was checked, not the bundle's files again."""
    sets, references = [], {}
    for name, info in opened.manifest.golden.sets.items():
        inputs, ref = opened.inputs[name], opened.references[name]
        if name == MAIN and samples is not None:
            if not 1 <= samples <= info.samples:
                raise UsageError(f"--samples {samples}: the bundle holds {info.samples} golden samples")
            inputs = {k: v[:samples] for k, v in inputs.items()}
            ref = {k: v[:samples] for k, v in ref.items()}
        npz.save(work / f"{name}.inputs.npz", inputs)
        npz.save(work / f"{name}.reference.npz", ref)
        labels = None
        if name in opened.labels:
            labels = work / f"{name}.labels.npz"
            npz.save(labels, {"labels": opened.labels[name]})
        sets.append(GoldenSet(name, work / f"{name}.inputs.npz", work / f"{name}.reference.npz", info.dims,
                              len(next(iter(inputs.values()))), labels, info.labelled_output if labels else None,
                              info.family))
        references[name] = ref
    return sets, references


def _data_set(bundle_dir: Path, manifest: Manifest, contract: Contract, path: Path, work: Path, timeout: float,
              consent: str | None):
    """The user's own inputs: names as in the contract, each array [samples, *shape] or, where the
    first dim is dynamic, [N, ...] rows taken as N samples of batch 1. The source model, on
    its own runtime (torch eager, onnxruntime, Keras, TensorFlow), computes their reference outputs
    in its own worker: where it is Python the bundle names, only when ``consent`` (``--source``) names it too."""
    why = source_consent(manifest.model.source, consent)
    if why:
        raise UsageError(f"--data needs the source model's reference outputs: {why}")
    try:
        shaped, labels, labelled_output = read_user_data(contract, path, "--data")
    except ValueError as e:
        raise UsageError(str(e)) from None
    n = len(next(iter(shaped.values())))
    dims = dims_of(contract, shaped)
    inputs = work / "data.inputs.npz"
    npz.save(inputs, shaped)
    runtime, source_file, ref_contract = source_artifact(manifest.model.source, contract, work)
    pool = RunPool(_logs(bundle_dir, work), work, timeout=timeout)
    labels_path = None
    if labels is not None:
        labels_path = work / "data.labels.npz"
        npz.save(labels_path, {"labels": labels})
    s = GoldenSet(DATA, inputs, work / "data.reference.npz", dims, n, labels_path, labelled_output)
    pool.submit("reference", runtime, source_file, ref_contract, [s])
    reply = pool.results()["reference"]
    if reply.status != RunStatus.OK:
        code = errors.SKIPPED if reply.status == RunStatus.SKIPPED else errors.MODEL
        raise DeployToolError(f"--data needs the source model to compute reference outputs, and it is not "
                              f"available: {reply.error}", code)
    shutil.copyfile(reply.outputs[DATA], s.reference)
    refs = npz.load(s.reference)
    bad = nonfinite_sample(refs)
    if bad is not None:
        raise UsageError(f"--data {path}: the source model's output {bad[0]!r} is NaN/Inf on sample {bad[1]} "
                         f"({describe_sample(shaped, bad[1])}); nothing can be checked against it")
    return s, refs


__all__ = ["run", "ValidateOptions", "ValidateOutcome", "select_formats", "select_targets"]
