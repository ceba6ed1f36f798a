"""Workers never outlive their coordinator: SIGTERM and SIGHUP clean up as Ctrl-C does (workers ended, staging
and scratch removed, the previous bundle intact, exit 128+signal and one line), and a coordinator killed with
SIGKILL takes its workers with it, whatever they were doing. Workers start with ``python -P``."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import error_lines

from deploytool.running import spawn
from deploytool.store import bundle as B
from deploytool.store import manifest as M

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
WORKER_MODULE = "deploytool.running.worker"


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command line) of every process now."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        found[int(d.name)] = (int(ppid), state, cmdline)
    return found


def _workers_of(pid: int) -> set[int]:
    return {p for p, (ppid, state, cmd) in _procs().items() if ppid == pid and state != "Z" and WORKER_MODULE in cmd}


def _running(pids: set[int], mark: str = WORKER_MODULE) -> set[int]:
    """Those of ``pids`` still running a worker (a zombie, or a reused pid, is not)."""
    now = _procs()
    return {p for p in pids if p in now and now[p][1] != "Z" and mark in now[p][2]}


def _workers_naming(text: str) -> set[int]:
    """Every running worker whose command line names ``text`` (the out or bundle directory): whoever its
    parent is now."""
    return {p for p, (_, state, cmd) in _procs().items() if state != "Z" and WORKER_MODULE in cmd and text in cmd}


def _gone_within(pids: set[int], seconds: float, mark: str = WORKER_MODULE) -> set[int]:
    """Those of ``pids`` still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while _running(pids, mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _running(pids, mark)


def _start(args: list[str], env: dict) -> subprocess.Popen:
    """The CLI in a session of its own, with SIGHUP at its default (under `nohup` the suite inherits it ignored, and
    the CLI rightly keeps ignoring a signal it was started ignoring)."""
    return subprocess.Popen([sys.executable, "-m", "deploytool", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def _busy_workers(proc: subprocess.Popen, ready, timeout: float = 300) -> set[int]:
    """Wait until ``ready()`` and a worker of ``proc`` is running; every worker pid seen until then."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen |= _workers_of(proc.pid)
        if seen & _running(seen) and ready():
            return seen
        if proc.poll() is not None:
            pytest.fail(f"finished (exit {proc.returncode}) before it could be interrupted: {proc.communicate()[1]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no worker was ever busy")


def _staging(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(".digits_cnn.partial-")]


@pytest.fixture
def previous(tmp_path, zoo_bundles) -> tuple[Path, bytes]:
    """An --out directory holding a previous digits_cnn bundle, and that bundle's manifest bytes."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(zoo_bundles["digits_cnn"][0], out / "digits_cnn")
    return out, (out / "digits_cnn" / "manifest.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_export_ends_its_workers_and_removes_its_staging(previous, cli_env, signum):
    out, before = previous
    proc = _start(["export", "--model", "digits_cnn", "--out", str(out)], cli_env)
    # The torch worker is busy (loading the source, writing the golden data) and the next stage's is importing.
    seen = _busy_workers(proc, lambda: any((s / ".work/export-torch.1.job.json").exists() for s in _staging(out)))
    os.kill(proc.pid, signum)  # the coordinator alone, as `timeout` or a CI cancel does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert error_lines(stderr) == [f"deploytool: interrupted by {signal.Signals(signum).name} "
                                   "(nothing half-written is left behind)"]
    assert not _gone_within(seen, 5)
    assert not _workers_naming(str(out))  # none started after the snapshot either
    assert not _staging(out)
    assert [p.name for p in out.iterdir()] == ["digits_cnn"]
    assert (out / "digits_cnn" / "manifest.json").read_bytes() == before
    for rec in M.read(out / "digits_cnn").artifacts.values():
        B.verify_files(out / "digits_cnn", rec.files, rec.format)


@pytest.mark.slow
def test_a_coordinator_killed_outright_takes_its_busy_workers_with_it(previous, cli_env):
    out, before = previous
    proc = _start(["export", "--model", "digits_cnn", "--out", str(out)], cli_env)
    # The TensorFlow stage has its first job (converting, in C code for much of it) and the torch one has run.
    seen = _busy_workers(proc, lambda: any((s / ".work/export-tensorflow.1.job.json").exists() for s in _staging(out)))
    seen |= _workers_of(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not _gone_within(seen, 5)
    assert not _gone_within(_workers_naming(str(out)), 5)
    assert (out / "digits_cnn" / "manifest.json").read_bytes() == before


@pytest.mark.slow
def test_a_terminated_validate_ends_its_workers_and_removes_its_scratch(tmp_path, zoo_bundles, cli_env):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _start(["validate", str(bundle), "--reports", str(tmp_path / "reports")],
                  {**cli_env, "TMPDIR": str(scratch)})
    seen = _busy_workers(proc, lambda: True)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert error_lines(stderr) == ["deploytool: interrupted by SIGTERM (nothing half-written is left behind)"]
    assert not _gone_within(seen, 5)
    assert not _workers_naming(str(scratch))
    assert list(scratch.iterdir()) == []  # validate's deploytool-validate-* scratch directory


# Fast: the worker's command line, stop_all, and a worker busy in C code whose coordinator is killed.


def test_workers_start_in_safe_path_mode(monkeypatch):
    from deploytool.measuring import peak

    cmd = spawn.worker_command(Path("base"), ("numpy",))
    assert cmd[:4] == [sys.executable, "-P", "-m", WORKER_MODULE]
    seen = {}

    def run(cmd, **kwargs):
        seen["cmd"] = cmd
        raise OSError("not run")

    monkeypatch.setattr(peak.subprocess, "run", run)
    peak.measure()
    assert seen["cmd"][:4] == [sys.executable, "-P", "-m", "deploytool.measuring.peak"]


def test_a_file_in_the_working_directory_does_not_shadow_a_workers_import(tmp_path, monkeypatch):
    from deploytool.running import jobs

    base = tmp_path / "w"
    spawn.job_path(base, 1).write_text(json.dumps(jobs.encode(jobs.Exit(), str(spawn.reply_path(base, 1)), None,
                                                              True)))
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed: the working directory is on sys.path')\n")
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run(spawn.worker_command(base), capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_stop_all_ends_every_worker_and_starts_no_more(tmp_path, monkeypatch):
    from deploytool.running import jobs

    monkeypatch.setattr(spawn, "_STOPPING", threading.Event())
    monkeypatch.setattr(spawn, "_LIVE", set())
    workers = [spawn.Worker(tmp_path / f"w{i}", tmp_path / f"w{i}.log").start() for i in range(2)]
    pids = {w.proc.pid for w in workers if w.proc is not None}
    assert len(pids) == 2 and _running(pids) == pids
    spawn.stop_all()
    assert not _running(pids) and not spawn._LIVE
    late = spawn.Worker(tmp_path / "late", tmp_path / "late.log")
    assert late.start().proc is None
    reply = late.run(jobs.LoadSource(source={}))
    assert not reply.ok and "interrupted" in (reply.error or "")


# A worker busy in C code that holds the GIL (a regex that backtracks for ever), started as spawn starts
# workers: only the kernel can end it when its coordinator dies.
BUSY = """
from deploytool.running import worker
worker._end_with_coordinator()
import re
re.match("(a*)*b", "a" * 64)
"""
COORDINATOR = """
import os, subprocess, sys, time
from deploytool.running import spawn
cmd = [sys.executable, "-P", "-c", sys.argv[1]]
proc = spawn._SPAWNER.popen(cmd, env={**os.environ, spawn.PARENT_ENV: str(os.getpid())})
print(proc.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_busy_in_c_code_ends_when_its_coordinator_is_killed(tmp_path):
    coordinator = subprocess.Popen([sys.executable, "-c", COORDINATOR, BUSY], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
    pid = int(coordinator.stdout.readline())  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _cpu_ticks(pid) < 50:  # past its imports, backtracking
            time.sleep(0.1)
        assert _running({pid}, "-c") == {pid}
        coordinator.kill()
        coordinator.wait()
        assert not _gone_within({pid}, 5, "-c")
    finally:
        coordinator.kill()
        if _running({pid}, "-c"):
            os.kill(pid, signal.SIGKILL)  # never leave a spinning process behind


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_new_command_after_an_interrupted_one_starts_workers_again():
    """In one process (a notebook, a host calling the CLI in-process) an interrupt must not leave every later
    command's workers refused."""
    from deploytool.cli import _install_handlers

    spawn._STOPPING.set()  # what stop_all() leaves behind after an interrupt
    previous = _install_handlers()
    try:
        assert not spawn._STOPPING.is_set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# A worker in another Python environment (deploytool.envs: the TF.js converter's venv) is started by the same spawner:
# it must end with its coordinator as deploytool's own workers do.
ENV_COORDINATOR = """
import sys, tempfile, time
from pathlib import Path
from deploytool import envs
from deploytool.running.spawn import Worker
base = Path(tempfile.mkdtemp())
worker = Worker(base / "w", base / "w.log", env=envs.ENVS["tfjs"]).start()
print(worker.proc.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_in_another_environment_ends_when_its_coordinator_is_killed():
    from deploytool import envs

    if not envs.ENVS["tfjs"].installed():
        pytest.skip("the tfjs environment is not set up here (deploytool setup)")
    coordinator = subprocess.Popen([sys.executable, "-c", ENV_COORDINATOR], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
    pid = int(coordinator.stdout.readline())  # type: ignore[union-attr]
    try:
        assert _running({pid}) == {pid}
        assert _procs()[pid][2].startswith(str(envs.ENVS["tfjs"].python()))  # the environment's own interpreter
        coordinator.kill()
        coordinator.wait()
        assert not _gone_within({pid}, 10)
    finally:
        coordinator.kill()
        if _running({pid}):
            os.kill(pid, signal.SIGKILL)
