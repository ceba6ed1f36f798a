"""Worker subprocesses: start one (optionally warm, before its first job is known), hand it typed
jobs one at a time, read its typed replies.

Each worker's stdout/stderr go to a log file (converters are chatty; the console stays clean).
A worker can be started early with the packages it will need (``preload``): it imports them
while other work runs on the other core, then waits for its first job file. Jobs are numbered
files ``<base>.<n>.job.json``; each is answered by ``<base>.<n>.reply.json``, written atomically
when the job is done. A worker whose job is ``last`` exits after it; ``close()`` ends one that
is waiting for more. A worker that dies without a reply (segfault, OOM kill) becomes the job's
``crashed`` reply naming the signal and the log, so the coordinator reports it and carries on.

Lifecycle. Workers start in Python's safe-path mode (``-P``: a file in the user's working directory
cannot shadow a module). They stay in the coordinator's process group, so a terminal's Ctrl-C
reaches them as it always did, also where deploytool runs inside someone else's program. Every
worker is started from one thread that lives as long as this process (``_Spawner``), so the
parent-death signal a worker asks the kernel for (``worker.py``: SIGKILL when its parent dies, which
on Linux means the *thread* that started it) fires exactly when the coordinator dies, however it
dies, and whatever the worker is doing. ``stop_all()`` (the CLI calls it on SIGINT, SIGTERM and
SIGHUP, before the commands' own clean-up runs) kills every live worker and starts no more.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploytool.core import records
from deploytool.running import jobs

if TYPE_CHECKING:
    from deploytool.envs import Env

WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ INFO/WARNING lines
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # onnxruntime (1.2x+, Linux too) keeps telemetry: a SQLite store under $XDG_CACHE_HOME (~/.cache/Microsoft/
    # DeveloperTools/.onnxruntime, whose directory it opens on every run) and a session file in $TMPDIR; a worker
    # touches nothing outside the bundle and its scratch directory, so it is switched off.
    "ORT_DISABLE_TELEMETRY": "1",
}
PARENT_ENV = "DEPLOYTOOL_COORDINATOR_PID"  # the pid a worker watches (worker.py): it ends when that one dies
POLL_S = 0.01
EXIT_GRACE_S = 10.0  # a worker that has replied to its last job gets this long to exit before it is killed
STOP_WAIT_S = 5.0  # stop_all(): how long the killed workers get to be reaped, all together


def worker_command(base: Path, preload: tuple[str, ...] = (), python: str | None = None) -> list[str]:
    """How a worker is started: ``-P``, so the working directory is not on its ``sys.path``; under ``python``
    (another environment's, ``deploytool.envs``) or this one's."""
    cmd = [python or sys.executable, "-P", "-m", "deploytool.running.worker", str(base)]
    return cmd + ["--preload", ",".join(preload)] if preload else cmd


class _Spawner:
    """Starts every worker from one daemon thread, which lives until this process ends: the kernel's
    parent-death signal is sent when the thread that forked a worker exits, and a pool thread may
    end before the coordinator does. Each process it starts is registered (``_LIVE``) before it
    hands it back, and killed at once if ``stop_all()`` came first."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="deploytool-spawner", daemon=True)
                self.thread.start()
        done: Future = Future()
        self.requests.put((done, cmd, kwargs))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, cmd, kwargs = self.requests.get()
            try:
                proc = subprocess.Popen(cmd, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                done.set_exception(e)
                continue
            _LIVE.add(proc)
            if _STOPPING.is_set():  # stop_all() ran while it was starting: it took no snapshot of this one
                _kill(proc)
            done.set_result(proc)


_SPAWNER = _Spawner()
_LIVE: set[subprocess.Popen] = set()  # every worker started and not yet seen to end
_STOPPING = threading.Event()


def resume() -> None:
    """Let workers start again: a new command in a process where an earlier one was interrupted (a
    notebook, a host calling the CLI in-process) must not find every worker refused."""
    _STOPPING.clear()


def stop_all() -> None:
    """End every worker this process started and start no more: the coordinator is being interrupted.
    Safe in a signal handler: takes no lock."""
    _STOPPING.set()
    procs = list(_LIVE)
    for proc in procs:
        _kill(proc, wait=False)
    deadline = time.monotonic() + STOP_WAIT_S
    for proc in procs:  # reaped, so nothing of theirs lands after the caller's clean-up
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # stuck in the kernel (D state): it ends when it can
            pass
        _LIVE.discard(proc)


def _kill(proc: subprocess.Popen, wait: bool = True) -> None:
    """SIGKILL the worker, then reap it."""
    if proc.poll() is None:
        proc.kill()
    if wait:
        proc.wait()
    _LIVE.discard(proc)


def job_path(base: Path, n: int) -> Path:
    return base.with_name(f"{base.name}.{n}.job.json")


def reply_path(base: Path, n: int) -> Path:
    return base.with_name(f"{base.name}.{n}.reply.json")


class Worker:
    """One worker process. ``start()`` it early (it preloads, then waits), ``run(job)`` later."""

    def __init__(self, base: Path, log_path: Path, preload: tuple[str, ...] = (), env: Env | None = None) -> None:
        self.base, self.log_path, self.preload = Path(base), Path(log_path), tuple(preload)
        self.env = env  # the Python environment it runs in (``deploytool.envs``); None: deploytool's own
        self.unusable: str | None = None  # why it cannot start (its environment was not created)
        self.proc: subprocess.Popen | None = None
        self.n = 0
        self.done = False
        for stale in self.base.parent.glob(f"{self.base.name}.*.json") if self.base.parent.exists() else ():
            stale.unlink()  # a stale job must not be taken for ours

    def start(self) -> Worker:
        """Start the process (once); after ``stop_all()`` nothing is started."""
        if self.proc is None and not _STOPPING.is_set():
            self.base.parent.mkdir(parents=True, exist_ok=True)
            python: str | None = None
            extra: dict[str, str] = {}
            if self.env is not None:
                from deploytool.envs import SetupError, worker_interpreter

                try:
                    python, extra = worker_interpreter(self.env)
                except (SetupError, OSError) as e:  # not created (or its cache unwritable): nothing starts, and a
                    self.unusable = str(e) if isinstance(e, SetupError) else \
                        f"{self.env.describe()} cannot be used: {e.strerror or e}"  # job is answered with why
                    return self
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # Never through a link: a log inside a bundle must not write outside it.
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "ab") as log:
                self.proc = _SPAWNER.popen(worker_command(self.base, self.preload, python), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env={**os.environ, **WORKER_ENV, **extra, PARENT_ENV: str(os.getpid())})
        return self

    def run(self, job: jobs.Job[jobs.R], last: bool = True, timeout: float | None = None) -> jobs.R:
        """Hand over ``job`` and wait for its reply (``last``: the worker exits after it). A worker
        still busy after ``timeout`` seconds is killed, and the reply says so."""
        reply_type: Any = jobs.REPLY_OF[type(job)]
        if _STOPPING.is_set():  # interrupted: a job still queued in a pool starts nothing
            self.done = True
            return reply_type.crashed("not run: deploytool was interrupted")
        if self.done:
            return reply_type.crashed(f"worker already exited (log: {self.log_path})")
        self.n += 1
        reply = reply_path(self.base, self.n)
        data = jobs.encode(job, str(reply), str(self.log_path), last)
        target = job_path(self.base, self.n)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(target)  # the waiting worker sees a complete job or none
        proc = self.start().proc
        if proc is None:  # stop_all() came in between, or its environment is not there
            self.done = True
            return reply_type.crashed(self.unusable or "not run: deploytool was interrupted")
        code = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None or (not last and reply.exists()):
                break
            if last and reply.exists():  # done; a worker that then hangs or crashes on exit keeps its reply
                try:
                    code = proc.wait(timeout=EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    code = 0
                break
            if deadline is not None and time.monotonic() > deadline:
                _kill(proc)
                self.done = True
                return reply_type.crashed(f"timed out after {timeout:g} s and was killed (the time limit for this "
                                          f"step: --timeout) (log: {self.log_path})")
            time.sleep(POLL_S)
        if code is not None:
            _LIVE.discard(proc)
        self.done = last or code is not None
        if reply.exists():
            try:
                return jobs.read_reply(job, json.loads(reply.read_text()))
            except (ValueError, records.RecordError) as e:  # a bug in the worker: say so, keep going
                return reply_type.crashed(f"worker wrote an unreadable reply ({e}) (log: {self.log_path})")
        return reply_type.crashed(f"worker {_why(code)} (log: {self.log_path})")

    @property
    def alive(self) -> bool:
        """Started, not finished, and still able to take a job."""
        return self.proc is not None and self.proc.poll() is None and not self.done

    def close(self) -> None:
        """End the worker: a waiting one is told to exit (so its log is flushed), a busy one is killed."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                _LIVE.discard(self.proc)
            return
        if not self.done and self.n > 0:
            self._send_exit()
            try:
                self.proc.wait(timeout=5)
                _LIVE.discard(self.proc)
                return
            except subprocess.TimeoutExpired:
                pass
        _kill(self.proc)

    def _send_exit(self) -> None:
        self.n += 1
        target = job_path(self.base, self.n)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(jobs.encode(jobs.Exit(), str(reply_path(self.base, self.n)), None, True)))
        tmp.replace(target)
        self.done = True


def _why(code: int | None) -> str:
    if code is None:
        return "gave no reply"
    if code < 0:
        if -code == signal.SIGKILL:  # deploytool's own time limit is reported apart, so this came from outside
            return "killed by SIGKILL (not by deploytool's time limit: most likely the kernel's out-of-memory killer)"
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
