"""Worker subprocesses: start one (optionally warm, before its job is known), give it a job, collect its result.

Each worker's stdout/stderr go to a log file (converters are chatty; the console stays clean).
A worker can be started early with the packages it will need (``preload``): it imports them
while other work runs on the other core, then waits for its job file. A worker that dies without
a result (segfault, OOM kill) becomes an error result naming the signal and the log, so the
coordinator can report it and carry on with the rest.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ INFO/WARNING lines
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


class Worker:
    """One worker process. ``start()`` it early (it preloads, then waits), ``run(job)`` later."""

    def __init__(self, job_path: Path, log_path: Path, preload: tuple[str, ...] = ()) -> None:
        self.job_path, self.log_path, self.preload = Path(job_path), Path(log_path), tuple(preload)
        self.proc: subprocess.Popen | None = None
        if self.job_path.exists():  # a stale job must not be taken for ours
            self.job_path.unlink()

    def start(self) -> "Worker":
        if self.proc is None:
            self.job_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "deploytool.worker", str(self.job_path)]
            if self.preload:
                cmd += ["--preload", ",".join(self.preload)]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env={**os.environ, **WORKER_ENV})
        return self

    def run(self, job: dict, timeout: float | None = None) -> dict:
        result_path = Path(job["result"])
        if result_path.exists():
            result_path.unlink()
        job = {**job, "log": str(self.log_path)}
        tmp = self.job_path.with_name(self.job_path.name + ".tmp")
        tmp.write_text(json.dumps(job, default=str))
        tmp.replace(self.job_path)  # the waiting worker sees a complete job or none
        self.start()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        if code == 0 and result:
            return result
        result["crash"] = f"worker {_why(code, timeout)} (log: {self.log_path})"
        return result

    def cancel(self) -> None:
        """A warm worker that turned out not to be needed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _why(code: int | None, timeout: float | None) -> str:
    if code is None:
        return f"timed out after {timeout:.0f} s"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
