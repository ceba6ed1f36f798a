"""``deploytool export``: source -> artifacts -> check -> published bundle (the coordinator).

Formats are exported stage by stage (one worker process per framework: the source's, then
TensorFlow), in the registry's dependency order. Every decision is made here: which formats
are not applicable or skipped because a parent failed, which golden sets exist
(``golden.plan_sets``), which parent each format is converted from. Workers get one typed job
at a time (``jobs.py``). Stage workers start one stage ahead so the next framework's imports
overlap the current stage, and each artifact is checked on its own runtime as soon as it is
made, in parallel with the next stage. The bundle is assembled in a staging directory and
published by rename when complete.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any

from deploytool import envs, install
from deploytool.checking import families, golden, judge, steps
from deploytool.checking import oracle as oracle_rule
from deploytool.checking.golden import GoldenSet
from deploytool.checking.parity import Tolerances
from deploytool.commands import check_run_options, stepping, tolerances_of
from deploytool.commands.localising import localise_failures
from deploytool.core import errors, npz
from deploytool.core.contract import Contract, dims_of, parse_input_spec, parse_range
from deploytool.core.errors import ModelError, UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.formats import FORMATS, Format, lineage, plan, resolve, stage_order
from deploytool.progress import Progress, as_progress
from deploytool.report.validation import write_reports
from deploytool.results import ArtifactCheck
from deploytool.running.jobs import (
    EXPORT_TIMEOUT_S,
    ArtifactStatus,
    ExportFormat,
    FormatExported,
    LoadSource,
    WriteGolden,
    WriteSteps,
)
from deploytool.running.pool import RunPool
from deploytool.running.spawn import Worker
from deploytool.sources import FRAMEWORKS, SourceRef, reference_runtime
from deploytool.sources import resolve as resolve_source
from deploytool.store import bundle, signing
from deploytool.store.manifest import FILENAME as MANIFEST
from deploytool.store.manifest import (
    SCHEMA_VERSION,
    ArtifactRecord,
    CalibrationRecord,
    CheckSummary,
    ExporterInfo,
    FlopsRecord,
    GoldenData,
    GoldenSetRecord,
    Manifest,
    ModelInfo,
)
from deploytool.targets import check_runtimes, format_names, targets_of

CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_IO = ("float32", "int8", "uint8")


@dataclass
class ExportOutcome:
    bundle: Path
    manifest: Manifest
    checks: dict[str, ArtifactCheck]
    exit_code: int
    seconds: float
    messages: list[str] = field(default_factory=list)


@dataclass
class ExportOptions:
    """Everything ``export`` takes besides the model and where progress goes: built once (by the CLI, or
    from ``run``'s keyword arguments) and passed down. Paths and tables are normalised on construction (a
    plain ``tolerances`` table becomes a checked ``parity.Tolerances``); ``check`` refuses what cannot run.

    ``formats``: the formats to export (parents they need are added; None: all).
    ``tolerances``: overrides of the parity tiers ({"FMT:OUTPUT": {"atol": x}} or a ``Tolerances``); they
    are stored in the manifest, and later validate runs of the bundle start from them (shown as overrides).
    ``sign``: an EC private key (PEM); the bundle is signed before it is published (``signing.py``).
    ``timeout``: the limit for each worker step (source, golden data, one format, one check).
    ``calib_data``: calibration inputs for the int8 formats (else the source's own, else needs_data);
    ``calib_method``: onnx_int8's calibration (minmax, entropy, percentile); ``int8_io``: tflite_int8's
    input/output type (float32, int8, uint8). ``data``: labelled data (a ``labels`` array) for task
    accuracy; ``max_accuracy_drop``: {format or "*": points} gates (int8 tier default: parity.TIERS).
    ``accept_constant``: outputs ("*": all) whose reference may be constant across the golden samples
    (else such a check is VACUOUS, exit 5; ``judge.reference_check``).
    ``freeze``: save TorchScript frozen (torch.jit.freeze); ``optimize``: load it with
    torch.jit.optimize_for_inference (each falls back, with a note, where it fails or changes outputs)."""

    formats: list[str] | None = None
    out: Path = Path("bundles")
    samples: int = golden.DEFAULT_SAMPLES
    seed: int = golden.DEFAULT_SEED
    keep_layout: bool = False
    strict: bool = False
    inputs: list[str] = field(default_factory=list)
    input_ranges: list[str] = field(default_factory=list)
    weights: str | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    sign: Path | None = None
    timeout: float = EXPORT_TIMEOUT_S
    calib_data: Path | None = None
    data: Path | None = None
    calib_method: str = "minmax"
    int8_io: str = "float32"
    max_accuracy_drop: dict[str, float] = field(default_factory=dict)
    accept_constant: list[str] = field(default_factory=list)
    freeze: bool = True
    optimize: bool = True
    # further runtimes to check each artifact on besides its own (None: every one that runs it; those not
    # installed here are SKIPPED); an artifact is always checked on its format's default runtime
    runtimes: list[str] | None = None
    # the multi-step check (checking/steps.py): feedback pairs "OUT->IN" / "OUT->IN:argmax" (else the model file's
    # FEEDBACK), the steps to run (else its STEPS, else steps.DEFAULT_STEPS), and the gates (None: the tier's)
    feedback: list[str] = field(default_factory=list)
    steps: int | None = None
    min_agree_steps: int | None = None
    max_step_error: float | None = None
    # input families to add to the golden data (checking/families.py: perturbed, edge; "all"), and the families
    # that gate where a tier would only report them (--gate-families edge: int8 too)
    families: list[str] = field(default_factory=list)
    gate_families: list[str] = field(default_factory=list)
    # "float64": also run the source in float64 on every golden set (golden/oracle*.npz) and judge the fp32 tier
    # against it (checking/oracle.py); None / "none": the fixed fp32 tier only
    oracle: str | None = None

    def __post_init__(self) -> None:
        # the API takes strings and plain tables too; from here on each field has its one type
        if isinstance(self.formats, str):
            self.formats = [self.formats]
        self.formats = list(self.formats) if self.formats is not None else None
        self.out = Path(self.out)
        self.inputs, self.input_ranges = list(self.inputs or []), list(self.input_ranges or [])
        self.weights = str(self.weights) if self.weights is not None else None
        self.tolerances = tolerances_of(self.tolerances)
        self.sign = Path(self.sign) if self.sign is not None else None
        self.calib_data = Path(self.calib_data) if self.calib_data else None
        self.data = Path(self.data) if self.data else None
        self.max_accuracy_drop = dict(self.max_accuracy_drop or {})
        accept = self.accept_constant
        self.accept_constant = [accept] if isinstance(accept, str) else list(accept or [])
        self.runtimes = [self.runtimes] if isinstance(self.runtimes, str) else \
            (list(self.runtimes) if self.runtimes else None)
        self.feedback = [self.feedback] if isinstance(self.feedback, str) else list(self.feedback or [])
        self.families = [self.families] if isinstance(self.families, str) else list(self.families or [])
        self.gate_families = [self.gate_families] if isinstance(self.gate_families, str) else \
            list(self.gate_families or [])

    def check(self) -> None:
        """Refuse, with one line (exit 2), options that cannot run: before any worker starts."""
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        self.formats = format_names(self.formats)
        self.runtimes = check_runtimes(self.runtimes)
        check_run_options(self.timeout, self.tolerances, self.max_accuracy_drop)
        try:
            oracle_rule.check_option(self.oracle)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.sign is not None and not self.sign.is_file():
            raise UsageError(f"--sign {self.sign}: no such key file")
        self.source_inputs()
        try:
            self.families = families.parse(self.families)
            self.gate_families = families.parse(self.gate_families, "--gate-families")
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.calib_method not in CALIB_METHODS or self.int8_io not in INT8_IO:
            raise UsageError(f"--calib-method must be one of {', '.join(CALIB_METHODS)} and --int8-io one of "
                             f"{', '.join(INT8_IO)}")
        for option, path in (("--calib-data", self.calib_data), ("--data", self.data)):
            if path is not None and not path.is_file():
                raise UsageError(f"{option} {path}: no such file")
        try:
            steps.parse(self.feedback)
            steps.Gates(self.min_agree_steps, self.max_step_error).check()
        except ValueError as e:
            raise UsageError(str(e)) from None

    def source_inputs(self) -> tuple[list[dict], dict]:
        """``--input`` and ``--input-range`` parsed: (input specs, {input: [low, high)})."""
        try:
            return [parse_input_spec(s) for s in self.inputs], dict(parse_range(r) for r in self.input_ranges)
        except ValueError as e:
            raise UsageError(str(e)) from None

    def converter_options(self) -> dict:
        """What each format's exporter is told (``ExportFormat.options``)."""
        return {"keep_layout": self.keep_layout, "calib_method": self.calib_method, "int8_io": self.int8_io,
                "freeze": self.freeze, "optimize": self.optimize}


def run(model: str, options: ExportOptions | Sequence[str] | None = None, out: Path | str | None = None,
        progress: Progress | Callable[[str], None] | None = None, **fields: Any) -> ExportOutcome:
    """Export ``model`` as ``options`` say (an ``ExportOptions``; without one, ``fields`` are its fields:
    ``run("digits_cnn", formats=["onnx"], out="bundles")``). A list in place of the options is the formats,
    and ``out`` the bundles' directory, as ``run("digits_cnn", ["onnx"], "bundles")``; fields given with an
    ``ExportOptions`` replace its own. ``progress``: where the stages are reported (``progress.py``; a
    callable receives each message)."""
    t_start = time.perf_counter()
    opts = _options(options, out, fields)
    opts.check()
    specs, ranges = opts.source_inputs()
    source = resolve_source(model, specs, ranges, opts.weights)
    loop = stepping.declared(source.to_dict(), opts.feedback, opts.steps,  # a bad declaration: exit 2, before workers
                             steps.Gates(opts.min_agree_steps, opts.max_step_error))
    missing = [p for p in FRAMEWORKS.get(source.framework, ()) if not install.installed(p)]
    if missing:  # a device-sized install: say what to install, before any worker starts
        raise ModelError(f"model {source.name!r}: loading a {source.framework} source needs {', '.join(missing)}, "
                         f"not installed here ({install.hint('export')})")
    try:
        names, added = resolve(opts.formats, source.framework)
    except KeyError as e:
        raise UsageError(f"unknown format(s) {e.args[0]}; known: {', '.join(FORMATS)}") from None
    with _staged(opts.out, source.name) as staging:
        pipeline = _Pipeline(source, names, added, staging, opts, as_progress(progress))
        pipeline.loop = loop
        try:
            manifest, checks = pipeline.run()
            if opts.sign is not None:
                signing.sign(staging, opts.sign)
            bundle.publish(staging, opts.out / source.name)
        finally:
            pipeline.close()
    codes = [errors.EXPORT for rec in manifest.artifacts.values() if rec.status == ArtifactStatus.FAILED]
    messages = [f"added {', '.join(added)} (needed to convert the requested formats)"] if added else []
    messages += pipeline.family_skips  # a family set the source gives NaN/Inf on throughout (docs/families.md)
    if opts.keep_layout and source.framework == "tensorflow":
        messages.append("--keep-layout has no effect here: artifacts of a TensorFlow source keep its own layout")
    return ExportOutcome(opts.out / source.name, manifest, checks,
                         errors.worst(codes + [judge.exit_code(checks, opts.strict, opts.runtimes),
                                               stepping.strict_code(checks, opts.strict)]),
                         time.perf_counter() - t_start, messages)


def _options(options: ExportOptions | Sequence[str] | None, out: Path | str | None,
             fields: dict[str, Any]) -> ExportOptions:
    """``run``'s arguments as one ``ExportOptions`` (TypeError for a field that is no option, or one given
    twice)."""
    if not isinstance(options, ExportOptions):
        if options is not None:
            if "formats" in fields:
                raise TypeError("export: formats given twice (positionally and as formats=)")
            fields["formats"] = options
        if out is not None:
            fields["out"] = out
        return ExportOptions(**fields)
    if out is not None:
        fields["out"] = out
    return replace(options, **fields) if fields else options


@contextmanager
def _staged(out: Path, name: str) -> Iterator[Path]:
    """The staging directory of ``name``'s bundle under ``out`` (absolute: workers and repro paths use it),
    removed on leaving; so are the directories made for it that are still empty: ``out`` only appears when a
    bundle is published in it."""
    root = out.absolute()
    made = [d for d in (root, *root.parents) if not d.exists()]  # innermost first
    try:
        staging = bundle.staging_dir(root, name)
    except OSError as e:
        _remove_empty(made)
        raise UsageError(f"cannot write bundles under {out}: {e.strerror or e}") from None
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(made)


def _remove_empty(dirs: list[Path]) -> None:
    """Remove ``dirs`` (innermost first) while they are empty directories."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (a published bundle, another export's staging), or never made
            if d.exists():
                return


def _named(model: str, error: str | None) -> str:
    """A source failure as one line that names the model (a crashed worker's reply does not)."""
    error = error or "loading the model failed"
    return error if error.startswith("model") else f"model {model!r}: {error}"


class _Pipeline:
    def __init__(self, source: SourceRef, names: list[str], added: list[str], staging: Path, options: ExportOptions,
                 progress: Progress) -> None:
        self.source, self.names, self.added, self.staging = source, names, added, staging
        self.options, self.progress = options, progress
        self.tolerances, self.timeout = options.tolerances, options.timeout
        self.work = staging / ".work"
        for d in (staging / bundle.ARTIFACTS, staging / bundle.GOLDEN, self.work):
            d.mkdir(parents=True)
        self.contract: Contract | None = None
        self.description = ""
        self.versions: dict = {}
        self.sets: list[GoldenSet] = []
        self.set_notes: dict[str, str] = {}  # set -> how a family set was made (GoldenSetRecord.note)
        self.family_skips: list[str] = []  # family sets the source gives NaN/Inf on throughout (families.py)
        self.coverage: dict[str, dict[str, dict]] = {}  # set -> input -> what its golden inputs cover
        self.calibration: CalibrationRecord | None = None
        self.labelled_dims: dict[str, int] | None = None
        self.flops: FlopsRecord | None = None
        self.loop: tuple[list[steps.Pair], int, str] | None = None  # the declared feedback loop (multi-step check)
        self.steps: steps.StepsRecord | None = None
        self.oracle: dict | None = None  # the float64 oracle's record (--oracle float64: GoldenData.oracle)
        self.runs = RunPool(staging / bundle.LOGS, self.work, timeout=self.timeout)
        self.targets: list[Target] = []  # every target submitted for checking, in export order
        self.plan = plan(source.framework)  # each format as made from this kind of source
        self.records: dict[str, ArtifactRecord] = {
            n: self._record(n, ArtifactStatus.NOT_APPLICABLE, error=self.plan[n].not_applicable)
            for n in names if self.plan[n].not_applicable}
        names = stage_order([n for n in names if n not in self.records], self.plan)
        self.stages = [(stage, list(group)) for stage, group in groupby(names, key=lambda n: self.plan[n].stage)]
        if not self.stages or self.stages[0][0] != source.framework:
            self.stages.insert(0, (source.framework, []))
        # Stage workers start one stage ahead: the next framework imports (TensorFlow + onnx2tf
        # take ~7 s) on the other core while the current stage exports.
        self.workers = [self._worker(i, stage, group) for i, (stage, group) in enumerate(self.stages)]
        for w in self.workers[:2]:
            w.start()

    def _worker(self, index: int, stage: str, group: list[str], attempt: int = 1) -> Worker:
        suffix = "" if attempt == 1 else f"-{attempt}"
        if any(s == stage for s, _ in self.stages[:index]):  # a stage its parents made run twice: a worker each
            suffix = f"-{index}{suffix}"
        return Worker(self.work / f"export-{stage}{suffix}", self.staging / bundle.LOGS / f"export-{stage}{suffix}.log",
                      preload=self._preload(self.source.framework if index == 0 else None, group),
                      env=envs.for_stage(stage))

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for key in list(self.runs.warm):
            self.runs.cancel(key)

    def run(self) -> tuple[Manifest, dict[str, ArtifactCheck]]:
        for index, (stage, group) in enumerate(self.stages):
            if index + 1 < len(self.workers):
                self.workers[index + 1].start()
            self._stage(index, stage, group)
        self.progress.stage("checking artifacts on their runtimes")
        runs = self.runs.results(lambda key, reply: self.progress.step(key, f"checked ({reply.status})"))
        self._recheck_hashes()
        if self.contract is None:  # _load_source raised otherwise
            raise RuntimeError("no source contract")
        references = {s.name: npz.load(s.reference) for s in self.sets}
        evidence = judge.Evidence(runs, self.sets, references, inputs=lambda s: npz.load(s.inputs),
                                  skipped_sets=self.runs.skipped_sets, oracles=oracle_rule.load(self.sets))
        rules = judge.Rules(self.tolerances, self.options.max_accuracy_drop, self.options.accept_constant,
                            gate_families=self.options.gate_families, oracle=self.oracle)
        # an artifact that was not made is judged once, on its default runtime (not exported, needs data, ...)
        unmade = [Target(n, self.plan[n].runtime) for n in self.records if all(t.format != n for t in self.targets)]
        checks = judge.judge(self.contract, self.records, evidence, rules, self.source.framework,
                             self.targets + unmade, final=False)
        if self.steps is not None:
            stepping.apply(checks, runs, self.staging / self.steps.path, self.steps,
                           {n: r.tier for n, r in self.records.items()},
                           steps.Gates(self.options.min_agree_steps, self.options.max_step_error))
        judge.finish(checks, self.source.framework)  # every gate applied: the failures' hops blamed
        golden.annotate(checks, self.contract, self.coverage)
        self._keep_outputs(checks)
        extras = localise_failures(checks, self.records, self.staging, self.sets, self.tolerances, self.work,
                                   self.staging / bundle.LOGS, self.timeout, progress=self.progress,
                                   source=self.source.to_dict(), contract=self.contract,
                                   consent=self.source.ref)  # the user named it: --model
        for key, chk in checks.items():  # every target's summary; the default runtime's is also `check`
            summary = CheckSummary(chk.status, chk.reason, chk.max_abs, chk.hop_blamed, chk.skipped_sets, chk.basis)
            rec = self.records[chk.format]
            rec.checks[key] = summary
            if chk.runtime == self.plan[chk.format].runtime and chk.platform == NATIVE:
                rec.check = summary
        manifest = self._manifest()
        bundle.write_json(self.staging / MANIFEST, manifest.to_json())  # first: the reports record its sha256
        write_reports(self.staging, self.staging / bundle.REPORTS, manifest, checks, self.sets, self.tolerances,
                      references, extras=extras)
        shutil.rmtree(self.work, ignore_errors=True)
        return manifest, checks

    def _stage(self, index: int, stage: str, group: list[str]) -> None:
        """Export one stage's formats in its worker; the source's stage first loads the source and
        writes the golden data. What to skip is decided here, before each job."""
        worker, holds_source = self.workers[index], index == 0
        if holds_source:  # what can be made depends on what the source has (calibration data)
            self.progress.stage(f"loading {self.source.name}, writing golden data ({stage} worker)")
            self._load_source(worker)
        runnable = [n for n in group if self._exportable(n)]
        if not runnable:
            worker.close()
            return
        if not holds_source:
            for name in runnable:
                for target in self._targets(name):
                    self.runs.prestart(target.key, target.runtime)
        self.progress.stage(f"exporting {', '.join(runnable)} ({stage} worker)")
        attempt = 1
        for i, name in enumerate(runnable):
            if i and not self._exportable(name):  # its parent failed earlier in this stage
                continue
            if not worker.alive and worker.proc is not None:  # killed at its limit or crashed: carry on in a new one
                attempt += 1
                worker = self.workers[index] = self._worker(index, stage, group, attempt).start()
                if holds_source:
                    self._load_source(worker, golden_too=False)
            self.progress.step(name, "exporting")
            self._take_format(name, worker.run(self._job(name), last=i == len(runnable) - 1, timeout=self.timeout))
        worker.close()  # a worker left waiting because the formats after a failure were skipped

    def _exportable(self, name: str) -> bool:
        """Records a skip or a missing exporter package; True when the format can be attempted now."""
        fmt = self.plan[name]
        parent = self.records.get(fmt.parent) if fmt.parent else None
        if name in self.records:
            return False
        if fmt.parent and (parent is None or parent.status != ArtifactStatus.OK):
            if parent is not None or fmt.parent not in self.names:
                self.records[name] = self._record(name, ArtifactStatus.SKIPPED,
                                                  error=f"not exported: its parent {fmt.parent} failed")
                return False
            return True  # its parent is made earlier in this same stage
        if fmt.needs_calibration and self.calibration is None:
            self.records[name] = self._record(name, ArtifactStatus.NEEDS_DATA, error=(
                "needs calibration data: this source has none of its own; pass --calib-data FILE.npz (inputs "
                f"named as in the contract, rows are samples, >= {golden.CALIB_RECOMMENDED} recommended; never the "
                "data you validate on)"))
            return False
        env = envs.for_stage(fmt.stage)
        if env is not None and not env.installed():
            self.records[name] = self._record(name, ArtifactStatus.FAILED,
                                              error=f"exporter needs {env.describe()}: {envs.HINT}")
            return False
        if fmt.missing_packages():
            self.records[name] = self._record(name, ArtifactStatus.FAILED, error=f"exporter needs "
                                              f"{', '.join(fmt.missing_packages())} ({install.hint('export')})")
            return False
        return True

    def _load_source(self, worker: Worker, golden_too: bool = True) -> None:
        """Phase 1: the worker loads the source and reports its contract. Phase 2: the golden sets
        (and calibration data) are planned here from it, and the worker draws them and runs the source."""
        loaded = worker.run(LoadSource(self.source.to_dict()), last=False, timeout=self.timeout)
        if not loaded.ok or loaded.contract is None:
            raise ModelError(_named(self.source.name, loaded.error), loaded.exit_code, detail=loaded.traceback)
        self.contract, self.description = loaded.contract, loaded.description
        try:  # before anything is exported: a name that is no output is a usage error
            judge.check_accepted(self.contract, self.options.accept_constant)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.versions.update(loaded.versions)
        if not golden_too:
            return
        labelled_output = self._user_data(self.contract)
        labelled = "given" if labelled_output else ("source" if loaded.labelled else None)
        plans = golden.plan_sets(self.contract, self.options.samples, self.options.seed, labelled=labelled,
                                 families=self.options.families, source_data=loaded.golden_data)
        for p in plans:  # --data decides its own dims (any size a dynamic dim allows)
            if golden.LABELLED in (p.name, p.base) and labelled == "given" and self.labelled_dims is not None:
                p.dims = self.labelled_dims
        if self.options.oracle == oracle_rule.KIND:  # the float64 oracle beside each set's reference
            for p in plans:
                p.oracle = oracle_rule.path_of(p.reference)
        job = WriteGolden(str(self.staging), plans)
        # Only when a format made from it is to be exported: mobilenet_v2's 128 samples are 77 MB to
        # draw, write and hash.
        if self.calibration is None and loaded.calibration and \
                any(self.plan[n].needs_calibration and not self.plan[n].not_applicable for n in self.names):
            job.calibration, job.calibration_samples = golden.CALIBRATION, golden.CALIB_SAMPLES
            job.calibration_seed = self.options.seed + golden.CALIB_SEED_OFFSET
        written = worker.run(job, last=False, timeout=self.timeout)
        if not written.ok:
            raise ModelError(_named(self.source.name, written.error), written.exit_code, detail=written.traceback)
        main = next((p for p in plans if p.name == golden.MAIN), None)
        self.flops = FlopsRecord(written.flops_per_sample, written.flops_method, dict(main.dims) if main else {})
        if written.calibration_samples:
            self.calibration = CalibrationRecord(golden.CALIBRATION, "", written.calibration_samples,
                                                 "the source's own calibration data")
        labelled_output = labelled_output or written.labelled_output
        plans, self.family_skips = families.after_writing(plans, written.samples)  # NaN/Inf at the source: noted
        self.sets = [GoldenSet(p.name, self.staging / p.inputs, self.staging / p.reference, p.dims,
                               written.samples.get(p.name, p.samples),
                               self.staging / p.labels if p.labels else None,
                               labelled_output if p.labels else None, p.family,
                               oracle=self.staging / p.oracle if p.oracle and written.oracle.get("sets", {}).get(p.name)
                               else None) for p in plans]
        self.set_notes = {p.name: p.note for p in plans if p.note}
        if self.options.oracle == oracle_rule.KIND:
            self.oracle = {k: v for k, v in written.oracle.items() if k != "sets"}
        self.coverage = {s.name: golden.coverage(self.contract, npz.load(s.inputs), given=s.name == golden.LABELLED
                                                 and labelled == "given") for s in self.sets}
        if self.loop is not None:
            self._write_steps(worker, written.samples.get(golden.MAIN, 0))

    def _write_steps(self, worker: Worker, main_samples: int) -> None:
        """The multi-step check's reference trajectory: the source runs the declared loop (``checking/steps.py``)."""
        if self.loop is None or self.contract is None:
            return
        pairs, n, where = self.loop
        stepping.check_declared(self.contract, pairs, where, self.source.to_dict())
        record = steps.StepsRecord(steps.texts(pairs), n, min(steps.STEP_SAMPLES, main_samples), steps.FILE, where,
                                   self.options.min_agree_steps, self.options.max_step_error)  # validate re-applies
        self.progress.stage(f"running {self.source.name} {n} steps with {', '.join(record.feedback)} fed back")
        main = next(s for s in self.sets if s.name == golden.MAIN)
        done = worker.run(WriteSteps(str(main.inputs), record.samples, record.feedback, n,
                                     str(self.staging / record.path)), last=False, timeout=self.timeout)
        if not done.ok:
            raise ModelError(_named(self.source.name, done.error), done.exit_code, detail=done.traceback)
        self.steps = record

    def _user_data(self, contract: Contract) -> str | None:
        """--calib-data and export --data (labelled), checked against the contract and copied into the
        bundle's golden data; returns the labelled output when --data was given."""
        from deploytool.checking.golden import read_user_data

        try:
            if self.options.calib_data is not None:
                inputs, _, _ = read_user_data(contract, self.options.calib_data, "--calib-data")
                npz.save(self.staging / golden.CALIBRATION, inputs)
                self.calibration = CalibrationRecord(golden.CALIBRATION, "", len(next(iter(inputs.values()))),
                                                     f"--calib-data {self.options.calib_data.name}")
            if self.options.data is None:
                return None
            inputs, labels, output = read_user_data(contract, self.options.data, "--data")
        except ValueError as e:
            raise UsageError(str(e)) from None
        if labels is None or output is None:
            raise UsageError(f"--data {self.options.data}: at export, --data is labelled data for task accuracy: add a "
                             "'labels' array (one class per sample), or 'labels:OUTPUT' naming the output")
        self.labelled_dims = dims_of(contract, inputs)
        npz.save(self.staging / "golden/labelled.npz", inputs)
        npz.save(self.staging / golden.LABELS_FILE, {"labels": labels})
        return output

    def _job(self, name: str) -> ExportFormat:
        fmt = self.plan[name]
        if self.contract is None:
            raise RuntimeError("export job before the source contract is known")
        parent = self.records.get(fmt.parent) if fmt.parent else None
        return ExportFormat(format=name, framework=self.source.framework, model_name=self.source.name,
                            contract=self.contract, out=str(self.staging / self._path(fmt)),
                            workdir=str(self.work / f"scratch-{fmt.stage}"),
                            parent_path=str(self.staging / parent.path) if parent and parent.path else None,
                            parent_contract=parent.contract if parent else None,
                            calibration=str(self.staging / self.calibration.path)
                            if self.calibration and fmt.needs_calibration else None,
                            options=self.options.converter_options())

    def _take_format(self, name: str, reply: FormatExported) -> None:
        fmt = self.plan[name]
        path = self.staging / self._path(fmt)
        if reply.status != ArtifactStatus.OK:  # a crashed worker's log is named as it will be inside the bundle
            rec = self._record(name, ArtifactStatus.FAILED, seconds=reply.seconds,
                               error=(reply.error or "exporter failed").replace(f"{self.staging}/", "bundle's "))
        elif not path.exists() or reply.contract is None:
            rec = self._record(name, ArtifactStatus.FAILED, error=f"exporter reported success but wrote no {path.name}")
        else:
            rec = self._record(name, ArtifactStatus.OK, seconds=reply.seconds)
            rec.path, rec.contract, rec.notes = self._path(fmt), reply.contract, reply.notes
            rec.route = reply.route
            rec.files = bundle.file_records(self.staging, path, reply.options.get(bundle.SIDECARS, ()))
            rec.size_bytes = sum(f.size for f in rec.files)
            rec.exporter = ExporterInfo(reply.exporter or fmt.exporter, reply.exporter_version, reply.options)
            if fmt.needs_calibration and self.calibration is not None:
                rec.exporter.options["calibration"] = {"samples": self.calibration.samples,
                                                       "origin": self.calibration.origin}
                if self.calibration.samples < golden.CALIB_RECOMMENDED:
                    rec.notes.append(f"calibrated on only {self.calibration.samples} samples "
                                     f"(>= {golden.CALIB_RECOMMENDED} recommended)")
        self.records[name] = rec
        if rec.status != ArtifactStatus.OK and path.is_dir():  # no half-written artifact stays in the bundle
            shutil.rmtree(path)
        elif rec.status != ArtifactStatus.OK and path.exists():
            path.unlink()
        if rec.status == ArtifactStatus.OK and rec.contract is not None:
            for target in self._targets(name):  # checked on every runtime that runs it
                self.targets.append(target)
                self.runs.submit(target.key, target.runtime, path, rec.contract, self.sets, rec.load_settings(),
                                 steps=stepping.plan(self.staging, self.steps) if self.steps else None)
        else:
            for target in self._targets(name):
                self.runs.cancel(target.key)
        self.progress.step(name, rec.status + (f" ({rec.error})" if rec.error else ""))

    def _recheck_hashes(self) -> None:
        """An artifact must still be what it was when exported: a later converter must not touch it."""
        for name, rec in self.records.items():
            if rec.status != ArtifactStatus.OK:
                continue
            try:
                bundle.verify_files(self.staging, rec.files, name)
            except errors.BundleError as e:  # no longer what was checked: removed, like any failed artifact
                rec.status, rec.error = ArtifactStatus.FAILED, f"modified after export by a later stage ({e})"
                path = self.staging / (rec.path or "")
                if rec.path and path.is_dir():
                    shutil.rmtree(path)
                elif rec.path and path.exists():
                    path.unlink()
                for f in rec.files:  # its sidecar files too (an ONNX file's external data)
                    (self.staging / f.path).unlink(missing_ok=True)
                rec.path, rec.files, rec.contract, rec.size_bytes = None, [], None, 0

    def _targets(self, name: str) -> list[Target]:
        """The targets an artifact is checked on: its default runtime, and the others that run it (those of
        ``--runtime``, when given)."""
        wanted = self.options.runtimes
        return [t for t in targets_of(name)
                if wanted is None or t.runtime in wanted or t.runtime == self.plan[name].runtime]

    def _keep_outputs(self, checks: dict[str, ArtifactCheck]) -> None:
        """Each artifact's outputs on its default runtime go into the bundle, so a later validate on a
        machine without the parent's runtime can still compare an artifact with its parent (per-hop)."""
        for chk in checks.values():
            name = chk.format
            if chk.runtime != self.plan[name].runtime or chk.platform != NATIVE:
                continue
            for set_name, path in chk.outputs.items():
                dest = self.staging / bundle.golden_outputs_path(name, set_name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                chk.outputs[set_name] = self.records[name].golden_outputs[set_name] = \
                    dest.relative_to(self.staging).as_posix()

    def _path(self, fmt: Format) -> str:
        return f"{bundle.ARTIFACTS}/{fmt.artifact_name(self.source.name)}"

    def _manifest(self) -> Manifest:
        if self.contract is None:
            raise RuntimeError("no source contract")
        data = GoldenData(
            seed=self.options.seed, reference_runtime=reference_runtime(self.source.to_dict()),
            sets={s.name: GoldenSetRecord(s.inputs.relative_to(self.staging).as_posix(),
                                          s.reference.relative_to(self.staging).as_posix(), s.dims, s.samples,
                                          s.labels.relative_to(self.staging).as_posix() if s.labels else None,
                                          s.labelled_output, self.coverage.get(s.name, {}), s.family,
                                          self.set_notes.get(s.name),
                                          oracle=s.oracle.relative_to(self.staging).as_posix() if s.oracle else None)
                  for s in self.sets},
            files=bundle.file_records(self.staging, self.staging / bundle.GOLDEN), oracle=self.oracle)
        if self.calibration is not None:  # its sha256 is in golden.files; repeated here with its origin
            data.calibration = self.calibration
            self.calibration.sha256 = bundle.sha256_file(self.staging / self.calibration.path)
        return Manifest(
            schema_version=SCHEMA_VERSION, created=bundle.now_utc(),
            tool={"name": "deploytool", "version": bundle.package_versions()["deploytool"]},
            model=ModelInfo(name=self.source.name, description=self.description, source=self.source.to_dict()),
            seed=self.options.seed, platform=bundle.platform_info(),
            versions={**bundle.package_versions(), **self.versions, **self._env_versions()},
            formats_requested=[n for n in self.names if n not in self.added], formats_added=self.added,
            contract=self.contract, golden=data,
            tolerances=self.tolerances.to_dict(),  # overrides of the parity tiers the export was judged with
            accepted_constant=self.options.accept_constant,
            gate_families=self.options.gate_families,  # validate gates on them too (unless --tier-defaults)
            flops=self.flops, steps=self.steps,
            artifacts={n: self.records[n] for n in self.plan if n in self.records})

    def _env_versions(self) -> dict[str, str | None]:
        """What the other Python environments that made artifacts had installed (``<env>/<package>``)."""
        made = {envs.for_stage(self.plan[n].stage) for n, r in self.records.items() if r.status == ArtifactStatus.OK}
        return {k: v for env in made if env is not None for k, v in env.versions().items()}

    def _preload(self, framework: str | None, group: list[str]) -> tuple[str, ...]:
        mods = list(FRAMEWORKS.get(framework, ())) if framework else []
        for name in group:
            mods += [m for m in self.plan[name].requires if m not in mods]
        return tuple(mods)

    def _record(self, name: str, status: ArtifactStatus, error: str | None = None,
                seconds: float | None = None) -> ArtifactRecord:
        fmt = self.plan[name]
        return ArtifactRecord(
            format=fmt.name, status=status, precision=fmt.precision, tier=fmt.tier, runtime=fmt.runtime,
            parent=fmt.parent,
            # the export chain this artifact came through, from the source model
            chain=[f"source ({self.source.framework})", *lineage(name, self.source.framework)],
            exporter=ExporterInfo(fmt.exporter), export_seconds=round(seconds, 3) if seconds is not None else None,
            error=error)
