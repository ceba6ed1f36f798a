"""What localising a failing hop costs: `deploytool validate -f onnx -f savedmodel` with the hop
passing against the same run with it failing (a zero tolerance for the SavedModel, so the first op
TensorFlow rounds differently from onnxruntime is found), interleaved A B A B in fresh processes.

    python scripts/bench_localise.py [--model digits_cnn] [--bundle DIR] [--rounds 3] [--markdown FILE]

Exports the model (onnx + savedmodel) unless --bundle is given; prints the median wall time of
each, their difference, and the matching's own time and tensors compared from validation.json.
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
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--bundle", type=Path, help="an existing bundle with onnx and savedmodel artifacts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4)
    add_markdown_option(ap)
    args = ap.parse_args()
    bundle = args.bundle
    if bundle is None:
        out = Path(tempfile.mkdtemp(prefix="bench-localise-"))
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", args.model, "--formats", "savedmodel",
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
        bundle = out / args.model
    base = [sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", "onnx", "-f", "savedmodel",
            "--samples", str(args.samples)]
    runs = {"passing hop": base, "failing hop, localised": base + ["--atol", "savedmodel=0", "--rtol", "savedmodel=0"]}
    times: dict[str, list[float]] = {k: [] for k in runs}
    finding = None
    for r in range(args.rounds):
        for label, cmd in runs.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            times[label].append(time.perf_counter() - t0)
            if proc.returncode not in (0, 5):
                sys.exit(proc.stdout + proc.stderr)
            if proc.returncode == 5:
                finding = json.loads((bundle / "reports/validation.json").read_text())["targets"][
                    "savedmodel@tensorflow"]["first_diverging"]
            print(f"round {r + 1} {label}: {times[label][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{bundle.name}: median validate wall time over {args.rounds} interleaved rounds")
    for k, v in med.items():
        print(f"  {k:<24} {v:6.2f} s")
    print(f"  localisation costs       {med['failing hop, localised'] - med['passing hop']:6.2f} s")
    rows = [[k, f"{v:.2f} s"] for k, v in med.items()]
    rows.append(["**localisation costs**", f"**{med['failing hop, localised'] - med['passing hop']:+.2f} s**"])
    if finding:
        found = f"{finding['op_type']} {finding['op_name']!r}" if finding["localised"] else finding["why"]
        print(f"  matching alone           {finding['seconds']:6.2f} s ({finding['compared']} parent tensors "
              f"compared); found: {found}")
        rows.append(["the matching alone", f"{finding['seconds']:.2f} s ({finding['compared']} parent tensors "
                                           f"compared; found: {found})"])
    write_markdown(ap, args, f"`{bundle.name}`, `validate -f onnx -f savedmodel --samples {args.samples}`, median "
                             f"wall time over {args.rounds} interleaved round(s):\n\n"
                   + md_table(["run", "time"], rows))


if __name__ == "__main__":
    main()
