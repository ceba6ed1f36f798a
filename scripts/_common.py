"""Shared by the benchmark scripts: a scratch directory and a mobilenet_v2 bundle to measure."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def bundle_or_export(bundle: Path | None, prefix: str, model: str = "mobilenet_v2") -> tuple[Path, Path]:
    """(bundle, scratch dir): the given bundle, or a fresh export of ``model`` into the scratch dir."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if bundle is None:
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", model, "--out", str(work)],
                       check=True, stdout=subprocess.DEVNULL)
        bundle = work / model
    return bundle, work


def time_calls(call, feeds: list, min_runs: int, min_time: float) -> tuple[list[int], float]:
    """A bare timing loop with deploytool's default warm-up rule (>= 10 calls and 0.5 s), then one call at a
    time until both ``min_runs`` and ``min_time``: (per-call ns, the process's CPU ms per call)."""
    import time

    i, t_end = 0, time.perf_counter() + 0.5
    while i < 10 or time.perf_counter() < t_end:
        call(feeds[i % len(feeds)])
        i += 1
    samples: list[int] = []
    start, cpu0 = time.perf_counter(), time.process_time_ns()
    while len(samples) < min_runs or time.perf_counter() - start < min_time:
        f = feeds[i % len(feeds)]
        t0 = time.perf_counter_ns()
        call(f)
        samples.append(time.perf_counter_ns() - t0)
        i += 1
    return samples, (time.process_time_ns() - cpu0) / len(samples) / 1e6
