"""``deploytool validate``: re-check a bundle's artifacts on their runtimes, fail closed.

Needs only the bundle and the runtime of each artifact checked: references come from the
golden outputs stored in the bundle (the source model is run only for ``--data``), and the
per-hop comparison falls back to the parent's outputs stored at export time. Every artifact's
files are checked against their sha256 before anything loads them.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploytool.checking import judge
from deploytool.checking.golden import DATA, MAIN, GoldenSet, read_user_data
from deploytool.commands import check_run_options
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
from deploytool.sources import source_artifact
from deploytool.store import bundle
from deploytool.store.manifest import Manifest
from deploytool.store.reader import OpenedBundle, open_bundle
from deploytool.targets import check_runtimes, runtimes_of, targets_of


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
    """Exact format names, or prefixes of them ("tflite" -> tflite_fp16, tflite_fp32)."""
    present = [n for n in FORMATS if n in manifest.artifacts] + [n for n in manifest.artifacts if n not in FORMATS]
    if not requested:
        return present
    chosen = []
    for r in requested:
        hits = [n for n in present if n == r] or [n for n in present if n.startswith(r)]
        if not hits:
            raise UsageError(f"--format {r}: the bundle has no such artifact (it has {', '.join(present)})")
        chosen += [h for h in hits if h not in chosen]
    return [n for n in present if n in chosen]


def select_targets(manifest: Manifest, names: list[str], runtimes: list[str] | None) -> list[Target]:
    """The targets of the chosen artifacts: every runtime that runs each, or those of ``runtimes``.
    A ``--runtime`` that runs none of them is a usage error naming what does."""
    chosen = [t for n in names for t in targets_of(n, runtimes)]
    if runtimes and not chosen:
        runs = sorted({r for n in names for r in runtimes_of(n)})
        raise UsageError(f"--runtime {', '.join(runtimes)}: runs none of the artifacts chosen "
                         f"({', '.join(names)}); their runtimes are {', '.join(runs)}")
    return chosen


def run(bundle_dir: Path | str, formats: list[str] | None = None, data: Path | str | None = None,
        samples: int | None = None, tolerances: dict | None = None, strict: bool = False,
        reports_dir: Path | str | None = None, json_path: Path | str | None = None,
        junit_path: Path | str | None = None, progress: Progress | Callable[[str], None] | None = None,
        verify_key: Path | str | None = None, tier_defaults: bool = False,
        timeout: float = CHECK_TIMEOUT_S, max_accuracy_drop: dict[str, float] | None = None,
        machine_name: str | None = None, accept_constant: list[str] | None = None,
        runtimes: list[str] | None = None) -> ValidateOutcome:
    """``tolerances``: this run's overrides, on top of those stored in the bundle (``tier_defaults``:
    ignore the stored ones). ``verify_key``: refuse the bundle unless it is signed with its private key.
    ``timeout``: the limit for each artifact's run. ``accept_constant``: outputs ("*": all) whose
    reference may be constant across the golden samples (else such a check is VACUOUS, exit 5). ``progress``: where the
    stages are reported (``progress.py``; a callable receives each message). ``runtimes``: check only the targets on
    these runtimes (default: every runtime that runs each artifact; those not installed here are SKIPPED, naming
    the extra that adds them)."""
    t0 = time.perf_counter()
    progress = as_progress(progress)
    check_run_options(timeout, tolerances, max_accuracy_drop)
    opened = open_bundle(bundle_dir, verify_key)
    bundle_dir, manifest = opened.root, opened.manifest
    unknown = [n for n in manifest.artifacts if n not in FORMATS]
    if unknown:
        raise BundleError(f"bundle {bundle_dir}: artifacts of formats this deploytool does not know: {unknown}")
    names = select_formats(manifest, formats)
    wanted = check_runtimes(runtimes)
    chosen = select_targets(manifest, names, wanted)
    # The overrides the bundle was exported with (unless --tier-defaults), then this run's (a more
    # specific key still wins). The checks report each override they applied.
    kept = {} if tier_defaults else manifest.tolerances
    tolerances = {k: {**kept.get(k, {}), **(tolerances or {}).get(k, {})} for k in {*kept, *(tolerances or {})}}
    contract = manifest.contract
    try:  # the outputs export accepted as constant (stored in the bundle), and this run's
        accept_constant = [*manifest.accepted_constant, *judge.check_accepted(contract, accept_constant)]
    except ValueError as e:
        raise UsageError(str(e)) from None
    work = Path(tempfile.mkdtemp(prefix="deploytool-validate-"))
    try:
        sets, references = _sets(opened, samples, work)
        if data is not None:
            progress.stage(f"computing references for {data} on the source model")
            s, ref = _data_set(bundle_dir, manifest, contract, Path(data), work, timeout)
            sets.append(s)
            references[s.name] = ref
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
            runs.submit(target.key, target.runtime, bundle_dir / rec.path, rec.contract, sets, rec.load_settings())
        if runs.futures:
            progress.stage(f"checking {len(runs.futures)} target(s): {len(records)} artifact(s) on their runtimes")
        replies = runs.results(lambda key, reply: progress.step(key, f"ran on {reply.runtime} ({reply.status})"))

        def stored(fmt: str, set_name: str):
            rel = manifest.artifacts[fmt].golden_outputs.get(set_name) if fmt in manifest.artifacts else None
            return npz.load(bundle_dir / rel) if rel and (bundle_dir / rel).is_file() else None

        checks = judge.judge(contract, records, replies, sets, references, tolerances, stored,
                             framework=manifest.model.framework, refused=refused, skipped_sets=runs.skipped_sets,
                             max_drop=max_accuracy_drop, accept_constant=accept_constant,
                             inputs=lambda s: npz.load(s.inputs), targets=chosen)
        extras = localise_failures(checks, manifest.artifacts, bundle_dir, sets, tolerances, work,
                                   _logs(bundle_dir, work), timeout, progress=progress,
                                   source=manifest.model.source, contract=contract)
        try:
            # The bundle's own reports/ only through real directories inside it; --reports is the user's.
            reports_dir = Path(reports_dir) if reports_dir else bundle.real_dir(bundle_dir, bundle.REPORTS)
            reports = write_reports(bundle_dir, reports_dir, manifest, checks, sets, tolerances,
                                    references, Path(json_path) if json_path else None,
                                    Path(junit_path) if junit_path else None, machine_name, extras)
        except OSError as e:
            raise UsageError(f"cannot write reports to {reports_dir}: {e.strerror or e} (use --reports DIR)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ValidateOutcome(bundle_dir, manifest, checks, sets, reports, judge.exit_code(checks, strict, wanted),
                           time.perf_counter() - t0)


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
                              len(next(iter(inputs.values()))), labels, info.labelled_output if labels else None))
        references[name] = ref
    return sets, references


def _data_set(bundle_dir: Path, manifest: Manifest, contract: Contract, path: Path, work: Path, timeout: float):
    """The user's own inputs: names as in the contract, each array [samples, *shape] or, where the
    first dim is dynamic, [N, ...] rows taken as N samples of batch 1. The source model, on
    its own runtime (torch eager, onnxruntime, Keras, TensorFlow), computes their reference outputs
    in its own worker."""
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


__all__ = ["run", "ValidateOutcome", "select_formats", "select_targets"]
