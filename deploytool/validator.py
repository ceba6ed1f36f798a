"""Runs artifacts on their runtimes and judges their outputs against the reference and parent.

Shared by ``deploytool export`` (the check after export) and ``deploytool validate``. Each
artifact runs in its own worker subprocess; up to ``parallel`` run at once. Judging is pure
numpy (parity.py) on the collected outputs.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploytool import npz, parity
from deploytool.contract import Contract
from deploytool.formats import FORMATS, lineage
from deploytool.runtimes import RUNTIMES
from deploytool.spawn import Worker

PASS, FAIL, ERROR, SKIPPED, NOT_EXPORTED = "pass", "fail", "error", "skipped", "not_exported"


@dataclass
class ArtifactCheck:
    format: str
    runtime: str
    status: str  # pass | fail | error | skipped | not_exported
    reason: str = ""
    outputs: dict = field(default_factory=dict)  # output name -> verdict vs reference
    hop: dict = field(default_factory=dict)  # output name -> verdict vs parent artifact
    hop_blamed: str | None = None  # "onnx -> savedmodel": where the error first appears
    max_abs: float | None = None
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runtime_version: str | None = None
    outputs_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Runner:
    """Submits artifact runs to a small pool of worker subprocesses."""

    def __init__(self, bundle_dir: Path, work: Path, inputs_path: Path, parallel: int = 2,
                 settings: dict | None = None) -> None:
        self.bundle_dir, self.work, self.inputs_path = bundle_dir, work, inputs_path
        self.settings = settings or {}
        self.pool = ThreadPoolExecutor(max_workers=parallel)
        self.futures: dict[str, Future] = {}
        self.warm: dict[str, Worker] = {}

    def _worker(self, fmt_name: str) -> Worker:
        rt = RUNTIMES[FORMATS[fmt_name].runtime]
        return self.warm.pop(fmt_name, None) or Worker(
            self.work / f"{fmt_name}.run-job.json", self.bundle_dir / "logs" / f"run-{fmt_name}.log", rt.packages)

    def prestart(self, fmt_name: str) -> None:
        """Start the runtime's worker now so its imports overlap the export still running."""
        if fmt_name not in self.warm and not RUNTIMES[FORMATS[fmt_name].runtime].missing_packages():
            self.warm[fmt_name] = self._worker(fmt_name).start()

    def cancel(self, fmt_name: str) -> None:
        worker = self.warm.pop(fmt_name, None)
        if worker is not None:
            worker.cancel()

    def submit(self, fmt_name: str, record: dict) -> None:
        fmt = FORMATS[fmt_name]
        rt = RUNTIMES[fmt.runtime]
        missing = rt.missing_packages()
        if missing:
            fut: Future = Future()
            fut.set_result({"status": "skipped", "error": f"runtime {rt.name} not installed (no {', '.join(missing)}): "
                                                          f"{rt.install_hint}"})
            self.futures[fmt_name] = fut
            return
        job = {
            "mode": "run", "runtime": rt.name,
            "artifact": str(self.bundle_dir / record["path"]),
            "contract": record["contract"], "inputs": str(self.inputs_path),
            "outputs": str(self.work / f"{fmt_name}.outputs.npz"),
            "result": str(self.work / f"{fmt_name}.run.json"), "settings": self.settings,
        }
        self.futures[fmt_name] = self.pool.submit(self._run, self._worker(fmt_name), job)

    @staticmethod
    def _run(worker: Worker, job: dict) -> dict:
        result = worker.run(job)
        result["outputs_path"] = job["outputs"]
        return result

    def results(self) -> dict[str, dict]:
        out = {name: fut.result() for name, fut in self.futures.items()}
        self.pool.shutdown()
        for name in list(self.warm):
            self.cancel(name)
        return out


def judge_all(contract: Contract, records: dict[str, dict], runs: dict[str, dict], reference: dict[str, np.ndarray],
              tolerances: dict | None = None) -> dict[str, ArtifactCheck]:
    """Verdicts per artifact and output, against the reference and against the parent artifact."""
    tolerances = tolerances or {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    checks: dict[str, ArtifactCheck] = {}
    for name, fmt in FORMATS.items():
        if name not in records:
            continue
        rec, run = records[name], runs.get(name)
        chk = ArtifactCheck(format=name, runtime=fmt.runtime, status=NOT_EXPORTED)
        checks[name] = chk
        if rec.get("status") != "ok":
            chk.reason = rec.get("error", "not exported")
            continue
        if run is None:
            chk.status, chk.reason = SKIPPED, "not run"
            continue
        chk.timings = {k: run[k] for k in ("worker_start_s", "import_s", "load_s", "first_inference_s") if k in run}
        chk.settings, chk.runtime_version = run.get("settings", {}), run.get("version")
        if run.get("status") == "skipped":
            chk.status, chk.reason = SKIPPED, run["error"]
            continue
        if run.get("status") != "ok":
            chk.status = ERROR
            where = "load" if run.get("status") == "load_failed" else "run"
            chk.reason = f"failed to {where} in {fmt.runtime}: {run.get('error') or run.get('crash', 'worker died')}"
            continue
        chk.outputs_path = run["outputs_path"]
        got = npz.load(chk.outputs_path)
        outputs[name] = got
        tier = parity.TIERS[fmt.tier]
        fmt_tol = tolerances.get(name, {}) or tolerances.get("*", {})
        failures = []
        for spec in contract.outputs:
            t = tier.with_overrides(**fmt_tol.get(spec.name, fmt_tol.get("*", {})))
            classifier = spec.kind == "classifier"
            verdict = parity.check(got[spec.name], reference[spec.name], t, classifier)
            chk.outputs[spec.name] = verdict.to_dict()
            if not verdict.passed:
                failures.append(f"{spec.name}: {verdict.reason}")
            if fmt.parent and fmt.parent in outputs:
                chk.hop[spec.name] = parity.check(got[spec.name], outputs[fmt.parent][spec.name], t, classifier).to_dict()
        chk.max_abs = max((v["metrics"]["max_abs"] for v in chk.outputs.values()
                           if v["metrics"]["max_abs"] is not None), default=None)
        if failures:
            chk.status, chk.reason = FAIL, "; ".join(failures)
        else:
            chk.status, chk.reason = PASS, ""
    for name, chk in checks.items():
        if chk.status == FAIL:
            chk.hop_blamed = _blame(name, checks)
            chk.reason = f"{chk.reason} [error appears at hop {chk.hop_blamed}]"
    return checks


def _blame(name: str, checks: dict[str, ArtifactCheck]) -> str:
    """The first hop in the lineage whose artifact fails against the reference."""
    chain = lineage(name)
    for i, fmt in enumerate(chain):
        c = checks.get(fmt)
        if c is not None and c.status == FAIL:
            return f"{chain[i - 1] if i else 'source'} -> {fmt}"
    return f"{FORMATS[name].parent or 'source'} -> {name}"
