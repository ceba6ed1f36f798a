"""Where it runs, measured: p50 of every target of the default bundle beside the Python runtime of the same artifact.

    python scripts/bench_targets.py [--bundle B] [--threads 1] [--markdown docs/figures/bench_targets.md]

Exports digits_cnn with every format (unless --bundle names a bundle), then times every target in ONE `deploytool
bench` run (1 thread, batch 1, each target in a fresh worker or page, bench's protocol), so the ratios are measured
side by side: TorchScript from C++ (libtorch) vs from Python, onnxruntime-web in Chromium vs native onnxruntime,
TensorFlow.js (wasm) vs the SavedModel on TensorFlow it was converted from, ExecuTorch vs TorchScript.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_markdown_option, md_table, write_markdown

from deploytool.runtimes import RUNTIMES

# a target -> the row it is compared with, where that is not the same artifact on its default runtime
COMPARED_WITH = {"tfjs@tfjs_wasm": "savedmodel@tensorflow", "executorch@executorch": "torchscript@torchscript",
                 "executorch_int8@executorch": "executorch@executorch"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="an existing bundle (default: export digits_cnn with every format)")
    ap.add_argument("--threads", type=int, default=1)
    add_markdown_option(ap)
    args = ap.parse_args()
    bundle = args.bundle
    if bundle is None:
        out = Path(tempfile.mkdtemp(prefix="bench-targets-"))
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--out", str(out), "-q"], check=True)
        bundle = out / "digits_cnn"
    subprocess.run([sys.executable, "-m", "deploytool", "bench", str(bundle), "--threads", str(args.threads),
                    "--batch", "1", "--no-peak"], check=True, stdout=subprocess.DEVNULL)
    report = json.loads((bundle / "reports" / "bench.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    rows = {f"{r['format']}@{r['runtime']}": r for r in report["rows"] if r["status"] == "ok"}
    defaults = {name: a["runtime"] for name, a in manifest["artifacts"].items()}
    table = []
    for key, r in sorted(rows.items(), key=lambda kv: kv[1]["p50_ms"]):
        base = COMPARED_WITH.get(key) or f"{r['format']}@{defaults.get(r['format'])}"
        ratio = "" if base == key or base not in rows else f"{r['p50_ms'] / rows[base]['p50_ms']:.2f}× `{base}`"
        rss = "-" if RUNTIMES[r["runtime"]].extra == "browser" else f"{r['rss_peak_mb']:.0f}"
        table.append([f"`{key}`", f"{r['p50_ms']:.4f}", f"{r['p90_ms']:.4f}", r["n"], f"{r['load_s']:.2f}", rss, ratio])
    text = md_table(["target", "p50 ms", "p90 ms", "n", "load s", "peak RSS MB", "p50 vs"], table)
    skipped = [f"`{r['format']}@{r['runtime']}` ({r['status']}: {r['reason']})" for r in report["rows"]
               if r["status"] != "ok"]
    note = (f"`{manifest['model']['name']}`, {args.threads} thread(s), batch 1, one `deploytool bench` run "
            f"({report['protocol'].get('min_runs')}+ timed calls per target after warm-up; browser targets time "
            "themselves in the page with performance.now(); their peak RSS is not shown: the worker's would leave "
            "out Chromium's).")
    if skipped:
        note += f" Not timed: {'; '.join(skipped)}."
    print(f"{note}\n\n{text}")
    write_markdown(ap, args, f"{note}\n\n{text}")


if __name__ == "__main__":
    main()
