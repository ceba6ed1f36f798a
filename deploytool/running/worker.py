"""Subprocess entry point: ``python -m deploytool.running.worker BASE [--preload PKG,...]``.

One process per framework or runtime: the coordinator never imports torch or TensorFlow. The
worker takes typed jobs (``jobs.py``) from the numbered files ``BASE.<n>.job.json`` one at a time
and answers each with ``BASE.<n>.reply.json`` (see ``spawn.py``), so a crash (even a segfault
inside a converter) loses only the job that was running. It decides nothing: the coordinator says
which format to make from which parent, which golden sets to write, which sets to run. Converter
chatter goes to the log file the coordinator attached to stdout/stderr.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploytool.runtimes import Timed

T_START = time.perf_counter()

PARENT_ENV = "DEPLOYTOOL_COORDINATOR_PID"  # spawn.PARENT_ENV (not imported: this runs before any import)
PR_SET_PDEATHSIG = 1
WATCH_S = 0.5


def _end_with_coordinator() -> int:
    """End this worker when the coordinator that started it dies, whatever the worker is doing: a converter
    can spend minutes in C code holding the GIL, so on Linux the kernel does it (PR_SET_PDEATHSIG:
    SIGKILL when the parent goes; spawn.py starts every worker from a thread that lives as long as the
    coordinator). A watcher thread also checks every WATCH_S (elsewhere, or where prctl is refused).
    Returns the coordinator's pid."""
    import signal
    import threading

    coordinator = int(os.environ.get(PARENT_ENV) or os.getppid())
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != coordinator:  # it was gone before we asked: re-parented already
        os._exit(3)

    def watch() -> None:
        while os.getppid() == coordinator:
            time.sleep(WATCH_S)
        os._exit(3)

    threading.Thread(target=watch, name="deploytool-coordinator-watch", daemon=True).start()
    return coordinator


# Only as the worker process (python -m): imported elsewhere (tests), nothing here may watch or end anything.
COORDINATOR = _end_with_coordinator() if __name__ == "__main__" else os.getppid()

from deploytool.core.errors import DeployToolError, short_error  # noqa: E402
from deploytool.core.target import NATIVE  # noqa: E402
from deploytool.running import jobs  # noqa: E402
from deploytool.running.offline import forbid_network  # noqa: E402
from deploytool.running.pipeline_worker import run_pipeline  # noqa: E402

forbid_network()

PRELOAD_S = 0.0  # time spent importing the preloaded packages
STARTUP_S: float | None = None  # interpreter + deploytool start-up, before any preload


class _State:
    """What a worker keeps between the jobs of one export stage: the loaded source."""

    loaded: Any = None  # sources.LoadedModel
    model_name = "?"


def _write(path: str, reply: jobs.Reply) -> None:
    from deploytool.core import records

    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(records.dump(reply), indent=1, default=str))
    tmp.replace(p)


def _log_tail(log: str | None, start: int) -> str:
    sys.stdout.flush()
    sys.stderr.flush()
    if not log:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _log_size(log: str | None) -> int:
    try:
        return Path(log).stat().st_size if log else 0
    except OSError:
        return 0


def load_source(job: jobs.LoadSource, env: dict) -> jobs.SourceLoaded:
    from deploytool.sources import load_source as load

    name = _State.model_name = str(job.source.get("name", "?"))
    try:
        loaded = load(job.source)
    except DeployToolError as e:
        return jobs.SourceLoaded(ok=False, error=str(e), exit_code=e.exit_code, traceback=traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - any failure of user code is a model error
        return jobs.SourceLoaded(ok=False, error=f"model {name!r}: {short_error(e)}", traceback=traceback.format_exc())
    _State.loaded = loaded
    return jobs.SourceLoaded(ok=True, contract=loaded.contract, description=loaded.description,
                             versions=dict(loaded.versions or {}), labelled=loaded.labelled is not None,
                             calibration=loaded.calibration is not None, golden_data=loaded.golden_data)


def write_golden(job: jobs.WriteGolden, env: dict) -> jobs.GoldenWritten:
    """Draw each planned set's inputs, run the source on them, write both."""
    from deploytool.checking import families, golden
    from deploytool.core import contract as C
    from deploytool.core import npz
    from deploytool.core.contract import check_inputs, generate_inputs
    from deploytool.sources import _float64 as float64

    loaded = _State.loaded
    if loaded is None:
        return jobs.GoldenWritten(ok=False, error="golden job before the source was loaded", exit_code=1)
    written, labelled_output = {}, None
    drawn: dict[str, dict] = {}  # each set's inputs, for the sets made from another (perturbed)
    flops_per_sample: float | None = None
    flops_method = "" if loaded.flops is not None else "not counted for this kind of source"
    root = Path(job.root)
    oracle = float64.Writer(loaded) if any(p.oracle for p in job.sets) else None  # export --oracle float64
    for plan in job.sets:
        try:
            labels = None
            if plan.generator == "source":
                inputs = loaded.golden(plan.samples, plan.seed, plan.dims)
            elif plan.generator == "labelled":
                inputs, labels, labelled_output = loaded.labelled()
                labelled_output = labelled_output or golden.labelled_output(loaded.contract)
                labels = golden.check_labels(loaded.contract, labels, labelled_output,
                                             len(next(iter(inputs.values()))), "the source's labelled data")
            elif plan.generator == "given":  # written by the coordinator from --data
                inputs = npz.load(root / plan.inputs)
            elif plan.generator in (families.EDGE, families.PERTURBED):  # input families (checking/families.py)
                inputs = families.edge_inputs(loaded.contract, plan.samples, plan.seed, plan.dims) \
                    if plan.generator == families.EDGE else \
                    families.perturbed_inputs(loaded.contract, drawn[plan.base or golden.MAIN], plan.samples, plan.seed)
            else:
                inputs = generate_inputs(loaded.contract, plan.samples, plan.seed, plan.dims)
            check_inputs(loaded.contract, inputs, f"the {plan.name} golden inputs")
            refs = loaded.reference(inputs)
        except Exception as e:  # noqa: BLE001 - the user's golden_inputs() or forward() failing is a model error
            what = str(e) if isinstance(e, ValueError) else \
                f"forward() on the {plan.name} golden set raised {short_error(e)}"
            return jobs.GoldenWritten(ok=False, error=f"model {_State.model_name!r}: {what}",
                                      traceback=traceback.format_exc())
        drawn[plan.name] = inputs
        if plan.family in (families.EDGE, families.PERTURBED):  # where the source itself is NaN/Inf: left out
            inputs, refs, _ = families.finite_samples(inputs, refs)  # the coordinator notes how many
            if not len(next(iter(refs.values()))):  # none left: the set is skipped (families.after_writing)
                written[plan.name] = 0
                continue
        bad = C.nonfinite_sample(refs)
        if bad is not None:  # every check against it would be vacuous there: refuse, naming the sample
            output, sample = bad
            return jobs.GoldenWritten(ok=False, error=f"model {_State.model_name!r}: the source model's output "
                                      f"{output!r} is NaN/Inf on {plan.name} golden sample {sample} (inputs: "
                                      f"{C.describe_sample(inputs, sample)}); nothing can be checked against it")
        if plan.name == golden.MAIN and loaded.flops is not None:
            try:
                flops_per_sample, flops_method = loaded.flops(inputs)
            except Exception as e:  # noqa: BLE001 - a count that fails is reported, never fatal
                flops_method = f"not counted: {short_error(e)}"
        npz.save(root / plan.inputs, inputs)
        npz.save(root / plan.reference, refs)
        if oracle is not None and plan.oracle:
            oracle.add(plan.name, root / plan.oracle, inputs, refs)
        if labels is not None and plan.labels:
            npz.save(root / plan.labels, {"labels": labels})
        written[plan.name] = len(next(iter(inputs.values())))
    calibration_samples = 0
    if job.calibration and loaded.calibration is not None:
        dims = loaded.contract.dim_sizes("example", batch_one=True)
        try:
            calib = loaded.calibration(job.calibration_samples, job.calibration_seed, dims)
            check_inputs(loaded.contract, calib, "the source's calibration data")
        except Exception as e:  # noqa: BLE001 - the module's calibration_inputs() failing is a model error
            return jobs.GoldenWritten(ok=False, error=f"model {_State.model_name!r}: calibration data: "
                                      f"{short_error(e)}", traceback=traceback.format_exc())
        npz.save(root / job.calibration, calib)
        calibration_samples = len(next(iter(calib.values())))
    return jobs.GoldenWritten(ok=True, samples=written, calibration_samples=calibration_samples,
                              labelled_output=labelled_output, flops_per_sample=flops_per_sample,
                              flops_method=flops_method, oracle=oracle.result() if oracle is not None else {})


def export_format(job: jobs.ExportFormat, env: dict) -> jobs.FormatExported:
    from deploytool.formats import ExportContext, RoutesFailed, names_merged, plan

    fmt = plan(job.framework)[job.format]  # the format as made from this kind of source
    loaded = _State.loaded
    ctx = ExportContext(
        model_name=job.model_name, framework=job.framework, contract=job.contract, out_path=Path(job.out),
        workdir=Path(job.workdir),
        parent_path=Path(job.parent_path) if job.parent_path else None, parent_contract=job.parent_contract,
        options=job.options, model=loaded.module if loaded else None,
        example_inputs=loaded.example_inputs if loaded else (), alt_inputs=loaded.alt_inputs if loaded else (),
        source_path=loaded.path if loaded else None,
        calibration=Path(job.calibration) if job.calibration else None)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    log_start = _log_size(env.get("log"))
    print(f"=== deploytool: exporting {fmt.name} ({fmt.exporter}) ===", flush=True)
    t0 = time.perf_counter()
    try:
        res = fmt.convert(ctx)
        merged = names_merged(res.contract)
        if merged:  # decided here, for every format: the coordinator removes the artifact
            return jobs.FormatExported(status=jobs.ArtifactStatus.FAILED, seconds=time.perf_counter() - t0,
                                       error=f"{res.exporter or fmt.exporter}: {merged}")
        return jobs.FormatExported(status=jobs.ArtifactStatus.OK, seconds=time.perf_counter() - t0,
                                   contract=res.contract, exporter=res.exporter or fmt.exporter,
                                   exporter_version=res.exporter_version, options=res.options, notes=res.notes,
                                   route=res.route)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a converter failure (even a sys.exit) is data
        tb = traceback.format_exc()
        print(tb, flush=True)
        log = _log_tail(env.get("log"), log_start)
        try:
            # Every route failed: each was explained as it failed (RoutesFailed says them all).
            reason = str(e) if isinstance(e, RoutesFailed) else fmt.explain(e, log, ctx) if fmt.explain \
                else short_error(e)
        except Exception:  # noqa: BLE001 - an explainer must never hide the real error
            reason = short_error(e)
        return jobs.FormatExported(status=jobs.ArtifactStatus.FAILED, seconds=time.perf_counter() - t0,
                                   error=reason, traceback=tb)


def _runtime(name: str, platform: str = NATIVE) -> Any:
    """The runtime ``name`` (a ``deploytool.runtimes.Runtime``), on an emulated CPU where ``platform`` names one."""
    from deploytool.runtimes import RUNTIMES

    if platform == NATIVE:
        return RUNTIMES[name]
    from deploytool import platforms

    return platforms.runtime(name, platform)


def _open(runtime_name: str, artifact: str, settings: dict, reply: Any, platform: str = NATIVE) -> Any:
    """Import the runtime (timed apart from load), load the artifact; fills ``reply``'s fields."""
    rt = _runtime(runtime_name, platform)
    reply.runtime = rt.name
    t0 = time.perf_counter()
    for package in rt.packages:
        importlib.import_module(package)
    reply.import_s = time.perf_counter() - t0 + PRELOAD_S
    reply.version = rt.version()
    t1 = time.perf_counter()
    session = rt.load(Path(artifact), settings)
    reply.load_s = time.perf_counter() - t1
    reply.settings = rt.reported_settings(session)  # threads, inter_op_threads, spinning + the runtime's own
    return session


def run_artifact(job: jobs.RunArtifact, env: dict) -> jobs.ArtifactRan:
    import numpy as np

    from deploytool.core import contract as C
    from deploytool.core import npz

    reply = jobs.ArtifactRan(status=jobs.RunStatus.OK, runtime=job.runtime,
                             worker_start_s=STARTUP_S if STARTUP_S is not None else time.perf_counter() - T_START)
    try:
        rt = _runtime(job.runtime, job.platform)
        session = _open(job.runtime, job.artifact, job.settings, reply, job.platform)
    except Exception as e:  # noqa: BLE001
        reply.status, reply.error, reply.traceback = jobs.RunStatus.LOAD_FAILED, short_error(e), traceback.format_exc()
        return reply
    run, contract = rt.run, job.contract
    declared = rt.describe(session)
    mismatches = C.declared_mismatches(contract, declared) if declared is not None else []
    if mismatches:  # fed by name it might still run; a positional consumer would get it wrong
        reply.status, reply.error = jobs.RunStatus.CONTRACT_MISMATCH, "; ".join(mismatches)
        return reply
    for item in job.sets:
        inputs = npz.load(item.inputs)
        n = len(next(iter(inputs.values())))
        outs: dict[str, list] = {name: [] for name in contract.output_names}
        try:
            for i in range(n):
                feeds = C.to_artifact(contract, {k: v[i] for k, v in inputs.items()})
                t1 = time.perf_counter()
                raw = run(session, feeds)
                if reply.first_inference_s is None:
                    reply.first_inference_s = time.perf_counter() - t1
                    named = [s.feed_name for s in contract.outputs]
                    extra, missing = sorted(set(raw) - set(named)), [n for n in named if n not in raw]
                    if extra or missing:  # e.g. a TorchScript module returning another number of outputs
                        reply.status = jobs.RunStatus.CONTRACT_MISMATCH
                        reply.error = f"the artifact returns outputs {sorted(raw)}, its contract names {named}"
                        return reply
                got = C.from_artifact(contract, raw)
                for name in contract.output_names:
                    outs[name].append(np.asarray(got[name]))
            stacked = {k: np.stack(v) for k, v in outs.items()}
        except Exception as e:  # noqa: BLE001
            where = f" on the {item.name} set" if item.name != "main" else ""
            reply.status, reply.error = jobs.RunStatus.RUN_FAILED, short_error(e) + where
            reply.traceback = traceback.format_exc()
            return reply
        npz.save(item.outputs, stacked)
        reply.outputs[item.name] = item.outputs
    if job.steps is not None:  # the multi-step check, on the same session (running/stepping.py)
        from deploytool.running.stepping import run_steps

        run_steps(job.steps, run, session, contract, reply)
    return reply


def time_artifact(job: jobs.TimeArtifact, env: dict) -> jobs.ArtifactTimed:
    """Time one artifact on one runtime at one (threads, batch) setting, from a cold import."""
    import resource
    from dataclasses import asdict

    from deploytool.core import contract as C
    from deploytool.core import npz
    from deploytool.measuring import timing
    from deploytool.runtimes import RUNTIMES

    def rss_mb() -> float:
        """Peak resident set size of this process so far, MiB. Linux: VmHWM, the high-water mark of this
        program's own memory; ru_maxrss is kept across exec, so a worker started from a larger
        coordinator would report the coordinator's size (every light runtime showed the same figure)."""
        try:
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration, ValueError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)

    reply = jobs.ArtifactTimed(status=jobs.RunStatus.OK, runtime=job.runtime,
                               worker_start_s=time.perf_counter() - T_START, rss_start_mb=rss_mb())
    feeds = _batched_feeds(job.contract, npz.load(job.inputs), job.batch)
    try:
        session = _open(job.runtime, job.artifact, job.settings, reply)
        reply.rss_after_load_mb = rss_mb()
    except Exception as e:  # noqa: BLE001
        reply.status, reply.error, reply.traceback = jobs.RunStatus.LOAD_FAILED, short_error(e), traceback.format_exc()
        return reply
    rt = RUNTIMES[job.runtime]
    run, protocol = rt.run, timing.Protocol(**job.protocol)
    try:
        t0 = time.perf_counter()
        C.from_artifact(job.contract, run(session, feeds[0]))  # the output mapping is checked once, untimed
        reply.first_inference_ms = (time.perf_counter() - t0) * 1e3
        if rt.time is not None:  # a runtime outside Python (a C++ runner, a browser page) times itself
            m = asdict(_self_timed(rt.name, rt.time(session, feeds, protocol)))
        else:
            m = timing.measure(lambda i: run(session, feeds[i % len(feeds)]), protocol)
    except Exception as e:  # noqa: BLE001
        reply.status, reply.error, reply.traceback = jobs.RunStatus.RUN_FAILED, short_error(e), traceback.format_exc()
        return reply
    reply.rss_peak_mb = rss_mb()
    reply.samples_ns, reply.warmup_runs = m["samples_ns"], m["warmup_runs"]
    reply.measure_s, reply.capped = m["measure_s"], m["capped"]
    return reply


def _self_timed(runtime: str, timed: Any) -> Timed:
    """What a self-timing runtime returned, checked: a ``runtimes.Timed`` with samples in ns (plain ints)."""
    from deploytool.runtimes import Timed

    if not isinstance(timed, Timed):
        raise TypeError(f"runtime {runtime}: time() returned {type(timed).__name__}, not runtimes.Timed")
    samples = [int(s) for s in timed.samples_ns]
    if not samples or min(samples) < 0:
        raise ValueError(f"runtime {runtime}: time() returned no samples or a negative one")
    return Timed(samples, int(timed.warmup_runs), float(timed.measure_s), bool(timed.capped))


def expose_tensors(job: jobs.ExposeTensors, env: dict) -> jobs.TensorsExposed:
    """Run one sample through the artifact with every intermediate tensor it can expose kept."""
    from dataclasses import asdict

    from deploytool.checking.localise import Limits
    from deploytool.core import contract as C
    from deploytool.core import npz
    from deploytool.expose import expose

    try:
        sample = npz.load(job.inputs)
        got = expose(job.runtime, job.artifact, C.to_artifact(job.contract, sample), Limits(**job.limits))
    except Exception as e:  # noqa: BLE001 - a runtime that cannot expose its tensors is data
        return jobs.TensorsExposed(status=jobs.RunStatus.RUN_FAILED, error=short_error(e),
                                   traceback=traceback.format_exc())
    npz.save(job.out, got.tensors)
    return jobs.TensorsExposed(status=jobs.RunStatus.OK, nodes=[asdict(n) for n in got.nodes], inputs=got.inputs,
                               tensors=job.out, total=got.total, truncated=got.truncated)


def _batched_feeds(contract, inputs: dict, batch: int) -> list[dict]:
    """Artifact feeds of ``batch`` golden samples each (concatenated on the batch axis, axis 0), each
    array 64-byte aligned (``buffers``), made once before timing."""
    import numpy as np

    from deploytool.core import buffers
    from deploytool.core import contract as C

    n = len(next(iter(inputs.values())))
    feeds = []
    for k in range(n):
        idx = [(k + j) % n for j in range(batch)]
        sample = {name: np.concatenate([arr[i] for i in idx], axis=0) if batch > 1 else arr[k]
                  for name, arr in inputs.items()}
        feeds.append({k: buffers.aligned(v) for k, v in C.to_artifact(contract, sample).items()})
    return feeds


HANDLERS: dict[type, Callable[[Any, dict], jobs.Reply]] = {
    jobs.LoadSource: load_source, jobs.WriteGolden: write_golden, jobs.ExportFormat: export_format,
    jobs.RunArtifact: run_artifact, jobs.TimeArtifact: time_artifact, jobs.ExposeTensors: expose_tensors,
    jobs.WriteSteps: lambda job, env: _write_steps(job), jobs.RunPipeline: lambda job, env: run_pipeline(job),
}


def _write_steps(job: jobs.WriteSteps) -> jobs.StepsWritten:
    from deploytool.running.stepping import write_steps

    return write_steps(job, _State.loaded, _State.model_name)


def _preload(names: list[str]) -> None:
    """Import what the coming job needs while the coordinator is still preparing it."""
    global PRELOAD_S, STARTUP_S
    t0 = time.perf_counter()
    STARTUP_S = t0 - T_START
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the job itself will report a missing package properly
            pass
    PRELOAD_S = time.perf_counter() - t0


def _wait_for(path: Path) -> bool:
    """Wait for the next job file; give up if the coordinator that started us is gone (compared with the
    pid it was at start: a worker re-parented while it was busy must not take its new parent for it)."""
    while not path.exists():
        if os.getppid() != COORDINATOR:
            return False
        time.sleep(0.01)
    return True


def main(argv: list[str] | None = None) -> int:
    from deploytool.running.spawn import job_path

    argv = sys.argv[1:] if argv is None else argv
    base = Path(argv[0])
    if "--preload" in argv:
        _preload(argv[argv.index("--preload") + 1].split(","))
    n = 0
    while True:
        n += 1
        path = job_path(base, n)
        if not _wait_for(path):
            return 3
        job, env = jobs.decode(json.loads(path.read_text()))
        if isinstance(job, jobs.Exit):
            return 0
        _write(env["reply"], HANDLERS[type(job)](job, env))
        if env.get("last"):
            return 0


if __name__ == "__main__":
    sys.exit(main())
