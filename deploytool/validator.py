"""Runs artifacts on their runtimes and judges their outputs against the reference and the parent.

Shared by ``deploytool export`` (the check after export) and ``deploytool validate``. Each
artifact runs in its own worker subprocess on every golden set (the main set and, where dims are
dynamic, a second shape); judging is pure numpy (parity.py) on the collected outputs. Each
artifact is compared with the reference and with its parent artifact, so a failure names the
conversion hop where the error appears.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deploytool import npz, parity
from deploytool.contract import Contract
from deploytool.formats import lineage, plan
from deploytool.runtimes import RUNTIMES
from deploytool.spawn import Worker

PASS, FAIL, ERROR, SKIPPED, NOT_EXPORTED, CORRUPT = "pass", "fail", "error", "skipped", "not_exported", "corrupt"
NOT_APPLICABLE = "not_applicable"  # a format that cannot be made from this kind of source


@dataclass
class GoldenSet:
    name: str  # "main", "alt", "data"
    inputs: Path
    reference: Path
    dims: dict  # concrete sizes of the contract's dynamic dims in this set
    samples: int


@dataclass
class ArtifactCheck:
    format: str
    runtime: str
    status: str  # pass | fail | error | skipped | not_exported | corrupt
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

    def to_dict(self) -> dict:
        return asdict(self)


def applicable_sets(contract: Contract, sets: list[GoldenSet]) -> tuple[list[GoldenSet], dict[str, str]]:
    """Sets whose dim sizes the artifact accepts (a converter may have fixed a dim)."""
    ok, skipped = [], {}
    for s in sets:
        clash = {d: v for d, v in contract.fixed_dims.items() if d in s.dims and s.dims[d] != v}
        if clash:
            skipped[s.name] = "artifact fixed " + ", ".join(f"{d}={v}" for d, v in contract.fixed_dims.items())
        else:
            ok.append(s)
    return ok, skipped


class Runner:
    """Submits artifact runs to a small pool of worker subprocesses (optionally started warm)."""

    def __init__(self, bundle_dir: Path, work: Path, parallel: int = 2, settings: dict | None = None) -> None:
        self.bundle_dir, self.work = bundle_dir, work
        self.settings = settings or {}
        self.pool = ThreadPoolExecutor(max_workers=parallel)
        self.futures: dict[str, Future] = {}
        self.warm: dict[str, Worker] = {}

    def _worker(self, key: str, runtime: str) -> Worker:
        return self.warm.pop(key, None) or Worker(
            self.work / f"{key}.run-job.json", self.bundle_dir / "logs" / f"run-{key}.log", RUNTIMES[runtime].packages)

    def prestart(self, key: str, runtime: str) -> None:
        """Start the runtime's worker now so its imports overlap work still running."""
        if key not in self.warm and not RUNTIMES[runtime].missing_packages():
            self.warm[key] = self._worker(key, runtime).start()

    def cancel(self, key: str) -> None:
        worker = self.warm.pop(key, None)
        if worker is not None:
            worker.cancel()

    def submit(self, key: str, runtime: str, artifact: Path, contract: dict, sets: list[GoldenSet]) -> None:
        """Run the artifact on every set it accepts; the result names the sets it could not take."""
        rt = RUNTIMES[runtime]
        sets, skipped_sets = applicable_sets(Contract.from_dict(contract), sets)
        missing = rt.missing_packages()
        if missing:
            fut: Future = Future()
            fut.set_result({"status": "skipped", "skipped_sets": skipped_sets,
                            "error": f"runtime {rt.name} not installed (no {', '.join(missing)}): {rt.install_hint}"})
            self.futures[key] = fut
            return
        job = {
            "mode": "run", "runtime": runtime, "artifact": str(artifact), "contract": contract,
            "sets": [{"name": s.name, "inputs": str(s.inputs), "outputs": str(self.work / f"{key}.{s.name}.npz")}
                     for s in sets],
            "result": str(self.work / f"{key}.run.json"), "settings": self.settings,
        }
        worker = self._worker(key, runtime)
        self.futures[key] = self.pool.submit(lambda: {**worker.run(job), "skipped_sets": skipped_sets})

    def results(self) -> dict[str, dict]:
        out = {key: fut.result() for key, fut in self.futures.items()}
        self.pool.shutdown()
        for key in list(self.warm):
            self.cancel(key)
        return out


def judge(contract: Contract, records: dict[str, dict], runs: dict[str, dict], sets: list[GoldenSet],
          references: dict[str, dict[str, np.ndarray]], tolerances: dict | None = None,
          stored_outputs: Callable[[str, str], dict | None] = lambda fmt, set_name: None,
          framework: str = "torch") -> dict[str, ArtifactCheck]:
    """Verdicts per artifact, set and output, against the reference and against the parent artifact.

    ``records``: manifest artifact records of the artifacts to judge (in registry order).
    ``stored_outputs(fmt, set)``: a parent's outputs saved in the bundle at export time, used for
    the hop comparison when the parent is not run now (e.g. on a device without TensorFlow).
    ``framework``: the source's, which decides each artifact's parent (``formats.plan``).
    """
    checks: dict[str, ArtifactCheck] = {}
    produced: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    formats = plan(framework)
    for name in [n for n in formats if n in records]:
        fmt, rec, run = formats[name], records[name], runs.get(name)
        chk = ArtifactCheck(format=name, runtime=fmt.runtime, status=NOT_EXPORTED)
        checks[name] = chk
        if rec.get("corrupt"):
            chk.status, chk.reason = CORRUPT, rec["corrupt"]
            continue
        if rec.get("status") != "ok":
            chk.reason = rec.get("error") or "not exported"
            if rec.get("status") == NOT_APPLICABLE:
                chk.status = NOT_APPLICABLE
            continue
        if run is None:
            chk.status, chk.reason = SKIPPED, "not run"
            continue
        chk.timings = {k: run[k] for k in ("worker_start_s", "import_s", "load_s", "first_inference_s") if k in run}
        chk.settings, chk.runtime_version = run.get("settings", {}), run.get("version")
        chk.skipped_sets = dict(run.get("skipped_sets", {}))
        if run.get("status") == "skipped":
            chk.status, chk.reason = SKIPPED, run["error"]
            continue
        if run.get("status") != "ok":
            chk.status = ERROR
            where = "load" if run.get("status") == "load_failed" else "run"
            chk.reason = f"failed to {where} in {fmt.runtime}: {run.get('error') or run.get('crash', 'worker died')}"
            continue
        failures = []
        produced[name] = {}
        for set_name, out_path in run["outputs"].items():
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
                classifier = spec.kind == "classifier"
                verdict = parity.check(got[spec.name], ref[spec.name], tier, classifier)
                if verdict.passed and str(got[spec.name].dtype) != spec.dtype:
                    verdict.passed, verdict.reason = False, f"dtype {got[spec.name].dtype}, contract says {spec.dtype}"
                chk.sets[set_name][spec.name] = verdict.to_dict()
                if not verdict.passed:
                    failures.append(f"{spec.name}{'' if set_name == 'main' else f' ({set_name} set)'}: "
                                    f"{verdict.reason}")
                if parent_out is not None and spec.name in parent_out:
                    chk.hop[set_name][spec.name] = parity.check(got[spec.name], parent_out[spec.name], tier,
                                                                classifier).to_dict()
        chk.max_abs = max((v["metrics"]["max_abs"] for per_set in chk.sets.values() for v in per_set.values()
                           if v["metrics"]["max_abs"] is not None), default=None)
        chk.status, chk.reason = (FAIL, "; ".join(failures)) if failures else (PASS, "")
    for name, chk in checks.items():
        if chk.status == FAIL:
            chk.hop_blamed = _blame(name, checks, framework)
            chk.reason = f"{chk.reason} [error appears at hop {chk.hop_blamed}]"
    return checks


def _blame(name: str, checks: dict[str, ArtifactCheck], framework: str) -> str:
    """The hop into the first artifact of the lineage that fails against the reference.

    An ancestor that was not checked in this run cannot be cleared; then the hop into ``name``
    is named together with the unchecked ancestors. When the parent passes against the
    reference but this artifact does not, the error appeared at this hop.
    """
    chain = lineage(name, framework)
    unchecked = []
    for i, fmt in enumerate(chain):
        c = checks.get(fmt)
        if c is not None and c.status == FAIL:
            hop = f"{chain[i - 1] if i else 'source'} -> {fmt}"
            return hop if not unchecked else f"{hop} (not checked in this run: {', '.join(unchecked)})"
        if c is None or c.status != PASS:
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
    return None if best is None else best[1:]


def exit_code(checks: dict[str, ArtifactCheck], strict: bool) -> int:
    from deploytool import errors

    codes = {FAIL: errors.PARITY, ERROR: errors.RUNTIME, CORRUPT: errors.BUNDLE, NOT_EXPORTED: errors.EXPORT,
             SKIPPED: errors.SKIPPED if strict else errors.OK}
    return errors.worst(codes.get(c.status, errors.OK) for c in checks.values())


def write_reports(bundle_dir: Path, reports_dir: Path, manifest: dict, checks: dict[str, ArtifactCheck],
                  sets: list[GoldenSet], tolerances: dict, references: dict[str, dict[str, np.ndarray]],
                  json_path: Path | None = None, junit_path: Path | None = None) -> dict[str, Path]:
    """validation.json (schema-versioned, every metric and verdict), JUnit XML, and a repro
    folder per failing artifact."""
    from deploytool import bundle
    from deploytool.report import junit

    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path = json_path or reports_dir / "validation.json"
    junit_path = junit_path or reports_dir / "validation.junit.xml"
    repros = {}
    for name, chk in checks.items():
        if chk.status == FAIL:
            repros[name] = write_repro(bundle_dir, reports_dir / "repro" / name, manifest, chk, sets, references,
                                       tolerances)
    data = {
        "schema_version": bundle.SCHEMA_VERSION,
        "created": bundle.now_utc(),
        "model": manifest["model"]["name"],
        "sets": {s.name: {"dims": s.dims, "samples": s.samples} for s in sets},
        "tolerances": {"tiers": {n: t.to_dict() for n, t in parity.TIERS.items()}, "overrides": tolerances},
        "artifacts": {n: {**c.to_dict(), "repro": str(repros[n]) if n in repros else None} for n, c in checks.items()},
    }
    bundle.write_json(json_path, data)
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    junit_path.write_text(junit.render(manifest["model"]["name"], checks))
    return {"json": json_path, "junit": junit_path, **{f"repro:{k}": v for k, v in repros.items()}}


def write_repro(bundle_dir: Path, dest: Path, manifest: dict, chk: ArtifactCheck, sets: list[GoldenSet],
                references: dict[str, dict[str, np.ndarray]], tolerances: dict) -> Path:
    """Everything a converter bug report needs: inputs, expected and actual outputs, the worst
    sample alone, artifact hashes, versions and tolerances."""
    import json
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    worst = worst_sample(chk)
    by_name = {s.name: s for s in sets}
    for set_name, out_path in chk.outputs.items():
        src = Path(out_path) if Path(out_path).is_absolute() else bundle_dir / out_path
        inputs = npz.load(by_name[set_name].inputs)
        npz.save(dest / f"inputs.{set_name}.npz", inputs)
        npz.save(dest / f"expected.{set_name}.npz", references[set_name])
        npz.save(dest / f"actual.{set_name}.npz", npz.load(src))
        if worst and worst[0] == set_name:
            i = worst[2]
            npz.save(dest / "worst_sample.npz", {**{f"input.{k}": v[i] for k, v in inputs.items()},
                                                 **{f"expected.{k}": v[i] for k, v in references[set_name].items()},
                                                 **{f"actual.{k}": v[i] for k, v in npz.load(src).items()}})
    rec = manifest["artifacts"][chk.format]
    info = {
        "artifact": chk.format, "files": rec["files"], "parent": rec["parent"], "exporter": rec["exporter"],
        "runtime": chk.runtime, "runtime_version": chk.runtime_version, "versions": manifest["versions"],
        "platform": manifest["platform"], "reason": chk.reason, "hop_blamed": chk.hop_blamed,
        "worst": {"set": worst[0], "output": worst[1], "sample": worst[2]} if worst else None,
        "verdicts": chk.sets, "per_hop": chk.hop, "tolerance_overrides": tolerances,
        "contract": rec["contract"],
    }
    (dest / "repro.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    (dest / "README.txt").write_text(
        f"deploytool parity failure: {manifest['model']['name']}/{chk.format} on {chk.runtime}\n{chk.reason}\n\n"
        "inputs.SET.npz    golden inputs, [samples, *shape] per input (source layout, e.g. NCHW)\n"
        "expected.SET.npz  reference (torch eager) outputs\n"
        "actual.SET.npz    this artifact's outputs, mapped back to the source names and layout\n"
        "worst_sample.npz  the single sample with the largest error: its inputs, expected and actual\n"
        "repro.json        artifact files + sha256, exporter + options, runtime and package versions,\n"
        "                  the I/O contract (names, layout permutation), metrics and tolerances\n")
    return dest
