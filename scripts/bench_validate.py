"""Wall time of `deploytool validate` on the digits_cnn bundle (all formats, default samples).

    python scripts/bench_validate.py [--rounds 5]

Exports the bundle once, then runs validate ROUNDS times as fresh processes and prints the
median wall time and, from the JSON report, where the time goes per runtime worker (process
start + runtime import, model load, first inference).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    subprocess.run([sys.executable, "-m", "deploytool", "export", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    bundle = out / "digits_cnn"
    times = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle)], capture_output=True,
                              text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(proc.stdout + proc.stderr)
        print(f"round {r + 1}: {times[-1]:.2f} s", flush=True)
    report = json.loads((bundle / "reports/validation.json").read_text())
    print(f"\nmedian validate wall time: {statistics.median(times):.2f} s over {args.rounds} rounds "
          f"(target < 15 s)\n\nlast round, per worker (s):")
    print(f"{'format':<12} {'runtime':<12} {'start+import':>12} {'load':>8} {'first_inf':>10}")
    for name, a in report["artifacts"].items():
        t = a["timings"]
        print(f"{name:<12} {a['runtime']:<12} {t.get('worker_start_s', 0) + t.get('import_s', 0):>12.2f} "
              f"{t.get('load_s', 0):>8.2f} {t.get('first_inference_s', 0):>10.4f}")


if __name__ == "__main__":
    main()
