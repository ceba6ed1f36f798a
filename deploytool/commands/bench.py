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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploytool.checking.golden import MAIN
from deploytool.commands import check_run_options, pipeline
from deploytool.commands.validate import select_formats, select_targets
from deploytool.core import errors, npz
from deploytool.core.contract import Contract
from deploytool.core.errors import BundleError, UsageError
from deploytool.formats import FORMATS
from deploytool.measuring import peak
from deploytool.measuring import timing as B  # noqa: N812
from deploytool.measuring.machine import fingerprint
from deploytool.progress import Progress, as_progress
from deploytool.report.bench_files import write_bench_reports
from deploytool.results import NOT_IN_BASELINE, BenchRow, Comparison, Relative
from deploytool.running.jobs import BENCH_MARGIN_S, ArtifactStatus, RowStatus, RunStatus, TimeArtifact
from deploytool.running.spawn import Worker
from deploytool.runtimes import RUNTIMES
from deploytool.sources import check_source_option, kind_of, source_artifact, source_consent, source_loadable
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
    rows: list[BenchRow]
    compare: list[Comparison] | None
    reports: dict[str, Path]
    exit_code: int
    peak: dict | None = None  # this machine's GEMM peak (peak.measure), None when not probed
    pipeline: dict | None = None  # --pipeline: pre/post time per sample (commands/pipeline.py bench_timing)


@dataclass
class BenchOptions:
    """What to time and how: built once (by the CLI from its options, by ``run`` from keywords) and passed down.

    ``formats``: artifacts to time (a prefix selects several; default all). ``runtimes``: time only the targets
    on these runtimes (default: every runtime that runs each artifact; one not installed here is a SKIPPED
    row). ``compare``: a baseline bundle, timed interleaved (``rounds`` per side), a p50 ratio above
    ``threshold`` flagging a regression. ``strict``: a skipped row fails the run. ``with_source``: time the
    source model as the baseline row; ``source``: the bundle's source model as ``export --model`` names it,
    allowing it to run where it is Python the bundle names (a model file, a factory; without it that row is
    SKIPPED, saying so; one naming another model is exit 2). ``reports_dir``: where bench.json/csv go (default
    BUNDLE/reports). ``verify_key``: refuse the bundle unless it is signed with its private key. ``timeout``:
    the limit for each row's worker (default: ``protocol.max_time`` + BENCH_MARGIN_S). ``gemm_peak``: probe this
    machine's fp32 GEMM peak once (deploytool.measuring.peak, ~2-10 s in fresh processes) and give each row its
    achieved GFLOP/s and % of that peak."""

    formats: list[str] | None = None
    runtimes: list[str] | None = None
    threads: list[int] | tuple[int, ...] = (1,)
    batches: list[int] | tuple[int, ...] = (1,)
    protocol: B.Protocol = field(default_factory=B.Protocol)
    compare: Path | str | None = None
    threshold: float = 1.10
    rounds: int = 3
    strict: bool = False
    with_source: bool = True
    reports_dir: Path | str | None = None
    verify_key: Path | str | None = None
    timeout: float | None = None
    machine_name: str | None = None
    gemm_peak: bool = True
    source: str | None = None
    # --pipeline FILE.py --raw-data RAW.npz [--operating-point]: pre and post time beside each row's inference
    pipeline: Path | str | None = None
    raw_data: Path | str | None = None
    operating_point: str | None = None

    def __post_init__(self) -> None:
        self.protocol = self.protocol or B.Protocol()  # None (as the API has always taken): the default

    def validate(self) -> None:
        """Every check of the options, whoever built them (one line, exit 2)."""
        check_run_options(self.timeout, None, None)
        for what, values in (("threads", self.threads), ("batch", self.batches)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise UsageError(f"--{what} {','.join(map(str, values))!r}: values must be integers >= 1")
        try:
            self.protocol.validate()
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold}: must be > 1.0 (a ratio of p50 latencies)")
        if self.rounds < 1:
            raise UsageError(f"--rounds {self.rounds}: must be >= 1")
        self.runtimes = check_runtimes(self.runtimes)

    @property
    def limit(self) -> float:
        """Each row's worker time limit."""
        return self.timeout if self.timeout is not None else self.protocol.max_time + BENCH_MARGIN_S


@dataclass
class _Timing:
    """What every row of one run shares: the protocol (per round with --compare), scratch space and logs,
    and the worker's time limit."""

    protocol: B.Protocol
    work: Path
    logs: Path
    limit: float


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{what} {text!r}: expected comma-separated integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--{what} {text!r}: values must be integers >= 1")
    return sorted(set(values))


def _targets(bundle_dir: Path, manifest: Manifest, formats: list[str] | None, work: Path,
             with_source: bool, runtimes: list[str] | None = None, consent: str | None = None) -> list[Target]:
    """The source baseline (unless ``with_source`` is off; SKIPPED where it is Python the bundle names and
    ``consent``, the user's ``--source``, does not name it), then every target of the chosen artifacts: each on
    every runtime that runs it (or those of ``runtimes``)."""
    contract = manifest.contract
    batch_axis0 = all(isinstance(s.shape[0], str) and s.shape[0] == contract.inputs[0].shape[0]
                      for s in contract.inputs) if contract.inputs[0].shape else False
    targets = []
    source = manifest.model.source
    # A source that is itself a format (an .onnx file, a SavedModel) is that format's row (copied byte for byte).
    if with_source and kind_of(source).is_format is None:
        why = source_loadable(source) or source_consent(source, consent)
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


def _run_row(t: Target, threads: int, batch: int, inputs: Path, timing: _Timing) -> BenchRow:
    # onnxruntime's intra-op spinning stays on, its default: off, its worker threads sleep and wake on
    # every parallel section, which made mobilenet_v2 1.41x slower at 2 threads here (and cost more CPU
    # per call; scripts/bench_best_config.py). At 1 thread it changes nothing.
    requested = {"threads": threads, "inter_op_threads": 1, "spinning": True, **t.load_settings}
    row = BenchRow(t.name, t.runtime, threads, batch, t.size_bytes, requested)
    if t.status != RowStatus.OK or t.contract is None:
        return replace(row, status=t.status, reason=t.reason)
    rt = RUNTIMES[t.runtime]
    if rt.unavailable() is not None:  # a package or a program it needs is missing here
        return replace(row, status=RowStatus.SKIPPED,
                       reason=f"runtime {t.runtime} not installed ({'; '.join(map(str, rt.missing()))})")
    if batch > 1 and not t.batch_dynamic:
        return replace(row, status=RowStatus.SKIPPED, reason="batch dim is static in this artifact's contract")
    key = f"bench-{t.name}@{t.runtime}-t{threads}-b{batch}"
    job = TimeArtifact(runtime=t.runtime, artifact=str(t.artifact), contract=t.contract, inputs=str(inputs),
                       batch=batch, settings=dict(requested), protocol=timing.protocol.to_dict())
    res = Worker(timing.work / key, timing.logs / f"{key}.log").run(job, timeout=timing.limit)
    if res.status != RunStatus.OK:
        where = "load" if res.status == RunStatus.LOAD_FAILED else "run"
        return replace(row, status=RowStatus.FAILED, reason=f"failed to {where} in {t.runtime}: {res.error}")
    summary = B.summarize(res.samples_ns, batch)
    took = (res.settings or {}).get("threads")
    if took is not None and took != threads:  # e.g. TF.js's wasm backend: at most half the cores the page sees
        summary.warnings.append(f"asked for {threads} threads, the runtime runs {took}: the row is timed at {took}")
    return replace(row, settings=res.settings, runtime_version=res.version, import_s=res.import_s,
                   load_s=res.load_s, first_inference_ms=res.first_inference_ms, rss_start_mb=res.rss_start_mb,
                   rss_after_load_mb=res.rss_after_load_mb, rss_peak_mb=res.rss_peak_mb,
                   warmup_runs=res.warmup_runs, capped=res.capped, samples_ns=res.samples_ns, summary=summary)


def run(bundle_dir: Path | str, options: BenchOptions | None = None,
        progress: Progress | Callable[[str], None] | None = None, **fields: Any) -> BenchOutcome:
    """Time the bundle's targets as ``options`` say (a ``BenchOptions``; keywords, the fields of one, build
    it or override those given: ``run(bundle, threads=[1, 2])``). ``progress``: where the stages (one per
    row) are reported (``progress.py``; a callable receives each message)."""
    opts = replace(options, **fields) if options is not None else BenchOptions(**fields)
    opts.validate()
    progress = as_progress(progress)
    opened = open_bundle(bundle_dir, opts.verify_key)
    bundle_dir, manifest = opened.root, opened.manifest
    check_source_option(manifest.model.source, opts.source)  # one naming another model: exit 2, before any run
    pipe_opts = pipeline.options_of(Path(opts.pipeline) if opts.pipeline else None,
                                    Path(opts.raw_data) if opts.raw_data else None, opts.operating_point, None,
                                    opts.source)
    pipe_timing = None
    work = Path(tempfile.mkdtemp(prefix="deploytool-bench-"))
    try:
        logs = bundle.real_dir(bundle_dir, bundle.LOGS)
    except OSError:
        logs = work
    timing = _Timing(opts.protocol, work, logs, opts.limit)
    try:
        (work / "a").mkdir()
        inputs = _main_inputs(opened, work / "a")
        targets = _targets(bundle_dir, manifest, opts.formats, work / "a", opts.with_source, opts.runtimes,
                           opts.source)
        if pipe_opts is not None:  # first: a pipeline file's error (exit 2) comes before any row is timed
            progress.stage(f"timing the pipeline {pipe_opts.file} on {pipe_opts.raw}")
            reference = work / "a" / "main.reference.npz"
            npz.save(reference, opened.references[MAIN])
            pipe_timing = pipeline.bench_timing(pipe_opts, manifest.contract, reference, work, logs, opts.limit)
        rows: list[BenchRow] = []
        comparison: list[Comparison] | None = None
        if opts.compare is None:
            for t in targets:
                for th in opts.threads:
                    for b in opts.batches:
                        progress.stage(f"timing {t.name} on {t.runtime}, threads={th}, batch={b}")
                        rows.append(_run_row(t, th, b, inputs, timing))
        else:
            rows, comparison = _compare(targets, opts, inputs, timing, progress)
        try:  # the bundle's own reports/ only through real directories inside it; --reports is the user's
            out_dir = Path(opts.reports_dir) if opts.reports_dir else bundle.real_dir(bundle_dir, bundle.REPORTS)
        except OSError as e:
            raise UsageError(f"cannot write reports to {bundle_dir / bundle.REPORTS}: {e.strerror or e} "
                             "(use --reports DIR)") from None
        _relate(rows)
        machine_peak = None
        if opts.gemm_peak and any(r.status == RowStatus.OK for r in rows):
            progress.stage("probing this machine's fp32 GEMM peak")
            machine_peak = peak.measure()
        _achieved(rows, manifest, machine_peak)
        # gemm_peak: deploytool.measuring.peak's probe (fp32 GFLOP/s at 1 and all threads, the library); rows'
        # pct_of_peak
        machine = {**fingerprint(opts.machine_name), "gemm_peak": machine_peak}
        reports = write_bench_reports(manifest, bundle.sha256_file(bundle_dir / MANIFEST), machine, rows,
                                      comparison, opts.protocol, opts.threshold, out_dir,
                                      extra={"pipeline": pipe_timing} if pipe_timing else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    codes = [errors.RUNTIME if r.status == RowStatus.FAILED else errors.BUNDLE if r.status == RowStatus.CORRUPT
             else errors.SKIPPED if r.status == RowStatus.SKIPPED and opts.strict and _required(r, opts.runtimes)
             else errors.OK for r in rows]
    if comparison and any(c.regression for c in comparison):
        codes.append(errors.REGRESSION)
    return BenchOutcome(bundle_dir, manifest, rows, comparison, reports, errors.worst(codes), machine_peak,
                        pipe_timing)


def _required(row: BenchRow, runtimes: list[str] | None) -> bool:
    """Whether ``--strict`` fails a skipped row: on its format's default runtime, one asked for with
    ``--runtime``, or the source baseline; not a further runtime merely absent here (as validate)."""
    fmt = FORMATS.get(row.format)
    return fmt is None or row.runtime == fmt.runtime or row.runtime in (runtimes or [])


def _achieved(rows: list[BenchRow], manifest: Manifest, machine_peak: dict | None) -> None:
    """Each measured row's achieved GFLOP/s (the manifest's FLOPs per sample x batch / p50) and its
    share of the fp32 GEMM peak at the row's threads; int8 rows get GOP/s only (no int8 peak)."""
    flops = manifest.flops.per_sample if manifest.flops else None
    for r in rows:
        if r.status != RowStatus.OK or not flops or not r.p50_ms:
            continue
        r.gflops_per_s = gflops = flops * r.batch / (r.p50_ms / 1e3) / 1e9
        precision = FORMATS[r.format].precision if r.format in FORMATS else "fp32"
        if precision.startswith("int8"):
            r.peak_note = peak.INT8_NOTE
            continue
        ceiling = peak.peak_for(machine_peak, r.threads) if machine_peak else None
        if ceiling:
            r.peak_gflops, r.pct_of_peak = ceiling, 100.0 * gflops / ceiling


def _relate(rows: list[BenchRow]) -> None:
    """Each row of a format that has a full-precision sibling (``Format.compare_to``: tflite_int8 ->
    tflite_fp32, onnx_int8 -> onnx) gets its p50 and size as ratios of the sibling's at the same
    threads and batch: the speed-up and the size a quantization buys, side by side in one run."""
    ok = {(r.format, r.runtime, r.threads, r.batch): r for r in rows if r.status == RowStatus.OK}
    for r in rows:  # the sibling on the same runtime: onnx_int8 on OpenVINO against onnx on OpenVINO
        sibling = FORMATS[r.format].compare_to if r.format in FORMATS else None
        base = ok.get((sibling, r.runtime, r.threads, r.batch)) if sibling else None
        if sibling is None or base is None or r.status != RowStatus.OK or not r.p50_ms or not base.p50_ms:
            continue
        r.relative = Relative(sibling, r.p50_ms / base.p50_ms,
                              r.size_bytes / base.size_bytes if r.size_bytes and base.size_bytes else None)


def _main_inputs(opened: OpenedBundle, work: Path) -> Path:
    """The main golden inputs as checked when the bundle was opened, in scratch space (workers read
    what was checked)."""
    path = work / "main.inputs.npz"
    npz.save(path, opened.inputs[MAIN])
    return path


def _compare(targets: list[Target], opts: BenchOptions, inputs: Path, timing: _Timing,
             progress: Progress) -> tuple[list[BenchRow], list[Comparison]]:
    """Rows of both bundles, measured A B A B ... so drift of a noisy machine hits both alike."""
    assert opts.compare is not None
    baseline = open_bundle(Path(opts.compare))
    (timing.work / "b").mkdir()
    base_targets = {(t.name, t.runtime): t for t in _targets(baseline.root, baseline.manifest, None,
                                                              timing.work / "b", opts.with_source, None, opts.source)}
    base_inputs = _main_inputs(baseline, timing.work / "b")
    protocol, rounds = opts.protocol, opts.rounds
    per_round = replace(timing, protocol=replace(protocol, min_time=protocol.min_time / rounds,
                                                 min_runs=max(1, protocol.min_runs // rounds)))
    rows, comparison = [], []
    for t in targets:
        b_t = base_targets.get((t.name, t.runtime))
        for th in opts.threads:
            for bs in opts.batches:
                runs: dict[str, list[BenchRow]] = {"candidate": [], "baseline": []}
                for r in range(rounds):
                    progress.stage(f"comparing {t.name} on {t.runtime} threads={th} batch={bs}: round "
                                   f"{r + 1}/{rounds}")
                    runs["candidate"].append(_run_row(t, th, bs, inputs, per_round))
                    if b_t is not None:
                        runs["baseline"].append(_run_row(b_t, th, bs, base_inputs, per_round))
                cand = _pool(runs["candidate"], bs)
                rows.append(cand)
                if b_t is None:
                    comparison.append(Comparison(t.name, t.runtime, th, bs, note=NOT_IN_BASELINE, in_baseline=False))
                    continue
                base = _pool(runs["baseline"], bs)
                ok = cand.status == RowStatus.OK and base.status == RowStatus.OK
                ratio = cand.p50_ms / base.p50_ms if ok and cand.p50_ms and base.p50_ms else None
                comparison.append(Comparison(t.name, t.runtime, th, bs, cand.p50_ms, base.p50_ms, ratio,
                                             regression=bool(ratio is not None and ratio > opts.threshold),
                                             note="" if ok else (cand.reason or base.reason)))
    return rows, comparison


def _pool(rounds_rows: list[BenchRow], batch: int) -> BenchRow:
    """One row from several interleaved rounds: samples pooled, first round's start-up figures."""
    bad = next((r for r in rounds_rows if r.status != RowStatus.OK), None)
    if bad is not None:
        return bad
    samples = [s for r in rounds_rows for s in r.samples_ns or []]
    return replace(rounds_rows[0], samples_ns=samples, rounds=len(rounds_rows), summary=B.summarize(samples, batch))


def sorted_rows(rows: list[BenchRow]) -> list[BenchRow]:
    """Measured rows by p90, then the rows that were skipped or failed."""
    return sorted(rows, key=lambda r: (r.status != RowStatus.OK, r.p90_ms or 0.0))


__all__ = ["run", "BenchOptions", "BenchOutcome", "parse_int_list", "sorted_rows"]
