"""deploytool export of digits_cnn vs the bare converter calls, interleaved in one run.

    python scripts/bench_export.py [--rounds 5]

Each round runs A = `deploytool export --model digits_cnn` (export + checks on every runtime)
and B = `python scripts/bare_export.py` (the same converters, one process, no checks), in
alternating order, as fresh processes. Prints per-run wall times, the medians and their ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    # The five formats bare_export.py makes (the int8 formats have no bare counterpart there).
    tool = [sys.executable, "-m", "deploytool", "export", "--model", "digits_cnn", "--formats",
            "onnx,torchscript,savedmodel,tflite_fp32,tflite_fp16", "--out", str(work / "tool")]
    bare = [sys.executable, str(HERE / "bare_export.py"), str(work / "bare")]
    a_times, b_times = [], []
    try:
        for r in range(args.rounds):
            order = [("deploytool", tool, a_times), ("bare", bare, b_times)]
            if r % 2:
                order.reverse()
            for name, cmd, sink in order:
                shutil.rmtree(work / "bare", ignore_errors=True)
                sink.append(timed(cmd))
                print(f"round {r + 1}: {name:<10} {sink[-1]:6.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(f"\nmedian deploytool export (export + checks): {a:.2f} s")
    print(f"median bare converter calls:               {b:.2f} s")
    print(f"ratio deploytool / bare: {a / b:.2f}  (target <= 1.30)")


if __name__ == "__main__":
    main()
