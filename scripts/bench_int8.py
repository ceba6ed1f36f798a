"""Int8 trade-offs on mobilenet_v2 (1 thread, batch 1): p50 latency and size of each int8 artifact
against its full-precision sibling, rows interleaved round by round in one run (each row a fresh
worker process), plus digits_cnn's task accuracy per artifact on its 449 held-out digits.

    python scripts/bench_int8.py [--rounds 5] [--min-time 3] [--bundles DIR] [--markdown FILE]

Targets: tflite_int8 p50 <= 0.55x tflite_fp32, onnx_int8 p50 <= 0.55x onnx, sizes <= 0.32x;
digits_cnn int8 accuracy within 1.0 point of fp32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import add_markdown_option, md_table, write_markdown

from deploytool import api
from deploytool.measuring.timing import Protocol

PAIRS = [("tflite_int8", "tflite_fp32"), ("tflite_dynamic", "tflite_fp32"), ("onnx_int8", "onnx")]
FORMATS = ["tflite_fp32", "tflite_int8", "tflite_dynamic", "onnx", "onnx_int8"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--bundles", type=Path, help="where mobilenet_v2/ and digits_cnn/ bundles are (else exported)")
    add_markdown_option(ap)
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
    against = {q: base for q, base in PAIRS}
    rows = []
    for f in FORMATS:
        vs = (f"**{med[f] / med[against[f]]:.3f}x** time, **{sizes[f] / sizes[against[f]]:.3f}x** size of "
              f"`{against[f]}`" if f in against else "")
        rows.append([f"`{f}`", f"{med[f]:.3f}", f"{sizes[f] / 2**20:.2f} MiB", vs])
    speed = md_table(["artifact", "p50 ms", "size", "vs its full-precision sibling"], rows)
    print(f"\nmobilenet_v2, 1 thread, batch 1: median p50 over rounds\n{speed}")
    report = json.loads((out / "digits_cnn/reports/validation.json").read_text())["targets"]
    rows = [[f"`{key}`", f"{a['accuracy']['accuracy']:.2%}", f"{-a['accuracy']['drop_points']:+.2f}"]
            for key, a in report.items() if a["format"] in FORMATS and a.get("accuracy")]
    accuracy = md_table(["target", "accuracy", "points vs the torch source"], rows)
    print(f"\ndigits_cnn task accuracy on the 449 held-out digits\n{accuracy}")
    write_markdown(ap, args, f"`mobilenet_v2`, 1 thread, batch 1, median p50 over {args.rounds} round(s):\n\n{speed}"
                             f"\n\n`digits_cnn` task accuracy on its 449 held-out digits:\n\n{accuracy}")


if __name__ == "__main__":
    main()
