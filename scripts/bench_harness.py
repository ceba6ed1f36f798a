"""Harness accuracy: deploytool bench's p50 vs a bare loop around the runtime's own run call.

    python scripts/bench_harness.py [--bundle DIR] [--rounds 5] [--min-time 3] [--markdown FILE]

For onnxruntime (ONNX) and LiteRT (TFLite fp32) on mobilenet_v2, alternates A = `deploytool
bench BUNDLE -f FORMAT --threads 1` (fresh worker process, deploytool's protocol and adapters)
and B = a bare loop in this script: the runtime loaded with the same thread setting, the same
golden feeds, the same warm-up and minimum runs/time, timing `session.run(...)` /
`signature_runner(**feeds)` with perf_counter_ns. Prints the median of each side's p50 and the
ratio A/B (target 0.95-1.05). Exports mobilenet_v2 first when no bundle is given.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import add_markdown_option, bundle_or_export, md_table, time_calls, write_markdown

from deploytool.core import contract as C
from deploytool.core import npz


def bare_loop(fmt: str, bundle: Path, manifest: dict, min_time: float, min_runs: int) -> float:
    rec = manifest["artifacts"][fmt]
    contract = C.Contract.from_dict(rec["contract"])
    inputs = npz.load(bundle / manifest["golden"]["sets"]["main"]["inputs"])
    feeds = [C.to_artifact(contract, {k: v[i] for k, v in inputs.items()}) for i in range(len(inputs["image"]))]
    path = str(bundle / rec["path"])
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        call = lambda f: sess.run(None, f)  # noqa: E731
    else:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=path, num_threads=1).get_signature_runner("serving_default")
        call = lambda f: runner(**f)  # noqa: E731
    samples, _ = time_calls(call, feeds, min_runs, min_time)
    return float(np.percentile(np.asarray(samples) / 1e6, 50, method="linear"))


# the runtime the bare loop calls (onnx runs on OpenVINO too)
RUNTIME = {"onnx": "onnxruntime", "tflite_fp32": "litert"}


def tool_p50(fmt: str, bundle: Path, reports: Path, min_time: float, min_runs: int) -> float:
    subprocess.run([sys.executable, "-m", "deploytool", "bench", str(bundle), "-f", fmt, "--runtime", RUNTIME[fmt],
                    "--threads", "1", "--no-source", "--min-time", str(min_time), "--min-runs", str(min_runs),
                    "--reports", str(reports), "--no-peak"], check=True, stdout=subprocess.DEVNULL)
    (row,) = json.loads((reports / "bench.json").read_text())["rows"]
    return row["p50_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--min-runs", type=int, default=200)
    add_markdown_option(ap)
    args = ap.parse_args()
    bundle, work = bundle_or_export(args.bundle, "bench-harness-")
    manifest = json.loads((bundle / "manifest.json").read_text())
    rows = []
    for fmt in ("onnx", "tflite_fp32"):
        a, b = [], []
        for r in range(args.rounds):
            pair = [("deploytool", lambda f=fmt: tool_p50(f, bundle, work, args.min_time, args.min_runs), a),
                    ("bare", lambda f=fmt: bare_loop(f, bundle, manifest, args.min_time, args.min_runs), b)]
            for name, fn, sink in (pair if r % 2 == 0 else pair[::-1]):
                sink.append(fn())
                print(f"{fmt:<12} round {r + 1} {name:<10} p50 {sink[-1]:.3f} ms", flush=True)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{fmt:<12} median p50: deploytool {ma:.3f} ms, bare loop {mb:.3f} ms, ratio {ma / mb:.3f} "
              f"(target 0.95-1.05)\n", flush=True)
        rows.append([f"`{fmt}`", f"{ma:.3f}", f"{mb:.3f}", f"**{ma / mb:.3f}**"])
    write_markdown(ap, args, f"`{bundle.name}`, 1 thread, median p50 over {args.rounds} interleaved round(s):\n\n"
                   + md_table(["artifact", "deploytool bench p50 ms", "bare loop p50 ms", "ratio (target 0.95-1.05)"],
                              rows))


if __name__ == "__main__":
    main()
