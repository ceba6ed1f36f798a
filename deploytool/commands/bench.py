"""``deploytool bench``: latency, load time and memory of every artifact on its own runtime.

Each (artifact, threads, batch) row is measured in a fresh worker subprocess, one at a time,
with the timing protocol of timing.py; the source model (torch eager) is the baseline row when
it can be loaded here. ``--compare BASELINE`` measures both bundles' rows interleaved
(A B A B ...) in the same run and flags p50 regressions.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.checking.golden import MAIN
from deploytool.commands import check_run_options
from deploytool.commands.validate import select_formats, select_targets
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.core.errors import BundleError, UsageError
from deploytool.formats import FORMATS
from deploytool.measuring import peak
from deploytool.measuring import timing as B  # noqa: N812
from deploytool.progress import Progress, as_progress
from deploytool.report.bench_files import write_bench_reports
from deploytool.running.jobs import BENCH_MARGIN_S, ArtifactStatus, RowStatus, RunStatus, TimeArtifact
from deploytool.running.spawn import Worker
from deploytool.runtimes import RUNTIMES
from deploytool.sources import kind_of, source_artifact, source_loadable
from deploytool.store import bundle
from deploytool.store.manifest import FILENAME as MANIFEST
from deploytool.store.manifest import Manifest
from deploytool.store.reader import OpenedBundle, open_bundle
from deploytool.targets import check_runtimes

SOURCE = "source"  # row name of the source-model baseline


@dataclass
class Target:
    """One thing to time: an artifact of a bundle, or the bundle's source model."""
    name: str
    runtime: str
    artifact: Path
    contract: Contract | None
    size_bytes: int | None
    batch_dynamic: bool
    reason: str = ""  # non-empty: cannot be measured here (skipped / failed before running)
    status: RowStatus = RowStatus.OK
    load_settings: dict = field(default_factory=dict)  # the artifact's own (ArtifactRecord.load_settings)


@dataclass
class BenchOutcome:
    bundle: Path
    manifest: Manifest
    rows: list[dict]
    compare: list[dict] | None
    reports: dict[str, Path]
    exit_code: int
    peak: dict | None = None  # this machine's GEMM peak (peak.measure), None when not probed


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{what} {text!r}: expected comma-separated integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--{what} {text!r}: values must be integers >= 1")
    return sorted(set(values))


def _targets(bundle_dir: Path, manifest: Manifest, formats: list[str] | None, work: Path,
             with_source: bool, runtimes: list[str] | None = None) -> list[Target]:
    """The source baseline (unless ``with_source`` is off), then every target of the chosen artifacts: each on
    every runtime that runs it (or those of ``runtimes``)."""
    contract = manifest.contract
    batch_axis0 = all(isinstance(s.shape[0], str) and s.shape[0] == contract.inputs[0].shape[0]
                      for s in contract.inputs) if contract.inputs[0].shape else False
    targets = []
    source = manifest.model.source
    # A source that is itself a format (an .onnx file, a SavedModel) is that format's row (copied byte for byte).
    if with_source and kind_of(source).is_format is None:
        why = source_loadable(source)
        runtime, path, c = source_artifact(source, contract, work)
        targets.append(Target(SOURCE, runtime, path, c, None, batch_axis0, why or "",
                              RowStatus.SKIPPED if why else RowStatus.OK))
    for target in select_targets(manifest, select_formats(manifest, formats), runtimes):
        name = target.format
        rec = manifest.artifacts[name]
        t = Target(name, target.runtime, bundle_dir / (rec.path or ""), rec.contract, rec.size_bytes, False,
                   load_settings=rec.load_settings())
        if rec.status == ArtifactStatus.NOT_APPLICABLE:
            t.status, t.reason = RowStatus.NOT_APPLICABLE, rec.error or ""
        elif rec.status != ArtifactStatus.OK or rec.contract is None:
            t.status, t.reason = RowStatus.FAILED, f"not exported: {rec.error}"
        else:
            try:
                bundle.verify_files(bundle_dir, rec.files, name)
            except BundleError as e:
                t.status, t.reason = RowStatus.CORRUPT, f"refused before loading: {e}"
            art = rec.contract
            first = art.inputs[0].shape[0] if art.inputs[0].shape else None
            t.batch_dynamic = batch_axis0 and isinstance(first, str) and first not in art.fixed_dims
        targets.append(t)
    return targets


def _run_row(t: Target, threads: int, batch: int, protocol: B.Protocol, inputs: Path, work: Path,
             logs: Path, timeout: float) -> dict:
    # onnxruntime's intra-op spinning stays on, its default: off, its worker threads sleep and wake on
    # every parallel section, which made mobilenet_v2 1.41x slower at 2 threads here (and cost more CPU
    # per call; scripts/bench_best_config.py). At 1 thread it changes nothing.
    requested = {"threads": threads, "inter_op_threads": 1, "spinning": True, **t.load_settings}
    row = {"format": t.name, "runtime": t.runtime, "threads": threads, "batch": batch, "size_bytes": t.size_bytes,
           "settings_requested": requested}
    if t.status != RowStatus.OK or t.contract is None:
        return {**row, "status": t.status, "reason": t.reason}
    missing = RUNTIMES[t.runtime].missing_packages()
    if missing:
        return {**row, "status": RowStatus.SKIPPED,
                "reason": f"runtime {t.runtime} not installed (no {', '.join(missing)}): "
                          f"{RUNTIMES[t.runtime].install_hint}"}
    if batch > 1 and not t.batch_dynamic:
        return {**row, "status": RowStatus.SKIPPED, "reason": "batch dim is static in this artifact's contract"}
    key = f"bench-{t.name}@{t.runtime}-t{threads}-b{batch}"
    job = TimeArtifact(runtime=t.runtime, artifact=str(t.artifact), contract=t.contract, inputs=str(inputs),
                       batch=batch, settings=dict(requested), protocol=protocol.to_dict())
    res = Worker(work / key, logs / f"{key}.log").run(job, timeout=timeout)
    if res.status != RunStatus.OK:
        where = "load" if res.status == RunStatus.LOAD_FAILED else "run"
        return {**row, "status": RowStatus.FAILED, "reason": f"failed to {where} in {t.runtime}: {res.error}"}
    row.update(status=RowStatus.OK, reason="", settings=res.settings, runtime_version=res.version,
               import_s=res.import_s, load_s=res.load_s, first_inference_ms=res.first_inference_ms,
               rss_start_mb=res.rss_start_mb, rss_after_load_mb=res.rss_after_load_mb,
               rss_peak_mb=res.rss_peak_mb, warmup_runs=res.warmup_runs, capped=res.capped,
               samples_ns=res.samples_ns, **B.summarize(res.samples_ns, batch))
    return row


def run(bundle_dir: Path | str, formats: list[str] | None = None, threads: list[int] | tuple[int, ...] = (1,),
        batches: list[int] | tuple[int, ...] = (1,), protocol: B.Protocol | None = None,
        compare: Path | str | None = None, threshold: float = 1.10, rounds: int = 3, strict: bool = False,
        with_source: bool = True, reports_dir: Path | str | None = None,
        progress: Progress | Callable[[str], None] | None = None, verify_key: Path | str | None = None,
        timeout: float | None = None, machine_name: str | None = None, gemm_peak: bool = True,
        runtimes: list[str] | None = None) -> BenchOutcome:
    """``timeout``: the limit for each row's worker (default: --max-time + BENCH_MARGIN_S).
    ``verify_key``: refuse the bundle unless it is signed with its private key. ``progress``: where the
    stages (one per row) are reported (``progress.py``; a callable receives each message).
    ``gemm_peak``: probe this machine's fp32 GEMM peak once (deploytool.measuring.peak, ~2-10 s in fresh
    processes) and give each row its achieved GFLOP/s and % of that peak. ``runtimes``: time only the targets on
    these runtimes (default: every runtime that runs each artifact; one not installed here is a SKIPPED row)."""
    protocol = protocol or B.Protocol()
    progress = as_progress(progress)
    check_run_options(timeout, None, None)
    try:
        protocol.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: must be > 1.0 (a ratio of p50 latencies)")
    opened = open_bundle(bundle_dir, verify_key)
    bundle_dir, manifest = opened.root, opened.manifest
    limit = timeout if timeout is not None else protocol.max_time + BENCH_MARGIN_S
    work = Path(tempfile.mkdtemp(prefix="deploytool-bench-"))
    try:
        logs = bundle.real_dir(bundle_dir, bundle.LOGS)
    except OSError:
        logs = work
    try:
        (work / "a").mkdir()
        inputs = _main_inputs(opened, work / "a")
        targets = _targets(bundle_dir, manifest, formats, work / "a", with_source, check_runtimes(runtimes))
        rows, comparison = [], None
        if compare is None:
            for t in targets:
                for th in threads:
                    for b in batches:
                        progress.stage(f"timing {t.name} on {t.runtime}, threads={th}, batch={b}")
                        rows.append(_run_row(t, th, b, protocol, inputs, work, logs, limit))
        else:
            rows, comparison = _compare(targets, Path(compare), threads, batches, protocol, threshold, rounds,
                                        inputs, work, logs, with_source, progress, limit)
        try:  # the bundle's own reports/ only through real directories inside it; --reports is the user's
            out_dir = Path(reports_dir) if reports_dir else bundle.real_dir(bundle_dir, bundle.REPORTS)
        except OSError as e:
            raise UsageError(f"cannot write reports to {bundle_dir / bundle.REPORTS}: {e.strerror or e} "
                             "(use --reports DIR)") from None
        _relate(rows)
        machine_peak = None
        if gemm_peak and any(r["status"] == RowStatus.OK for r in rows):
            progress.stage("probing this machine's fp32 GEMM peak")
            machine_peak = peak.measure()
        _achieved(rows, manifest, machine_peak)
        reports = write_bench_reports(manifest, rows, comparison, protocol, threshold, out_dir,
                                      bundle.sha256_file(bundle_dir / MANIFEST), machine_name, machine_peak)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    codes = [errors.RUNTIME if r["status"] == RowStatus.FAILED else errors.BUNDLE if r["status"] == RowStatus.CORRUPT
             else errors.SKIPPED if r["status"] == RowStatus.SKIPPED and strict else errors.OK for r in rows]
    if comparison and any(c["regression"] for c in comparison):
        codes.append(errors.REGRESSION)
    return BenchOutcome(bundle_dir, manifest, rows, comparison, reports, errors.worst(codes), machine_peak)


def _achieved(rows: list[dict], manifest: Manifest, machine_peak: dict | None) -> None:
    """Each measured row's achieved GFLOP/s (the manifest's FLOPs per sample x batch / p50) and its
    share of the fp32 GEMM peak at the row's threads; int8 rows get GOP/s only (no int8 peak)."""
    flops = manifest.flops.per_sample if manifest.flops else None
    for r in rows:
        if r["status"] != RowStatus.OK or not flops or not r.get("p50_ms"):
            continue
        r["gflops_per_s"] = flops * r["batch"] / (r["p50_ms"] / 1e3) / 1e9
        precision = FORMATS[r["format"]].precision if r["format"] in FORMATS else "fp32"
        if precision.startswith("int8"):
            r["peak_note"] = peak.INT8_NOTE
            continue
        ceiling = peak.peak_for(machine_peak, r["threads"]) if machine_peak else None
        if ceiling:
            r["peak_gflops"], r["pct_of_peak"] = ceiling, 100.0 * r["gflops_per_s"] / ceiling


def _relate(rows: list[dict]) -> None:
    """Each row of a format that has a full-precision sibling (``Format.compare_to``: tflite_int8 ->
    tflite_fp32, onnx_int8 -> onnx) gets its p50 and size as ratios of the sibling's at the same
    threads and batch: the speed-up and the size a quantization buys, side by side in one run."""
    ok = {(r["format"], r["runtime"], r["threads"], r["batch"]): r for r in rows if r["status"] == RowStatus.OK}
    for r in rows:  # the sibling on the same runtime: onnx_int8 on OpenVINO against onnx on OpenVINO
        sibling = FORMATS[r["format"]].compare_to if r["format"] in FORMATS else None
        base = ok.get((sibling, r["runtime"], r["threads"], r["batch"])) if sibling else None
        if base is None or r["status"] != RowStatus.OK:
            continue
        r["relative"] = {"to": sibling, "p50_ratio": r["p50_ms"] / base["p50_ms"],
                         "size_ratio": (r["size_bytes"] / base["size_bytes"]) if r.get("size_bytes") and
                         base.get("size_bytes") else None}


def _main_inputs(opened: OpenedBundle, work: Path) -> Path:
    """The main golden inputs as checked when the bundle was opened, in scratch space (workers read
    what was checked)."""
    path = work / "main.inputs.npz"
    npz.save(path, opened.inputs[MAIN])
    return path


def _compare(targets, baseline_dir, threads, batches, protocol, threshold, rounds, inputs, work, logs, with_source,
             progress, limit):
    """Rows of both bundles, measured A B A B ... so drift of a noisy machine hits both alike."""
    baseline = open_bundle(baseline_dir)
    (work / "b").mkdir()
    base_targets = {(t.name, t.runtime): t for t in _targets(baseline.root, baseline.manifest, None, work / "b",
                                                              with_source)}
    base_inputs = _main_inputs(baseline, work / "b")
    per_round = B.Protocol(**{**protocol.to_dict(), "min_time": protocol.min_time / rounds,
                              "min_runs": max(1, protocol.min_runs // rounds)})
    rows, comparison = [], []
    for t in targets:
        b_t = base_targets.get((t.name, t.runtime))
        for th in threads:
            for bs in batches:
                runs: dict[str, list[dict]] = {"candidate": [], "baseline": []}
                for r in range(rounds):
                    progress.stage(f"comparing {t.name} on {t.runtime} threads={th} batch={bs}: round "
                                   f"{r + 1}/{rounds}")
                    runs["candidate"].append(_run_row(t, th, bs, per_round, inputs, work, logs, limit))
                    if b_t is not None:
                        runs["baseline"].append(_run_row(b_t, th, bs, per_round, base_inputs, work, logs, limit))
                cand = _pool(runs["candidate"], bs)
                rows.append(cand)
                if b_t is None:
                    comparison.append({"format": t.name, "runtime": t.runtime, "threads": th, "batch": bs,
                                       "ratio": None, "regression": False, "note": "not in the baseline bundle"})
                    continue
                base = _pool(runs["baseline"], bs)
                ok = cand["status"] == RowStatus.OK and base["status"] == RowStatus.OK
                ratio = cand["p50_ms"] / base["p50_ms"] if ok else None
                comparison.append({"format": t.name, "runtime": t.runtime, "threads": th, "batch": bs,
                                   "candidate_p50_ms": cand.get("p50_ms"), "baseline_p50_ms": base.get("p50_ms"),
                                   "ratio": ratio, "regression": bool(ratio is not None and ratio > threshold),
                                   "note": "" if ok else (cand.get("reason") or base.get("reason"))})
    return rows, comparison


def _pool(rounds_rows: list[dict], batch: int) -> dict:
    """One row from several interleaved rounds: samples pooled, first round's start-up figures."""
    bad = next((r for r in rounds_rows if r["status"] != RowStatus.OK), None)
    if bad is not None:
        return bad
    row = dict(rounds_rows[0])
    samples = [s for r in rounds_rows for s in r["samples_ns"]]
    row.update(samples_ns=samples, rounds=len(rounds_rows), **B.summarize(samples, batch))
    return row


def sorted_rows(rows: list[dict]) -> list[dict]:
    """Measured rows by p90, then the rows that were skipped or failed."""
    return sorted(rows, key=lambda r: (r["status"] != RowStatus.OK, r.get("p90_ms") or 0.0))


__all__ = ["run", "BenchOutcome", "parse_int_list", "sorted_rows"]
