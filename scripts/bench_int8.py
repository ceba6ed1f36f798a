"""Int8 trade-offs on mobilenet_v2 (1 thread, batch 1): p50 latency and size of each int8 artifact
against its full-precision sibling, rows interleaved round by round in one run (each row a fresh
worker process), plus digits_cnn's task accuracy per artifact on its 449 held-out digits.

    python scripts/bench_int8.py [--rounds 5] [--min-time 3] [--bundles DIR]

Targets: tflite_int8 p50 <= 0.55x tflite_fp32, onnx_int8 p50 <= 0.55x onnx, sizes <= 0.32x;
digits_cnn int8 accuracy within 1.0 point of fp32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from deploytool import api
from deploytool.measuring.timing import Protocol

PAIRS = [("tflite_int8", "tflite_fp32"), ("tflite_dynamic", "tflite_fp32"), ("onnx_int8", "onnx")]
FORMATS = ["tflite_fp32", "tflite_int8", "tflite_dynamic", "onnx", "onnx_int8"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--bundles", type=Path, help="where mobilenet_v2/ and digits_cnn/ bundles are (else exported)")
    args = ap.parse_args()
    out = args.bundles or Path(tempfile.mkdtemp(prefix="deploytool-int8-"))
    for model in ("mobilenet_v2", "digits_cnn"):
        if not (out / model / "manifest.json").exists():
            outcome = api.export(model, FORMATS, out)
            print(f"exported {model} in {outcome.seconds:.1f} s (exit {outcome.exit_code})")
    bundle = out / "mobilenet_v2"
    protocol = Protocol(min_time=args.min_time, min_runs=100)
    p50: dict[str, list[float]] = {f: [] for f in FORMATS}
    for r in range(args.rounds):
        order = FORMATS[r % len(FORMATS):] + FORMATS[:r % len(FORMATS)]  # rotate: no format always goes first
        for fmt in order:
            res = api.bench(bundle, formats=[fmt], threads=[1], batches=[1], protocol=protocol, with_source=False,
                            reports_dir=out / "reports")
            row = next(x for x in res.rows if x.format == fmt)
            assert row.p50_ms is not None, row.reason
            p50[fmt].append(row.p50_ms)
        print(f"round {r + 1}: " + ", ".join(f"{f} {p50[f][-1]:.3f}" for f in FORMATS), flush=True)
    sizes = {n: rec.size_bytes for n, rec in api.read_manifest(bundle).artifacts.items()}
    med = {f: statistics.median(v) for f, v in p50.items()}
    print("\nmobilenet_v2, 1 thread, batch 1: median p50 over rounds")
    for f in FORMATS:
        print(f"  {f:<15} {med[f]:8.3f} ms  {sizes[f] / 2**20:6.2f} MiB")
    for q, base in PAIRS:
        print(f"  {q} / {base}: p50 {med[q] / med[base]:.3f}x, size {sizes[q] / sizes[base]:.3f}x")
    report = json.loads((out / "digits_cnn/reports/validation.json").read_text())["artifacts"]
    print("\ndigits_cnn task accuracy on the 449 held-out digits")
    for f in (f for f in FORMATS if (report.get(f) or {}).get("accuracy")):
        a = report[f]["accuracy"]
        print(f"  {f:<15} {a['accuracy']:.2%}  ({-a['drop_points']:+.2f} points vs the torch source)")


if __name__ == "__main__":
    main()
