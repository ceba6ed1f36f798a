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

    expected = f"expected a dict of the model's inputs {names} (numpy arrays [N, ...], N the raw samples)" + (
        ", or one numpy array" if len(names) == 1 else "")
    if isinstance(result, dict):
        out = {}
        for k, v in result.items():
            if isinstance(v, (list, tuple, dict, str, bytes)) or not hasattr(v, "__array__"):
                raise PipelineError(f"{what} returned a dict whose {str(k)!r} is a {type(v).__name__}, not a numpy "
                                    f"array: {expected}")
            out[str(k)] = np.ascontiguousarray(np.asarray(v))
        return out
    if len(names) == 1 and not isinstance(result, (list, tuple, dict, str, bytes)) and hasattr(result, "__array__"):
        return {names[0]: np.ascontiguousarray(np.asarray(result))}
    shown = f"a {type(result).__name__}" + (f" of {len(result)}" if isinstance(result, (list, tuple)) else "")
    raise PipelineError(f"{what} returned {shown}: {expected}")


def _constants(mod: Any) -> dict[str, Any]:
    """The file's THRESHOLD / TOP_K / NEAR_BAND where it sets them (not None): a real number as it is (a bool stays
    a bool), anything else as its repr; the coordinator checks them (``decisions.resolve_operating_point``)."""
    import numbers

    out: dict[str, Any] = {}
    for name in CONSTANTS:
        value = getattr(mod, name, None)
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, numbers.Real):
            out[name] = int(value) if isinstance(value, numbers.Integral) else float(value)
        else:
            out[name] = repr(value)[:80]
    return out


def run_pipeline(job: jobs.RunPipeline) -> jobs.PipelineRan:
    reply = jobs.PipelineRan(ok=True)
    try:
        mod = _import(job.file)
        reply.functions = [f for f in FUNCTIONS if callable(getattr(mod, f, None))]
        reply.constants = _constants(mod)
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
    if job.raw is None or job.out is None:
        raise PipelineError("a 'pre' pipeline job needs raw and out (a deploytool bug)")
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
    fields = job.operating_point or {}
    op = decisions.OperatingPoint(**fields) if fields else decisions.OperatingPoint()
    classifier = job.classifier_output
    if not user and classifier is None:
        raise PipelineError(f"{job.file} defines no postprocess(outputs) and the model has no output for the "
                            "built-in one")
    for name, path in job.outputs.items():
        outputs = npz.load(path)
        outputs = {k: (v[:, 0] if k in job.unbatch and v.ndim >= 2 and v.shape[1] == 1 else v)
                   for k, v in outputs.items()}
        n = len(next(iter(outputs.values())))
        t0 = time.perf_counter()
        if user:
            result = _call(mod, "postprocess", job.file, outputs, f" (the outputs: {', '.join(outputs)})")
            try:
                got = decisions.normalise(result, n, f"postprocess() in {job.file}")
            except ValueError as e:
                raise PipelineError(str(e)) from None
        elif classifier is not None:
            try:
                got = decisions.builtin(np.asarray(outputs[classifier]), op)
            except ValueError as e:
                raise PipelineError(f"--operating-point / {job.file}: {e}") from None
        else:  # refused above
            raise PipelineError(f"{job.file}: no postprocess and no output for the built-in one")
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
    if job.raw is None:
        raise PipelineError("a 'time' pipeline job needs raw (a deploytool bug)")
    user = "postprocess" in reply.functions
    # --operating-point, else the file's THRESHOLD / TOP_K / NEAR_BAND: the resolver validate uses, before any timing
    given = decisions.OperatingPoint(**job.operating_point) if job.operating_point else None
    try:
        op = decisions.resolve_operating_point(given, reply.constants, user, job.file)
    except ValueError as e:
        raise PipelineError(str(e)) from None
    if job.out is not None:  # validate's checks first, on all raw samples at once (the coordinator checks the inputs)
        _pre(job, mod, reply)
    if user and job.decisions:
        _post(job, mod, reply)
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
    for name, path in job.outputs.items():
        outputs = {k: (v[:, 0] if k in job.unbatch and v.ndim >= 2 and v.shape[1] == 1 else v)
                   for k, v in npz.load(path).items()}
        m = len(next(iter(outputs.values())))
        times = []
        for i in [0, *range(m)]:
            sample = {k: v[i:i + 1] for k, v in outputs.items()}
            t0 = time.perf_counter()
            if user:
                _call(mod, "postprocess", job.file, sample, f" (the outputs: {', '.join(sample)})")
            elif job.classifier_output is not None:
                decisions.builtin(np.asarray(sample[job.classifier_output]), op)
            times.append(time.perf_counter() - t0)
        reply.post_ms[name] = statistics.median(times[1:]) * 1e3
