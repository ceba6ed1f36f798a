"""Start a worker subprocess for one job and collect its result JSON.

Each worker's stdout/stderr go to a log file (converters are chatty; the console stays clean).
A worker that dies without a result (segfault, OOM kill) becomes an error result naming the
signal and the log, so the coordinator can report it and carry on with the rest.
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


def run_job(job: dict, job_path: Path, log_path: Path, timeout: float | None = None) -> dict:
    job_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result_path = Path(job["result"])
    if result_path.exists():
        result_path.unlink()
    job = {**job, "log": str(log_path)}
    job_path.write_text(json.dumps(job, default=str))
    env = {**os.environ, **WORKER_ENV}
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "deploytool.worker", str(job_path)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, timeout=timeout, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if code == 0 and result:
        return result
    if code is None:
        why = f"timed out after {timeout:.0f} s"
    elif code < 0:
        try:
            why = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            why = f"killed by signal {-code}"
    else:
        why = f"exited with status {code}"
    result["crash"] = f"worker {why} (log: {log_path})"
    return result
