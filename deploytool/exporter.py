"""The export pipeline (coordinator side): source -> artifacts -> check -> published bundle.

Formats are exported stage by stage (one worker process per framework: torch, then
TensorFlow), in the registry's dependency order. As soon as a stage's artifacts exist they are
checked on their own runtimes in parallel with the next stage. The bundle is assembled in a
staging directory and published by rename when complete.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Callable

from deploytool import bundle, errors, npz
from deploytool.contract import Contract
from deploytool.errors import DeployToolError, ModelError, UsageError
from deploytool.formats import FORMATS, resolve
from deploytool.sources import resolve as resolve_source
from deploytool.spawn import Worker
from deploytool.validator import FAIL, ERROR, SKIPPED, ArtifactCheck, Runner, judge_all

DEFAULT_SAMPLES = 16
DEFAULT_SEED = 0


@dataclass
class ExportOutcome:
    bundle: Path
    manifest: dict
    checks: dict[str, ArtifactCheck]
    exit_code: int
    seconds: float
    messages: list[str] = field(default_factory=list)


def export(model: str, formats: list[str] | None = None, out: Path | str = "bundles", samples: int = DEFAULT_SAMPLES,
           seed: int = DEFAULT_SEED, keep_layout: bool = False, strict: bool = False,
           progress: Callable[[str], None] = lambda msg: None) -> ExportOutcome:
    t_start = time.perf_counter()
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    source = resolve_source(model)
    try:
        names, added = resolve(formats)
    except KeyError as e:
        raise UsageError(f"unknown format(s) {e.args[0]}; known: {', '.join(FORMATS)}") from None
    out = Path(out)
    dest = out / source.name
    try:
        staging = bundle.staging_dir(out, source.name)
    except OSError as e:
        raise UsageError(f"cannot write bundles under {out}: {e.strerror or e}") from None
    try:
        return _export(source, names, added, dest, staging, samples, seed, keep_layout, strict, progress, t_start)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _export(source, names, added, dest, staging, samples, seed, keep_layout, strict, progress, t_start) -> ExportOutcome:
    work = staging / ".work"
    (staging / bundle.ARTIFACTS).mkdir(parents=True)
    (staging / "golden").mkdir()
    work.mkdir()
    messages = [f"added {', '.join(added)} (needed to convert the requested formats)"] if added else []
    records: dict[str, dict] = {}
    runner = Runner(staging, work, staging / bundle.GOLDEN_INPUTS)
    stages = [(stage, list(group)) for stage, group in groupby(names, key=lambda n: FORMATS[n].stage)]
    if not stages or stages[0][0] != source.framework:
        stages.insert(0, (source.framework, []))
    # Stage workers start one stage ahead: the next framework imports (TensorFlow + onnx2tf take
    # ~7 s) on the other core while the current stage exports.
    workers = [Worker(work / f"export-{stage}-job.json", staging / bundle.LOGS / f"export-{stage}.log",
                      preload=_preload(source.framework if i == 0 else None, group))
               for i, (stage, group) in enumerate(stages)]
    for w in workers[:2]:
        w.start()
    try:
        return _run_stages(source, stages, workers, runner, records, staging, dest, work, samples, seed,
                           keep_layout, strict, progress, t_start, names, added, messages)
    finally:
        for w in workers:
            w.cancel()


def _preload(framework: str | None, group: list[str]) -> tuple[str, ...]:
    mods = [framework] if framework else []
    for name in group:
        mods += [m for m in FORMATS[name].requires if m not in mods]
    return tuple(mods)


def _run_stages(source, stages, workers, runner, records, staging, dest, work, samples, seed, keep_layout, strict,
                progress, t_start, names, added, messages) -> ExportOutcome:
    contract: Contract | None = None
    description = ""
    framework_versions: dict = {}
    for index, (stage, group) in enumerate(stages):
        holds_source = index == 0
        if index + 1 < len(workers):
            workers[index + 1].start()
        runnable = []
        for name in group:
            fmt = FORMATS[name]
            parent = records.get(fmt.parent) if fmt.parent else None
            parent_in_stage = fmt.parent in runnable
            if fmt.parent and not parent_in_stage and (parent is None or parent["status"] != "ok"):
                records[name] = _record(fmt, "skipped", error=f"not exported: its parent {fmt.parent} failed")
            elif fmt.missing_packages():
                records[name] = _record(fmt, "failed", error=f"exporter needs {', '.join(fmt.missing_packages())} "
                                                             "(pip install deploytool)")
            else:
                runnable.append(name)
        if not runnable and not holds_source:
            workers[index].cancel()
            continue
        if not holds_source:
            for name in runnable:
                runner.prestart(name)
        progress(f"exporting {', '.join(runnable) or 'reference outputs'} ({stage} worker)")
        job = {
            "mode": "export", "stage": stage, "model_name": source.name,
            "workdir": str(work / f"scratch-{stage}"), "result": str(work / f"export-{stage}.json"),
            "options": {"keep_layout": keep_layout},
            # A parent exported earlier in this same worker is handed over inside the worker.
            "formats": [{"name": n, "out": str(staging / _artifact_path(source.name, n)),
                         "parent_path": str(staging / _artifact_path(source.name, FORMATS[n].parent))
                         if FORMATS[n].parent else None,
                         "parent_contract": records[FORMATS[n].parent]["contract"]
                         if FORMATS[n].parent in records else None}
                        for n in runnable],
        }
        if holds_source:
            job["source"] = source.to_dict()
            job["golden"] = {"samples": samples, "seed": seed, "inputs": str(staging / bundle.GOLDEN_INPUTS),
                             "reference": str(staging / bundle.GOLDEN_REFERENCE)}
        else:
            job["contract"] = contract.to_dict()
        result = workers[index].run(job)
        if holds_source:
            if "source_error" in result:
                err = result["source_error"]
                raise ModelError(err["message"], err.get("exit_code", errors.MODEL))
            if "contract" not in result:
                raise ModelError(f"model {source.name!r}: loading the model crashed: {result.get('crash')}")
            contract = Contract.from_dict(result["contract"])
            description = result.get("description", "")
        framework_versions.update(result.get("versions", {}))
        for name in runnable:
            fmt = FORMATS[name]
            entry = result.get("formats", {}).get(name)
            if entry is None:
                records[name] = _record(fmt, "failed", error=result.get("crash", "worker produced no result"))
                runner.cancel(name)
            elif entry["status"] != "ok":
                records[name] = _record(fmt, entry["status"], error=entry["error"], seconds=entry["seconds"])
                runner.cancel(name)
            else:
                path = staging / _artifact_path(source.name, name)
                if not path.exists():
                    records[name] = _record(fmt, "failed", error=f"exporter reported success but wrote no {path.name}")
                    runner.cancel(name)
                    continue
                records[name] = _record(fmt, "ok", seconds=entry["seconds"], path=_artifact_path(source.name, name),
                                        contract=entry["contract"], exporter_version=entry["exporter_version"],
                                        options=entry["options"], notes=entry["notes"],
                                        files=bundle.file_records(staging, path))
                runner.submit(name, records[name])
            rec = records[name]
            progress(f"  {name}: {rec['status']}" + (f" ({rec['error']})" if rec.get("error") else ""))
    progress("checking artifacts on their runtimes")
    runs = runner.results()
    _recheck_hashes(staging, records)
    reference = npz.load(staging / bundle.GOLDEN_REFERENCE)
    checks = judge_all(contract, records, runs, reference)
    for name, chk in checks.items():
        records[name]["check"] = {"status": chk.status, "reason": chk.reason, "max_abs": chk.max_abs,
                                  "hop_blamed": chk.hop_blamed}
    manifest = _manifest(source, description, contract, records, samples, seed, names, added, framework_versions,
                         staging)
    bundle.write_json(staging / bundle.REPORTS / "validation.json",
                      {"schema_version": bundle.SCHEMA_VERSION, "created": manifest["created"],
                       "artifacts": {n: c.to_dict() for n, c in checks.items()}})
    shutil.rmtree(work, ignore_errors=True)
    bundle.write_json(staging / bundle.MANIFEST, manifest)
    bundle.publish(staging, dest)
    codes = []
    for name, rec in records.items():
        if rec["status"] == "failed":
            codes.append(errors.EXPORT)
        chk = checks[name]
        codes.append({FAIL: errors.PARITY, ERROR: errors.RUNTIME}.get(chk.status, errors.OK))
        if chk.status == SKIPPED and rec["status"] == "ok" and strict:
            codes.append(errors.SKIPPED)
    return ExportOutcome(dest, manifest, checks, errors.worst(codes), time.perf_counter() - t_start, messages)


def _recheck_hashes(staging: Path, records: dict[str, dict]) -> None:
    """An artifact must still be what it was when exported: a later converter must not touch it."""
    for name, rec in records.items():
        if rec["status"] != "ok":
            continue
        try:
            bundle.verify_files(staging, rec["files"], name)
        except errors.BundleError as e:
            rec.update(status="failed", error=f"modified after export by a later stage ({e})")


def _artifact_path(model: str, fmt: str) -> str:
    return f"{bundle.ARTIFACTS}/{FORMATS[fmt].artifact_name(model)}"


def _record(fmt, status: str, error: str | None = None, seconds: float | None = None, path: str | None = None,
            contract: dict | None = None, exporter_version: str | None = None, options: dict | None = None,
            notes: list | None = None, files: list | None = None) -> dict:
    rec = {
        "format": fmt.name, "status": status, "path": path, "files": files or [],
        "size_bytes": sum(f["size"] for f in files or []),
        "precision": fmt.precision, "tier": fmt.tier, "parent": fmt.parent, "runtime": fmt.runtime,
        "exporter": {"name": fmt.exporter, "version": exporter_version, "options": options or {}},
        "export_seconds": round(seconds, 3) if seconds is not None else None,
        "contract": contract, "notes": notes or [], "error": error,
    }
    return rec


def _manifest(source, description, contract, records, samples, seed, names, added, framework_versions, staging) -> dict:
    golden = {
        "inputs": bundle.GOLDEN_INPUTS, "reference": bundle.GOLDEN_REFERENCE, "samples": samples, "seed": seed,
        "reference_runtime": "torch_eager",
        "files": bundle.file_records(staging, staging / "golden"),
    }
    return {
        "schema_version": bundle.SCHEMA_VERSION,
        "created": bundle.now_utc(),
        "tool": {"name": "deploytool", "version": bundle.package_versions()["deploytool"]},
        "model": {"name": source.name, "description": description, "source": source.to_dict()},
        "seed": seed,
        "platform": bundle.platform_info(),
        "versions": {**bundle.package_versions(), **framework_versions},
        "formats_requested": [n for n in names if n not in added],
        "formats_added": added,
        "contract": contract.to_dict(),
        "golden": golden,
        "artifacts": records,
    }


__all__ = ["export", "ExportOutcome", "DeployToolError"]
