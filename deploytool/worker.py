"""Subprocess entry point: ``python -m deploytool.worker JOB.json``.

One process per framework or runtime: the coordinator never imports torch or TensorFlow. A job is
a JSON file naming what to do and where to write; the result is a JSON file written as soon as
each piece finishes, so a crash (even a segfault inside a converter) loses only the piece that
was running. Converter chatter goes to the log file the coordinator attached to stdout/stderr.

Modes:
  export  load the source (if the stage holds it), write golden data, export a list of formats
  run     load one artifact in one runtime, run every golden sample, write outputs (+ timings)
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

T_START = time.perf_counter()

from deploytool.errors import short_error  # noqa: E402
from deploytool.offline import forbid_network  # noqa: E402

forbid_network()


def _write(path: str, data: dict) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
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


def export(job: dict) -> None:
    from deploytool import npz
    from deploytool.contract import Contract, generate_inputs
    from deploytool.errors import DeployToolError
    from deploytool.formats import ExportContext, plan

    result: dict = {"formats": {}}
    ctx_common: dict = {"model": None, "example_inputs": (), "alt_inputs": ()}
    if job.get("source"):
        from deploytool.sources import loader

        try:
            loaded = loader(job["source"]).load(job["source"])
        except DeployToolError as e:
            result["source_error"] = {"message": str(e), "exit_code": e.exit_code, "traceback": traceback.format_exc()}
            _write(job["result"], result)
            return
        except Exception as e:  # noqa: BLE001 - any failure of user code is a model error
            result["source_error"] = {"message": f"model {job['model_name']!r}: {short_error(e)}",
                                      "exit_code": 3, "traceback": traceback.format_exc()}
            _write(job["result"], result)
            return
        contract = loaded.contract
        result["contract"] = contract.to_dict()
        result["description"] = loaded.description
        g = job["golden"]
        result["sets"] = {}
        for item in g["sets"]:
            if item["name"] != "main" and not contract.dynamic_dims():
                continue
            if item["name"] == "main":
                dims = contract.dim_sizes("example", batch_one=True)
                inputs = loaded.golden(item["samples"], g["seed"])
            else:  # a second shape for every dynamic dim: batch > 1, another sequence length
                dims = contract.dim_sizes("alt")
                inputs = generate_inputs(contract, item["samples"], g["seed"] + 1, dims)
            try:
                refs = loaded.reference(inputs)
            except Exception as e:  # noqa: BLE001 - the user's forward() failing is a model error
                what = str(e) if isinstance(e, ValueError) else f"forward() on the {item['name']} golden set " \
                                                                 f"raised {short_error(e)}"
                result["source_error"] = {"message": f"model {job['model_name']!r}: {what}", "exit_code": 3,
                                          "traceback": traceback.format_exc()}
                _write(job["result"], result)
                return
            npz.save(item["inputs"], inputs)
            npz.save(item["reference"], refs)
            result["sets"][item["name"]] = {"dims": dims, "samples": len(next(iter(inputs.values())))}
        result["versions"] = loaded.versions or {}
        ctx_common = {"model": loaded.module, "example_inputs": loaded.example_inputs, "alt_inputs": loaded.alt_inputs,
                      "source_path": loaded.path}
        _write(job["result"], result)
    else:
        contract = Contract.from_dict(job["contract"])

    options: dict = dict(job.get("options", {}))
    formats = plan(job.get("framework", "torch"))  # each format as made from this kind of source
    for item in job["formats"]:
        fmt = formats[item["name"]]
        parent_contract = item.get("parent_contract")
        if fmt.parent and parent_contract is None:
            done = result["formats"].get(fmt.parent, {})
            if done.get("status") != "ok":
                result["formats"][fmt.name] = {"status": "skipped", "seconds": 0.0,
                                               "error": f"not exported: its parent {fmt.parent} failed"}
                _write(job["result"], result)
                continue
            parent_contract = done["contract"]
        ctx = ExportContext(
            model_name=job["model_name"], contract=contract, out_path=Path(item["out"]),
            workdir=Path(job["workdir"]), parent_path=Path(item["parent_path"]) if item.get("parent_path") else None,
            parent_contract=Contract.from_dict(parent_contract) if parent_contract else None,
            options=options, **ctx_common)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        log_start = _log_size(job.get("log"))
        print(f"=== deploytool: exporting {fmt.name} ({fmt.exporter}) ===", flush=True)
        t0 = time.perf_counter()
        try:
            res = fmt.export(ctx)
            entry = {"status": "ok", "seconds": time.perf_counter() - t0, "contract": res.contract.to_dict(),
                     "exporter": res.exporter or fmt.exporter, "exporter_version": res.exporter_version,
                     "options": res.options, "notes": res.notes}
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a converter failure (even a sys.exit) is data
            tb = traceback.format_exc()
            print(tb, flush=True)
            log = _log_tail(job.get("log"), log_start)
            try:
                reason = fmt.explain(e, log, ctx) if fmt.explain else short_error(e)
            except Exception:  # noqa: BLE001 - an explainer must never hide the real error
                reason = short_error(e)
            entry = {"status": "failed", "seconds": time.perf_counter() - t0, "error": reason, "traceback": tb}
        result["formats"][fmt.name] = entry
        _write(job["result"], result)


def run(job: dict) -> None:
    import importlib

    import numpy as np

    from deploytool import contract as C
    from deploytool import npz
    from deploytool.runtimes import RUNTIMES

    rt = RUNTIMES[job["runtime"]]
    result: dict = {"status": "running", "runtime": rt.name, "outputs": {},
                    "worker_start_s": STARTUP_S if STARTUP_S is not None else time.perf_counter() - T_START}
    contract = C.Contract.from_dict(job["contract"])
    t0 = time.perf_counter()
    try:
        for package in rt.packages:  # import time is reported apart from load
            importlib.import_module(package)
        result["import_s"] = time.perf_counter() - t0 + PRELOAD_S
        result["version"] = rt.version()
        t1 = time.perf_counter()
        session = rt.load(Path(job["artifact"]), job.get("settings", {}))
        result["load_s"] = time.perf_counter() - t1
        result["settings"] = rt.settings(session)
    except Exception as e:  # noqa: BLE001
        result.update(status="load_failed", error=short_error(e), traceback=traceback.format_exc())
        _write(job["result"], result)
        return
    for item in job["sets"]:
        inputs = npz.load(item["inputs"])
        n = len(next(iter(inputs.values())))
        outs: dict[str, list] = {name: [] for name in contract.output_names}
        try:
            for i in range(n):
                feeds = C.to_artifact(contract, {k: v[i] for k, v in inputs.items()})
                t1 = time.perf_counter()
                got = C.from_artifact(contract, rt.run(session, feeds))
                if "first_inference_s" not in result:
                    result["first_inference_s"] = time.perf_counter() - t1
                for name in contract.output_names:
                    outs[name].append(np.asarray(got[name]))
            stacked = {k: np.stack(v) for k, v in outs.items()}
        except Exception as e:  # noqa: BLE001
            where = f" on the {item['name']} set" if item["name"] != "main" else ""
            result.update(status="run_failed", error=short_error(e) + where, traceback=traceback.format_exc())
            _write(job["result"], result)
            return
        npz.save(item["outputs"], stacked)
        result["outputs"][item["name"]] = item["outputs"]
    result.update(status="ok")
    _write(job["result"], result)


def bench(job: dict) -> None:
    """Time one artifact on one runtime at one (threads, batch) setting, from a cold import."""
    import importlib
    import resource

    from deploytool import bench as B
    from deploytool import contract as C
    from deploytool import npz
    from deploytool.runtimes import RUNTIMES

    def rss_mb() -> float:  # peak resident set size of this process so far (Linux: KiB)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rt = RUNTIMES[job["runtime"]]
    result: dict = {"status": "running", "runtime": rt.name, "worker_start_s": time.perf_counter() - T_START,
                    "rss_start_mb": rss_mb()}
    contract = C.Contract.from_dict(job["contract"])
    feeds = _batched_feeds(contract, npz.load(job["inputs"]), int(job["batch"]))
    try:
        t0 = time.perf_counter()
        for package in rt.packages:
            importlib.import_module(package)
        result["import_s"] = time.perf_counter() - t0
        result["version"] = rt.version()
        t0 = time.perf_counter()
        session = rt.load(Path(job["artifact"]), job.get("settings", {}))
        result["load_s"] = time.perf_counter() - t0
        result["rss_after_load_mb"] = rss_mb()
        result["settings"] = rt.settings(session)
    except Exception as e:  # noqa: BLE001
        result.update(status="load_failed", error=short_error(e), traceback=traceback.format_exc())
        _write(job["result"], result)
        return
    try:
        t0 = time.perf_counter()
        C.from_artifact(contract, rt.run(session, feeds[0]))  # the output mapping is checked once, untimed
        result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3
        run = rt.run
        m = B.measure(lambda i: run(session, feeds[i % len(feeds)]), B.Protocol(**job["protocol"]))
    except Exception as e:  # noqa: BLE001
        result.update(status="run_failed", error=short_error(e), traceback=traceback.format_exc())
        _write(job["result"], result)
        return
    result["rss_peak_mb"] = rss_mb()
    result.update(status="ok", **m)
    _write(job["result"], result)


def _batched_feeds(contract, inputs: dict, batch: int) -> list[dict]:
    """Artifact feeds of ``batch`` golden samples each (concatenated on the batch axis, axis 0)."""
    import numpy as np

    from deploytool import contract as C

    n = len(next(iter(inputs.values())))
    feeds = []
    for k in range(n):
        idx = [(k + j) % n for j in range(batch)]
        sample = {name: np.concatenate([arr[i] for i in idx], axis=0) if batch > 1 else arr[k]
                  for name, arr in inputs.items()}
        feeds.append(C.to_artifact(contract, sample))
    return feeds


PRELOAD_S = 0.0  # time spent importing the preloaded packages
STARTUP_S: float | None = None  # interpreter + deploytool start-up, before any preload


def _preload(names: list[str]) -> None:
    """Import what the coming job needs while the coordinator is still preparing it."""
    global PRELOAD_S, STARTUP_S
    import importlib

    t0 = time.perf_counter()
    STARTUP_S = t0 - T_START
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the job itself will report a missing package properly
            pass
    PRELOAD_S = time.perf_counter() - t0


def _wait_for(path: Path) -> bool:
    """Wait for the job file; give up if the coordinator that started us is gone."""
    import os

    parent = os.getppid()
    while not path.exists():
        if os.getppid() != parent:
            return False
        time.sleep(0.01)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_path = Path(argv[0])
    if "--preload" in argv:
        _preload(argv[argv.index("--preload") + 1].split(","))
    if not _wait_for(job_path):
        return 3
    job = json.loads(job_path.read_text())
    {"export": export, "run": run, "bench": bench}[job["mode"]](job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
