"""deploytool export vs the bare converter calls, per model, interleaved in one run.

    python scripts/bench_export.py [--rounds 5] [--models digits_cnn,mobilenet_v2] [--markdown FILE]

Each round runs, per model, A = `deploytool export --model MODEL` of the five formats
bare_export.py makes (export + checks on every runtime) and B = `python scripts/bare_export.py OUT
MODEL` (the same converters, one process, no checks), in alternating order, as fresh processes.
mobilenet_v2 (14 MB of weights) shows what grows with weight size. Prints per-run wall times, the
medians and their ratio per model.
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

from _common import add_markdown_option, md_table, write_markdown

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
    ap.add_argument("--models", default="digits_cnn,mobilenet_v2")
    add_markdown_option(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    models = args.models.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(args.rounds):
            for model in models:
                # The five formats bare_export.py makes (the int8 formats have no bare counterpart there).
                tool = [sys.executable, "-m", "deploytool", "export", "--model", model, "--formats",
                        "onnx,torchscript,savedmodel,tflite_fp32,tflite_fp16", "--out", str(work / "tool")]
                bare = [sys.executable, str(HERE / "bare_export.py"), str(work / "bare"), model]
                order = [("deploytool", tool), ("bare", bare)]
                if r % 2:
                    order.reverse()
                for name, cmd in order:
                    shutil.rmtree(work / "bare", ignore_errors=True)
                    sink = times.setdefault((model, name), [])
                    sink.append(timed(cmd))
                    print(f"round {r + 1}: {model:<13} {name:<10} {sink[-1]:6.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    rows = []
    for model in models:
        a, b = statistics.median(times[(model, "deploytool")]), statistics.median(times[(model, "bare")])
        print(f"{model:<13} median deploytool export (export + checks) {a:6.2f} s, bare converter calls {b:6.2f} s, "
              f"ratio {a / b:.2f}  (target <= 1.25)")
        rows.append([f"`{model}`", f"{a:.2f} s", f"{b:.2f} s", f"**{a / b:.2f}**"])
    write_markdown(ap, args, f"Medians of {args.rounds} round(s), A/B alternating, fresh processes:\n\n" + md_table(
        ["model", "deploytool export (5 formats + checks)", "bare converter calls", "ratio (target <= 1.25)"], rows))


if __name__ == "__main__":
    main()
