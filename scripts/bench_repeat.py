"""Repeatability: p50 of every mobilenet_v2 row over repeated `deploytool bench` runs.

    python scripts/bench_repeat.py [--bundle DIR] [--repeats 5] [--min-time 5] [--markdown FILE]

Runs `deploytool bench BUNDLE --threads 1` REPEATS times and prints, per row, the p50 of each
run and their coefficient of variation (target <= 5%). Exports mobilenet_v2 first when no
bundle is given.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import add_markdown_option, bundle_or_export, md_table, write_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=5.0)
    add_markdown_option(ap)
    args = ap.parse_args()
    bundle, work = bundle_or_export(args.bundle, "bench-repeat-")
    p50s: dict[str, list[float]] = {}
    for r in range(args.repeats):
        subprocess.run([sys.executable, "-m", "deploytool", "bench", str(bundle), "--threads", "1", "--min-time",
                        str(args.min_time), "--reports", str(work)], check=True, stdout=subprocess.DEVNULL)
        for row in json.loads((work / "bench.json").read_text())["rows"]:
            p50s.setdefault(f"{row['format']} ({row['runtime']})", []).append(row["p50_ms"])
        print(f"run {r + 1} done", flush=True)
    print(f"\n{'row':<28} {'p50 per run (ms)':<48} {'CV':>6}")
    rows = []
    for name, vals in p50s.items():
        cv = statistics.stdev(vals) / statistics.mean(vals) if len(vals) > 1 else 0.0
        print(f"{name:<28} {' '.join(f'{v:7.2f}' for v in vals):<48} {cv:6.1%}")
        rows.append([f"`{name}`", ", ".join(f"{v:.2f}" for v in vals), f"**{cv:.1%}**"])
    write_markdown(ap, args, f"`{bundle.name}`, 1 thread, {args.repeats} separate `deploytool bench` runs:\n\n"
                   + md_table(["row", "p50 per run, ms", "CV (target <= 5%)"], rows))


if __name__ == "__main__":
    main()
