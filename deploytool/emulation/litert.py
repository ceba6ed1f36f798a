"""Host side of an emulated LiteRT session: ``.tflite`` files on LiteRT's aarch64 build under ``qemu-aarch64 -cpu CPU``.

A drop-in for ``deploytool/runtimes/litert.py`` (same load / run / describe / settings, same output names, order and
dtypes), so the worker runs an emulated target through its usual code path: ``emulated_runtime(cpu)`` is a
``Runtime`` named ``litert`` bound to one CPU model. The session is one emulated Python process (``runner.py``), in a
scratch folder of its own, with nothing of the host's environment; tensors travel as ``.npy`` files, commands and
answers as lines. The process ends when its stdin closes (the session dropped, or the worker exiting: a
``weakref.finalize``), on SIGTERM, and when the process that started it dies (PR_SET_PDEATHSIG, so a worker that is
SIGKILLed leaves no emulator behind; start sessions from the thread that lives as long as the worker). No ``time``:
an emulator's latency says nothing about a device's, so emulated targets are never timed.
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
from deploytool.runtimes import Program, Runtime, Settings
from deploytool.runtimes import litert as native
from deploytool.runtimes.libtorch import _close

RUNNER = Path(__file__).with_name("runner.py")
PR_SET_PDEATHSIG = 1
ENVIRONMENT = Program("aarch64 emulation", "runs LiteRT's aarch64 build under QEMU", build.HINT, build.installed)


@dataclass
class Session:
    proc: subprocess.Popen
    workdir: Path  # feeds, outputs and requests; removed with the session
    cpu: str
    view: dict  # what runtimes/litert.py's describe and settings read: input/output details, threads
    closer: Any = field(default=None, repr=False)
    calls: int = 0


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL when the process (thread) that started it dies, or now if it already has."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(3)


def _ask(proc: subprocess.Popen, command: str) -> Any:
    """Send one command line; the JSON of the ``ok`` answer (an ``error`` answer raised as RuntimeError)."""
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError("the emulated LiteRT runner was started without pipes")
    try:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    except OSError:
        pass  # it has ended: said below
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the emulated LiteRT runner ended unexpectedly (exit code {proc.wait()})")
    word, _, rest = line.rstrip("\n").partition(" ")
    if word != "ok":
        raise RuntimeError(f"litert (aarch64): {rest.strip()}")
    return json.loads(rest)


def load(path: Path, settings: dict, cpu: str) -> Session:
    """Start the emulated Python on ``cpu`` and load the artifact in it, as runtimes/litert.py loads it."""
    if not build.installed():
        raise build.SetupError(f"the aarch64 emulation environment is not set up: {build.HINT}")
    threads = int(settings["threads"]) if settings.get("threads") else None
    argv, env = build.emulated_python(cpu, [str(RUNNER)])
    workdir = tempfile.mkdtemp(prefix="deploytool-aarch64-")
    guard = functools.partial(_die_with_parent, os.getpid()) if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=guard)
    try:
        details = _ask(proc, f"load {Path(path).resolve()} {threads or 0}")
    except Exception:
        _close(proc, workdir)
        raise
    view = {"input_details": details["inputs"], "output_details": details["outputs"], "threads": threads}
    session = Session(proc, Path(workdir), cpu, view)
    session.closer = weakref.finalize(session, _close, proc, workdir)  # when dropped, or at the worker's exit
    return session


def run(session: Session, feeds: dict) -> dict:
    """{input name: array} -> {output name: array}, in the signature's output order, dtypes as LiteRT gives them."""
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
    written = _ask(session.proc, f"run {request}")
    return {name: np.load(p, allow_pickle=False) for name, p in written.items()}


def describe(session: Session) -> dict:
    return native.describe(session.view)


def settings(session: Session) -> Settings:
    s = native.settings(session.view)
    s.extras.update(emulated_cpu=session.cpu, qemu=build.record().get("qemu"))
    return s


def version() -> str:
    """The aarch64 wheel's version (the lock's pin) and the emulator's, e.g. "2.3.0 (aarch64, QEMU 10.0.2 ...)"."""
    qemu = build.record().get("qemu") or "not set up"
    return f"{build.wheels()['ai-edge-litert']} (aarch64, QEMU {qemu})"


def emulated_runtime(cpu: str) -> Runtime:
    """LiteRT's aarch64 build on the emulated CPU model ``cpu``, as a Runtime the worker runs like the native one."""
    return Runtime("litert", f"LiteRT's aarch64 build under QEMU, CPU {cpu}", (), native.RUNTIME.extra,
                   functools.partial(load, cpu=cpu), run, version, settings, describe, programs=(ENVIRONMENT,))

