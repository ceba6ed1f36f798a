"""The worker side of ``validate --pipeline``: import the user's pipeline file and run its functions.

User code never runs in the coordinator. This imports the file (a ``--pipeline FILE.py``, or the model file that
defines the functions) in a worker process and calls, as the job says, ``preprocess(raw)`` and
``preprocess_deployed(raw)`` on the raw samples, or ``postprocess(outputs)`` on the reference's and each target's
outputs (the built-in one from ``checking/decisions.py`` where the file has none). Any exception of the user's code
becomes one line naming the function and the file. Nothing here is imported by the coordinator's own code paths
beyond this module's name: numpy and the user's imports load only when a job runs.
"""
from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from deploytool.core.errors import short_error
from deploytool.running import jobs

FUNCTIONS = ("preprocess", "preprocess_deployed", "postprocess")
CONSTANTS = ("THRESHOLD", "TOP_K", "NEAR_BAND")


class PipelineError(Exception):
    """A failure of the user's pipeline code, already one line."""


def _import(path: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"deploytool_user_pipeline_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"{path}: cannot be imported as a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses and torch.jit read a class's module from sys.modules
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise PipelineError(f"importing {path} raised {short_error(e)}") from e
    return mod


def _call(mod: Any, name: str, path: str, arg: Any, hint: str = "") -> Any:
    try:
        return getattr(mod, name)(arg)
    except KeyError as e:
        raise PipelineError(f"{name}() in {path} raised KeyError: {e}{hint}") from e
    except Exception as e:
        raise PipelineError(f"{name}() in {path} raised {short_error(e)}{hint}") from e


def _as_inputs(result: Any, names: list[str], what: str) -> dict:
    import numpy as np

    if isinstance(result, dict):
        return {str(k): np.ascontiguousarray(np.asarray(v)) for k, v in result.items()}
    if len(names) == 1 and result is not None:
        return {names[0]: np.ascontiguousarray(np.asarray(result))}
    raise PipelineError(f"{what} returned {type(result).__name__}; expected a dict of the model's inputs "
                        f"{names}")


def run_pipeline(job: jobs.RunPipeline) -> jobs.PipelineRan:
    reply = jobs.PipelineRan(ok=True)
    try:
        mod = _import(job.file)
        reply.functions = [f for f in FUNCTIONS if callable(getattr(mod, f, None))]
        reply.constants = {c: getattr(mod, c) for c in CONSTANTS if isinstance(getattr(mod, c, None), (int, float))}
        if job.stage == "pre":
            _pre(job, mod, reply)
        elif job.stage == "time":
            _time(job, mod, reply)
        else:
            _post(job, mod, reply)
    except PipelineError as e:
        return jobs.PipelineRan(ok=False, error=str(e), traceback=traceback.format_exc())
    return reply


def _pre(job: jobs.RunPipeline, mod: Any, reply: jobs.PipelineRan) -> None:
    from deploytool.core import npz

    if "preprocess" not in reply.functions:
        raise PipelineError(f"{job.file} defines no preprocess(raw) function")
    assert job.raw is not None and job.out is not None
    raw = npz.load(job.raw)
    arg: Any = next(iter(raw.values())) if len(raw) == 1 else raw
    if len(raw) == 1:
        key, a = next(iter(raw.items()))
        hint = f" (the raw data holds one array, {key!r} {a.dtype}{list(a.shape)}, passed to it as an array)"
    else:
        hint = f" (the raw data's keys: {', '.join(sorted(raw))}, passed to it as a dict)"
    n = len(next(iter(raw.values())))
    t0 = time.perf_counter()
    inputs = _as_inputs(_call(mod, "preprocess", job.file, arg, hint), job.input_names,
                        f"preprocess() in {job.file}")
    reply.pre_ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)
    reply.samples = n
    npz.save(job.out, inputs)
    if job.deployed and "preprocess_deployed" in reply.functions:
        deployed = _as_inputs(_call(mod, "preprocess_deployed", job.file, arg, hint), job.input_names,
                              f"preprocess_deployed() in {job.file}")
        npz.save(job.deployed, deployed)


def _post(job: jobs.RunPipeline, mod: Any, reply: jobs.PipelineRan) -> None:
    import numpy as np

    from deploytool.checking import decisions
    from deploytool.core import npz

    user = "postprocess" in reply.functions
    op = None
    if not user:
        fields = job.operating_point or {}
        op = decisions.OperatingPoint(**fields) if fields else decisions.OperatingPoint()
        if job.classifier_output is None:
            raise PipelineError(f"{job.file} defines no postprocess(outputs) and the model has no output for the "
                                "built-in one")
    for name, path in job.outputs.items():
        outputs = npz.load(path)
        outputs = {k: (v[:, 0] if k in job.unbatch and v.ndim >= 2 and v.shape[1] == 1 else v)
                   for k, v in outputs.items()}
        n = len(next(iter(outputs.values())))
        t0 = time.perf_counter()
        if user:
            result = _call(mod, "postprocess", job.file, outputs)
            try:
                got = decisions.normalise(result, n, f"postprocess() in {job.file}")
            except ValueError as e:
                raise PipelineError(str(e)) from None
        else:
            assert op is not None and job.classifier_output is not None
            got = decisions.builtin(np.asarray(outputs[job.classifier_output]), op)
        reply.post_ms[name] = (time.perf_counter() - t0) * 1e3 / max(n, 1)
        reply.kind = got.kind
        npz.save(job.decisions[name], decisions.encode(got))


def _time(job: jobs.RunPipeline, mod: Any, reply: jobs.PipelineRan) -> None:
    """bench --pipeline: preprocess on each raw sample alone, postprocess on each sample of each outputs file alone
    (batches of one, after one untimed call); the medians, in ms, in ``pre_ms`` and ``post_ms``."""
    import statistics

    import numpy as np

    from deploytool.checking import decisions
    from deploytool.core import npz

    if "preprocess" not in reply.functions:
        raise PipelineError(f"{job.file} defines no preprocess(raw) function")
    assert job.raw is not None
    raw = npz.load(job.raw)
    n = len(next(iter(raw.values())))

    def one(i: int) -> Any:
        return next(iter(raw.values()))[i:i + 1] if len(raw) == 1 else {k: v[i:i + 1] for k, v in raw.items()}

    times = []
    for i in [0, *range(n)]:
        arg = one(i)
        t0 = time.perf_counter()
        _call(mod, "preprocess", job.file, arg)
        times.append(time.perf_counter() - t0)
    reply.pre_ms, reply.samples = statistics.median(times[1:]) * 1e3, n
    user = "postprocess" in reply.functions
    c = reply.constants  # without --operating-point, the file's own THRESHOLD / TOP_K, as validate takes them
    op = decisions.OperatingPoint(**job.operating_point) if job.operating_point else \
        decisions.OperatingPoint("threshold", float(c["THRESHOLD"])) if 0 < c.get("THRESHOLD", 0) < 1 else \
        decisions.OperatingPoint("top-k", float(int(c["TOP_K"]))) if c.get("TOP_K", 0) >= 1 else \
        decisions.OperatingPoint()
    for name, path in job.outputs.items():
        outputs = {k: (v[:, 0] if k in job.unbatch and v.ndim >= 2 and v.shape[1] == 1 else v)
                   for k, v in npz.load(path).items()}
        m = len(next(iter(outputs.values())))
        times = []
        for i in [0, *range(m)]:
            sample = {k: v[i:i + 1] for k, v in outputs.items()}
            t0 = time.perf_counter()
            if user:
                _call(mod, "postprocess", job.file, sample)
            elif job.classifier_output is not None:
                decisions.builtin(np.asarray(sample[job.classifier_output]), op)
            times.append(time.perf_counter() - t0)
        reply.post_ms[name] = statistics.median(times[1:]) * 1e3
