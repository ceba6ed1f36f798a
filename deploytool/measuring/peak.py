"""This machine's fp32 GEMM peak, the ceiling bench rows are compared with.

``measure()`` runs a short probe in fresh processes (``python -m deploytool.measuring.peak``): a ``float32``
matmul of square matrices, best of several runs, once with one thread and once with every core,
with numpy (always installed; its BLAS is named) and with torch where installed (its CPU build
uses oneDNN/MKL, ~30 % faster than numpy's OpenBLAS on this project's AVX-512 machine); the
faster library is the peak, and both figures are kept. Threads are fixed through the BLAS
libraries' environment variables (and ``torch.set_num_threads``) before the first product, so
each thread count needs its own process. There is no int8 GEMM in numpy, so no int8 peak is
measured: int8 rows are reported in GOP/s without a percentage (the note says so).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SIZE = 1024  # 2.1 GFLOP per product: ~10-40 ms on one core of a current x86 CPU
MIN_TIME_S = 0.3
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
INT8_NOTE = "no int8 GEMM peak measured (numpy has no int8 GEMM): GOP/s only"


def _best(product, size: int, min_time: float) -> float:
    product()  # warm-up: threads started, pages touched
    best, runs, t_end = float("inf"), 0, time.perf_counter() + min_time
    while runs < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return 2.0 * size ** 3 / best / 1e9


def probe(threads: int, size: int = SIZE, min_time: float = MIN_TIME_S) -> dict:
    """In this process: {library: best fp32 GFLOP/s of ``size``-square matmuls over ``min_time`` s}."""
    import importlib.util

    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    found = {_library(): _best(lambda: np.matmul(a, b, out=out), size, min_time)}
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        found[f"torch {torch.__version__} mm"] = _best(lambda: torch.mm(ta, tb, out=tout), size, min_time)
    return {"gflops": found, "size": size}


def _library() -> str:
    import numpy as np

    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        return f"numpy {np.__version__} matmul ({blas.get('name')} {blas.get('version')})"
    except (AttributeError, KeyError, TypeError):
        return f"numpy {np.__version__} matmul"


def _run(threads: int, timeout: float) -> dict:
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    proc = subprocess.run([sys.executable, "-P", "-m", "deploytool.measuring.peak", str(threads)], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(proc.stdout)


def measure(timeout: float = 60.0) -> dict:
    """Single-thread and all-thread fp32 GEMM peak, each in a fresh process; an ``error`` key instead
    of figures when the probe cannot run (bench goes on without percentages)."""
    cores = os.cpu_count() or 1
    try:
        one = _run(1, timeout)
        every = _run(cores, timeout) if cores > 1 else one
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": f"GEMM peak probe failed: {e}"}
    lib = max(one["gflops"], key=lambda k: one["gflops"][k])
    return {"fp32_gflops_1_thread": round(one["gflops"][lib], 2),
            "fp32_gflops_all_threads": round(max(every["gflops"].values()), 2),
            "all_threads": cores, "library": lib, "size": one["size"],
            "by_library": {k: {"1_thread": round(v, 2), "all_threads": round(every["gflops"].get(k, 0.0), 2)}
                           for k, v in one["gflops"].items()},
            "method": f"best of >= 3 {one['size']}x{one['size']} float32 matmuls over {MIN_TIME_S} s per library, "
                      "fresh process per thread count; the fastest library is the peak",
            "int8": INT8_NOTE}


def peak_for(peak: dict, threads: int) -> float | None:
    """The fp32 peak a row at ``threads`` can reach: one thread's, every core's, or in between
    (linear in threads, capped at every core's)."""
    one, every = peak.get("fp32_gflops_1_thread"), peak.get("fp32_gflops_all_threads")
    if one is None or every is None:
        return None
    if threads <= 1:
        return float(one)
    return float(min(every, one * threads)) if threads < peak.get("all_threads", threads) else float(every)


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
