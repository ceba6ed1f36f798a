"""TorchScript files run from C++: a small libtorch runner, as a C++ service would load the ``.pt``.

The runner (``libtorch_runner.cpp``) is compiled with g++ against the libtorch inside the installed torch
wheel, once per torch version, compiler and runner source, into a cache directory (``_libtorch_build``;
on first use, or ahead of time: ``python -m deploytool.runtimes._libtorch_build``). The worker starts it
as a subprocess that loads the artifact once, exactly as the Python ``torchscript`` runtime does: ``torch::jit::load``,
``eval()``, ``torch::jit::optimize_for_inference`` when the artifact's ``load_settings`` ask for it, inputs
passed positionally, a tuple or list of outputs flattened in order (``output_0``, ``output_1``, ...).
Tensors travel as raw little-endian files described by a line of text; the runner times its own calls
(``time``) with ``std::chrono::steady_clock`` under bench's protocol, so no Python overhead is counted.
It ends with its stdin, on SIGINT/SIGTERM, and when the worker dies (PR_SET_PDEATHSIG); the worker also
kills it when the session is dropped or the worker exits.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deploytool.runtimes import Program, Runtime, Settings, Timed

GXX = Program("g++", "compiles the libtorch runner", "apt-get install g++")
KILL_WAIT_S = 5.0


@dataclass
class Session:
    proc: subprocess.Popen
    workdir: Path  # request and tensor files, removed with the session
    settings: Settings
    closer: Any = field(default=None, repr=False)  # stops the runner: at the latest when the worker exits


def _close(proc: subprocess.Popen, workdir: str) -> None:
    """Stop the runner (closing its stdin ends it; a kill if it does not) and remove its files."""
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=KILL_WAIT_S)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def _pipes(proc: subprocess.Popen) -> tuple[IO[str], IO[str]]:
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError("the libtorch runner was started without pipes")
    return proc.stdin, proc.stdout


def _ask(session: Session, command: str) -> list[str]:
    """Send one command; the first line of the runner's answer, split (``error ...`` raised as RuntimeError)."""
    stdin, _ = _pipes(session.proc)
    try:
        stdin.write(command + "\n")
        stdin.flush()
    except OSError:
        pass  # it has ended: said below
    return _answer(session.proc)


def _answer(proc: subprocess.Popen) -> list[str]:
    line = _pipes(proc)[1].readline()
    if not line:
        raise RuntimeError(f"the libtorch runner ended unexpectedly (exit code {proc.wait()})")
    words = line.rstrip("\n").split(" ")
    if words[0] == "error":
        raise RuntimeError(f"libtorch: {line[len('error '):].strip()}")
    return words


def _write_request(workdir: Path, feeds: dict, tag: str) -> Path:
    """The feeds as raw little-endian files, and the request naming them in order (and where outputs go)."""
    import numpy as np

    lines = []
    for i, value in enumerate(feeds.values()):
        a = np.asarray(value)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        path = workdir / f"{tag}_in{i}.bin"
        a.tofile(path)
        lines.append(" ".join(["in", a.dtype.name, str(a.ndim), *map(str, a.shape), str(path)]))
    lines.append(f"out {workdir / f'{tag}_out'}")
    request = workdir / f"{tag}.request"
    request.write_text("\n".join(lines) + "\n")
    return request


def load(path, settings):
    from deploytool.runtimes import _libtorch_build

    build = _libtorch_build.ensure()
    workdir = tempfile.mkdtemp(prefix="deploytool-libtorch-")
    args = [build.path, str(Path(path).resolve()), str(os.getpid()), str(int(settings.get("threads") or 0)),
            str(int(settings.get("inter_op_threads") or 0)), "1" if settings.get("optimize_for_inference") else "0"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workdir)
    try:
        _, threads, interop, optimized, *error = _answer(proc)
    except Exception:
        _close(proc, workdir)
        raise
    extras: dict[str, Any] = {"optimize_for_inference": optimized == "1"}
    if error and " ".join(error).strip():
        extras["optimize_for_inference_error"] = " ".join(error).strip()
    extras.update(build.record(), runner_build_s=build.build_s)
    # libtorch has no spinning knob; threads are what at::get_num_threads() says once set.
    session = Session(proc, Path(workdir), Settings(int(threads), int(interop), extras=extras))
    session.closer = weakref.finalize(session, _close, proc, workdir)  # when dropped, or at the worker's exit
    return session


def run(session, feeds):
    import numpy as np

    request = _write_request(session.workdir, feeds, "run")
    words = _ask(session, f"run {request}")
    outputs = {}
    for i in range(int(words[1])):
        dtype, ndim, *dims = _pipes(session.proc)[1].readline().split()
        shape = tuple(int(d) for d in dims[:int(ndim)])
        data = np.fromfile(session.workdir / f"{request.stem}_out{i}.bin", dtype=np.dtype(dtype).newbyteorder("<"))
        outputs[f"output_{i}"] = data.reshape(shape).astype(np.dtype(dtype), copy=False)
    return outputs


def time(session, feeds, protocol):
    import numpy as np

    p = protocol
    samples = session.workdir / "samples.bin"
    lines = [f"protocol {p.warmup_runs} {p.warmup_time} {p.min_runs} {p.min_time} {p.max_runs} {p.max_time}",
             f"samples {samples}"]
    lines += [f"feed {_write_request(session.workdir, f, f'feed{k}')}" for k, f in enumerate(feeds)]
    plan = session.workdir / "time.plan"
    plan.write_text("\n".join(lines) + "\n")
    _, warmup, measure_s, capped, n = _ask(session, f"time {plan}")
    got = np.fromfile(samples, dtype="<i8")
    if len(got) != int(n):
        raise RuntimeError(f"the libtorch runner said {n} samples but wrote {len(got)}")
    return Timed([int(s) for s in got], int(warmup), float(measure_s), capped == "1")


def version():
    """torch's version, and which runner build runs it (its key and compiler): recorded with every check."""
    from deploytool.runtimes import _libtorch_build

    build, _ = _libtorch_build.planned()
    return f"{build.torch} (runner {build.key}, {build.compiler})"


RUNTIME = Runtime("libtorch", "TorchScript from C++: a libtorch runner compiled against the torch wheel", ("torch",),
                  "torch", load, run, version, lambda session: session.settings, runs=("torchscript",),
                  programs=(GXX,), time=time)
