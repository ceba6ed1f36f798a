"""The export pipeline (coordinator side): source -> artifacts -> check -> published bundle.

Formats are exported stage by stage (one worker process per framework: torch, then
TensorFlow), in the registry's dependency order. Stage workers start one stage ahead so the next
framework's imports overlap the current stage, and each artifact is checked on its own runtime
as soon as its stage is done, in parallel with the next stage. The bundle is assembled in a
staging directory and published by rename when complete.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Callable

from deploytool import bundle, errors, validator
from deploytool.contract import Contract, parse_input_spec, parse_range
from deploytool.errors import ModelError, UsageError
from deploytool.formats import FORMATS, lineage, plan, resolve
from deploytool.sources import FRAMEWORK_PACKAGES, SourceRef, reference_runtime
from deploytool.sources import resolve as resolve_source
from deploytool.spawn import Worker
from deploytool.validator import NOT_APPLICABLE, ArtifactCheck, GoldenSet, Runner

DEFAULT_SAMPLES = 16
ALT_SAMPLES = 4
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
           inputs: list[str] | None = None, input_ranges: list[str] | None = None, weights: str | None = None,
           tolerances: dict | None = None, progress: Callable[[str], None] = lambda msg: None) -> ExportOutcome:
    """``tolerances``: overrides as parity.tier_for takes them ({"FMT:OUTPUT": {"atol": x}}); they are
    stored in the manifest, and later validate runs of the bundle start from them."""
    t_start = time.perf_counter()
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    try:
        specs = [parse_input_spec(s) for s in inputs or []]
        ranges = dict(parse_range(r) for r in input_ranges or [])
    except ValueError as e:
        raise UsageError(str(e)) from None
    source = resolve_source(model, specs, ranges, weights)
    try:
        names, added = resolve(formats, source.framework)
    except KeyError as e:
        raise UsageError(f"unknown format(s) {e.args[0]}; known: {', '.join(FORMATS)}") from None
    out = Path(out)
    try:
        staging = bundle.staging_dir(out, source.name)
    except OSError as e:
        raise UsageError(f"cannot write bundles under {out}: {e.strerror or e}") from None
    job = _Export(source, names, added, staging, samples, seed, keep_layout, tolerances or {}, progress)
    try:
        manifest, checks = job.run()
        bundle.publish(staging, out / source.name)
    finally:
        job.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    codes = [errors.EXPORT for rec in manifest["artifacts"].values() if rec["status"] == "failed"]
    messages = [f"added {', '.join(added)} (needed to convert the requested formats)"] if added else []
    if keep_layout and source.framework == "tensorflow":
        messages.append("--keep-layout has no effect here: artifacts of a TensorFlow source keep its own layout")
    return ExportOutcome(out / source.name, manifest, checks, errors.worst(codes + [validator.exit_code(checks, strict)]),
                         time.perf_counter() - t_start, messages)


class _Export:
    def __init__(self, source: SourceRef, names: list[str], added: list[str], staging: Path, samples: int, seed: int,
                 keep_layout: bool, tolerances: dict, progress: Callable[[str], None]) -> None:
        self.source, self.names, self.added, self.staging = source, names, added, staging
        self.tolerances = tolerances
        self.samples, self.seed, self.keep_layout, self.progress = samples, seed, keep_layout, progress
        self.work = staging / ".work"
        for d in (staging / bundle.ARTIFACTS, staging / "golden", self.work):
            d.mkdir(parents=True)
        self.contract: Contract | None = None
        self.description = ""
        self.versions: dict = {}
        self.sets: list[GoldenSet] = []
        self.runner = Runner(staging, self.work)
        self.plan = plan(source.framework)  # each format as made from this kind of source
        # A root format is made in the source's own worker; one that cannot be made from this
        # kind of source (TorchScript from an .onnx file) is recorded as not applicable.
        self.records: dict[str, dict] = {
            n: self._record(n, NOT_APPLICABLE, error=f"not applicable: made from {'/'.join(self.plan[n].sources)} "
                                                     f"models, the source is {source.framework}")
            for n in names if self.plan[n].parent is None and source.framework not in self.plan[n].sources}
        names = [n for n in names if n not in self.records]
        stage_of = lambda n: self.plan[n].stage if self.plan[n].parent else source.framework  # noqa: E731
        self.stages = [(stage, list(group)) for stage, group in groupby(names, key=stage_of)]
        if not self.stages or self.stages[0][0] != source.framework:
            self.stages.insert(0, (source.framework, []))
        # Stage workers start one stage ahead: the next framework imports (TensorFlow + onnx2tf
        # take ~7 s) on the other core while the current stage exports.
        self.workers = [Worker(self.work / f"export-{stage}-job.json", staging / bundle.LOGS / f"export-{stage}.log",
                               preload=self._preload(source.framework if i == 0 else None, group))
                        for i, (stage, group) in enumerate(self.stages)]
        for w in self.workers[:2]:
            w.start()

    def close(self) -> None:
        for w in self.workers:
            w.cancel()
        for key in list(self.runner.warm):
            self.runner.cancel(key)

    def run(self) -> tuple[dict, dict[str, ArtifactCheck]]:
        for index, (stage, group) in enumerate(self.stages):
            if index + 1 < len(self.workers):
                self.workers[index + 1].start()
            self._stage(index, stage, group)
        self.progress("checking artifacts on their runtimes")
        runs = self.runner.results()
        self._recheck_hashes()
        references = {s.name: validator.npz.load(s.reference) for s in self.sets}
        checks = validator.judge(self.contract, self.records, runs, self.sets, references, self.tolerances,
                                 framework=self.source.framework)
        self._keep_outputs(checks)
        for name, chk in checks.items():
            self.records[name]["check"] = {"status": chk.status, "reason": chk.reason, "max_abs": chk.max_abs,
                                           "hop_blamed": chk.hop_blamed, "skipped_sets": chk.skipped_sets}
        manifest = self._manifest()
        validator.write_reports(self.staging, self.staging / bundle.REPORTS, manifest, checks, self.sets,
                                self.tolerances, references)
        shutil.rmtree(self.work, ignore_errors=True)
        bundle.write_json(self.staging / bundle.MANIFEST, manifest)
        return manifest, checks

    def _stage(self, index: int, stage: str, group: list[str]) -> None:
        holds_source = index == 0
        runnable = []
        for name in group:
            fmt = self.plan[name]
            parent = self.records.get(fmt.parent) if fmt.parent else None
            if fmt.parent and fmt.parent not in runnable and (parent is None or parent["status"] != "ok"):
                self.records[name] = self._record(name, "skipped",
                                                  error=f"not exported: its parent {fmt.parent} failed")
            elif fmt.missing_packages():
                self.records[name] = self._record(name, "failed", error=f"exporter needs "
                                                  f"{', '.join(fmt.missing_packages())} (pip install deploytool)")
            else:
                runnable.append(name)
        if not runnable and not holds_source:
            self.workers[index].cancel()
            return
        if not holds_source:
            for name in runnable:
                self.runner.prestart(name, self.plan[name].runtime)
        self.progress(f"exporting {', '.join(runnable) or 'reference outputs'} ({stage} worker)")
        job = {
            "mode": "export", "stage": stage, "framework": self.source.framework, "model_name": self.source.name,
            "workdir": str(self.work / f"scratch-{stage}"), "result": str(self.work / f"export-{stage}.json"),
            "options": {"keep_layout": self.keep_layout},
            "formats": [self._job_item(n) for n in runnable],
        }
        if holds_source:
            job["source"] = self.source.to_dict()
            job["golden"] = {"seed": self.seed, "sets": [
                {"name": name, "samples": n, "inputs": str(self.staging / f"golden/{stem}.npz"),
                 "reference": str(self.staging / f"golden/{ref}.npz")}
                for name, n, stem, ref in (("main", self.samples, "inputs", "reference"),
                                           ("alt", ALT_SAMPLES, "inputs_alt", "reference_alt"))]}
        else:
            job["contract"] = self.contract.to_dict()
        result = self.workers[index].run(job)
        if holds_source:
            self._take_source(result, job)
        self.versions.update(result.get("versions", {}))
        for name in runnable:
            self._take_format(name, result)

    def _job_item(self, name: str) -> dict:
        parent = self.plan[name].parent
        return {"name": name, "out": str(self.staging / self._path(name)),
                "parent_path": str(self.staging / self._path(parent)) if parent else None,
                # A parent exported earlier in this same worker is handed over inside the worker.
                "parent_contract": self.records[parent]["contract"] if parent in self.records else None}

    def _take_source(self, result: dict, job: dict) -> None:
        if "source_error" in result:
            err = result["source_error"]
            raise ModelError(err["message"], err.get("exit_code", errors.MODEL), detail=err.get("traceback"))
        if "contract" not in result or "sets" not in result:
            raise ModelError(f"model {self.source.name!r}: loading the model crashed: {result.get('crash')}")
        self.contract = Contract.from_dict(result["contract"])
        self.description = result.get("description", "")
        for item in job["golden"]["sets"]:
            if item["name"] in result["sets"]:
                info = result["sets"][item["name"]]
                self.sets.append(GoldenSet(item["name"], Path(item["inputs"]), Path(item["reference"]), info["dims"],
                                           info["samples"]))

    def _take_format(self, name: str, result: dict) -> None:
        fmt = self.plan[name]
        entry = result.get("formats", {}).get(name)
        path = self.staging / self._path(name)
        if entry is None:  # the worker died; its log is named as it will be inside the published bundle
            crash = result.get("crash", "worker produced no result").replace(f"{self.staging}/", "bundle's ")
            rec = self._record(name, "failed", error=crash)
        elif entry["status"] != "ok":
            rec = self._record(name, entry["status"], error=entry["error"], seconds=entry["seconds"])
        elif not path.exists():
            rec = self._record(name, "failed", error=f"exporter reported success but wrote no {path.name}")
        else:
            rec = self._record(name, "ok", seconds=entry["seconds"], path=self._path(name),
                               contract=entry["contract"], exporter_version=entry["exporter_version"],
                               options=entry["options"], notes=entry["notes"],
                               files=bundle.file_records(self.staging, path))
            rec["exporter"]["name"] = entry["exporter"]
        self.records[name] = rec
        if rec["status"] != "ok" and path.is_dir():  # no half-written artifact stays in the bundle
            shutil.rmtree(path)
        elif rec["status"] != "ok" and path.exists():
            path.unlink()
        if rec["status"] == "ok":
            self.runner.submit(name, fmt.runtime, self.staging / rec["path"], rec["contract"], self.sets)
        else:
            self.runner.cancel(name)
        self.progress(f"  {name}: {rec['status']}" + (f" ({rec['error']})" if rec.get("error") else ""))

    def _recheck_hashes(self) -> None:
        """An artifact must still be what it was when exported: a later converter must not touch it."""
        for name, rec in self.records.items():
            if rec["status"] != "ok":
                continue
            try:
                bundle.verify_files(self.staging, rec["files"], name)
            except errors.BundleError as e:
                rec.update(status="failed", error=f"modified after export by a later stage ({e})")

    def _keep_outputs(self, checks: dict[str, ArtifactCheck]) -> None:
        """Each artifact's outputs go into the bundle, so a later validate on a machine without
        the parent's runtime can still compare an artifact with its parent (per-hop)."""
        for name, chk in checks.items():
            kept = {}
            for set_name, path in chk.outputs.items():
                dest = self.staging / bundle.golden_outputs_path(name, set_name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                kept[set_name] = dest.relative_to(self.staging).as_posix()
                chk.outputs[set_name] = kept[set_name]
            if kept:
                self.records[name]["golden_outputs"] = kept

    def _path(self, fmt: str) -> str:
        return f"{bundle.ARTIFACTS}/{FORMATS[fmt].artifact_name(self.source.name)}"

    def _manifest(self) -> dict:
        golden = {
            "seed": self.seed, "reference_runtime": reference_runtime(self.source.to_dict()),
            "sets": {s.name: {"inputs": s.inputs.relative_to(self.staging).as_posix(),
                              "reference": s.reference.relative_to(self.staging).as_posix(),
                              "dims": s.dims, "samples": s.samples} for s in self.sets},
            "files": bundle.file_records(self.staging, self.staging / "golden"),
        }
        return {
            "schema_version": bundle.SCHEMA_VERSION,
            "created": bundle.now_utc(),
            "tool": {"name": "deploytool", "version": bundle.package_versions()["deploytool"]},
            "model": {"name": self.source.name, "description": self.description, "source": self.source.to_dict()},
            "seed": self.seed,
            "platform": bundle.platform_info(),
            "versions": {**bundle.package_versions(), **self.versions},
            "formats_requested": [n for n in self.names if n not in self.added],
            "formats_added": self.added,
            "contract": self.contract.to_dict(),
            "golden": golden,
            "tolerances": self.tolerances,  # overrides of the parity tiers the export was judged with
            "artifacts": self.records,
        }


    def _preload(self, framework: str | None, group: list[str]) -> tuple[str, ...]:
        mods = list(FRAMEWORK_PACKAGES.get(framework, ())) if framework else []
        for name in group:
            mods += [m for m in self.plan[name].requires if m not in mods]
        return tuple(mods)

    def _record(self, name: str, status: str, error: str | None = None, seconds: float | None = None,
                path: str | None = None, contract: dict | None = None, exporter_version: str | None = None,
                options: dict | None = None, notes: list | None = None, files: list | None = None) -> dict:
        fmt = self.plan[name]
        return {
            "format": fmt.name, "status": status, "path": path, "files": files or [],
            "size_bytes": sum(f["size"] for f in files or []),
            "precision": fmt.precision, "tier": fmt.tier, "parent": fmt.parent, "runtime": fmt.runtime,
            # the export chain this artifact came through, from the source model
            "chain": [f"source ({self.source.framework})", *lineage(name, self.source.framework)],
            "exporter": {"name": fmt.exporter, "version": exporter_version, "options": options or {}},
            "export_seconds": round(seconds, 3) if seconds is not None else None,
            "contract": contract, "notes": notes or [], "error": error,
        }
