"""Wall time of `deploytool validate` on the digits_cnn bundle (all formats, default samples).

    python scripts/bench_validate.py [--rounds 5] [--markdown docs/figures/bench_validate.md]

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

from _common import add_markdown_option, md_table, write_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    add_markdown_option(ap)
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
    summary = (f"median `deploytool validate` wall time of the `digits_cnn` bundle: "
               f"**{statistics.median(times):.2f} s** over {args.rounds} rounds (target < 15 s); "
               f"rounds: {', '.join(f'{t:.2f}' for t in times)} s")
    rows = []
    for key, a in report["targets"].items():
        t = a["timings"]
        rows.append([f"`{key}`", f"{t.get('worker_start_s', 0) + t.get('import_s', 0):.2f}",
                     f"{t.get('load_s', 0):.3f}", f"{t.get('first_inference_s', 0):.4f}"])
    table = md_table(["target", "worker start + import s", "load s", "first inference s"], rows)
    print(f"\n{summary}\n\nlast round, per target:\n{table}")
    write_markdown(ap, args, f"{summary}.\n\nWhere the time goes in the last round, per target:\n\n{table}")


if __name__ == "__main__":
    main()
