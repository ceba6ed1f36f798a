"""Host side of an emulated session, whatever the runtime: one emulated Python process (``runner.py``) on
``qemu-aarch64 -cpu CPU``, driven over a pipe.

``litert.py`` and ``onnxruntime.py`` beside it are drop-ins for ``deploytool/runtimes``' native runtimes of those
names (same load / run / describe / settings, same output names, order and dtypes), built on this: ``start`` starts
the process in a scratch folder of its own, with nothing of the host's environment, and loads the artifact in it;
``run`` sends tensors as ``.npy`` files, commands and answers as lines. The process ends when its stdin closes (the
session dropped, or the worker exiting: a ``weakref.finalize``), on SIGTERM, and when the process that started it dies
(PR_SET_PDEATHSIG, so a worker that is SIGKILLed leaves no emulator behind; start sessions from the thread that lives
as long as the worker). No ``time``: an emulator's latency says nothing about a device's, so emulated targets are
never timed.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.emulation import build
from deploytool.runtimes import Program
from deploytool.runtimes.libtorch import _close

RUNNER = Path(__file__).with_name("runner.py")
PR_SET_PDEATHSIG = 1
ENVIRONMENT = Program("aarch64 emulation", "runs the runtimes' aarch64 builds under QEMU", build.HINT, build.installed)


@dataclass
class Session:
    proc: subprocess.Popen
    workdir: Path  # feeds, outputs and requests; removed with the session
    runtime: str
    cpu: str
    view: dict  # what the runner answered to ``load``, as the runtime's module keeps it for describe and settings
    closer: Any = field(default=None, repr=False)
    calls: int = 0


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL when the process (thread) that started it dies, or now if it already has."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(3)


def _ask(proc: subprocess.Popen, runtime: str, command: str) -> Any:
    """Send one command line; the JSON of the ``ok`` answer (an ``error`` answer raised as RuntimeError)."""
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError(f"the emulated {runtime} runner was started without pipes")
    try:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    except OSError:
        pass  # it has ended: said below
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the emulated {runtime} runner ended unexpectedly (exit code {proc.wait()})")
    word, _, rest = line.rstrip("\n").partition(" ")
    if word != "ok":
        raise RuntimeError(f"{runtime} (aarch64): {rest.strip()}")
    return json.loads(rest)


def start(runtime: str, cpu: str, spec: dict) -> Session:
    """Start the emulated Python on ``cpu`` and load ``spec["path"]`` on ``runtime`` in it (``spec``: what the
    runner's ``load`` takes for that runtime); the session's ``view`` is the runner's answer."""
    if not build.installed():
        raise build.SetupError(f"the aarch64 emulation environment is not set up: {build.HINT}")
    argv, env = build.emulated_python(cpu, [str(RUNNER)])
    workdir = tempfile.mkdtemp(prefix="deploytool-aarch64-")
    guard = functools.partial(_die_with_parent, os.getpid()) if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=guard)
    spec = {**spec, "path": str(Path(spec["path"]).resolve())}
    try:
        details = _ask(proc, runtime, f"load {runtime} {json.dumps(spec)}")
    except Exception:
        _close(proc, workdir)
        raise
    session = Session(proc, Path(workdir), runtime, cpu, details)
    session.closer = weakref.finalize(session, _close, proc, workdir)  # when dropped, or at the worker's exit
    return session


def run(session: Session, feeds: dict) -> dict:
    """{input name: array} -> {output name: array}, in the artifact's output order, dtypes as the runtime gives them."""
    import numpy as np

    session.calls += 1
    folder = session.workdir / f"call{session.calls}"
    folder.mkdir()
    paths = {}
    for i, (name, value) in enumerate(feeds.items()):
        paths[name] = str(folder / f"in{i}.npy")
        np.save(paths[name], np.asarray(value), allow_pickle=False)
    request = folder / "request.json"
    request.write_text(json.dumps({"feeds": paths, "out": str(folder)}))
    written = _ask(session.proc, session.runtime, f"run {request}")
    return {name: np.load(p, allow_pickle=False) for name, p in written.items()}


def extras(session: Session) -> dict:
    """The settings every emulated session adds to its runtime's own: the CPU model and the emulator's version."""
    return {"emulated_cpu": session.cpu, "qemu": build.record().get("qemu")}


def version(distribution: str) -> str:
    """The aarch64 wheel's version (the lock's pin) and the emulator's, e.g. "2.3.0 (aarch64, QEMU 10.0.2 ...)"."""
    qemu = build.record().get("qemu") or "not set up"
    return f"{build.wheels()[distribution]} (aarch64, QEMU {qemu})"
