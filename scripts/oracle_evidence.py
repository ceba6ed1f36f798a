"""Evidence for the float64 oracle's FACTOR (deploytool/checking/oracle.py): every fp32 artifact's error against
the float64 result, relative to the fp32 reference's own, on every runtime that runs it.

    python scripts/oracle_evidence.py [--models digits_cnn,multi_io,tiny_transformer] [--formats ...]
        [--markdown docs/figures/oracle_evidence.md]

Exports each model with ``--oracle float64`` (the fp32 formats only), then prints one row per target, golden
set and output, with the figures of its worst sample (the rule judges each sample on its own): the sample, the
reference's noise on it (max |ref - float64|), the artifact's error on it (max |artifact - float64|), their
ratio (against the noise or the sample's 4-ulp floor, whichever is larger), and the oracle's and the fixed fp32
tier's verdicts side by side; then per model the export time with and without the oracle (the
float64 runs as the manifest records them, and the whole export).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import add_markdown_option, md_table, write_markdown

FP32 = ["torchscript", "onnx", "openvino", "savedmodel", "tflite_fp32", "executorch", "tfjs"]


def export(model: str, formats: list[str], out: Path, oracle: str | None):
    from deploytool import api

    t0 = time.perf_counter()
    outcome = api.export(model, api.ExportOptions(formats=formats, out=out, oracle=oracle))
    return outcome, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits_cnn,multi_io,tiny_transformer")
    ap.add_argument("--formats", default=",".join(FP32))
    ap.add_argument("--no-baseline", action="store_true", help="skip the export without the oracle (its time)")
    add_markdown_option(ap)
    args = ap.parse_args()
    from deploytool.checking import oracle

    formats = args.formats.split(",")
    rows, times, worst = [], [], 0.0
    for model in args.models.split(","):
        out = Path(tempfile.mkdtemp(prefix="oracle-evidence-"))
        outcome, seconds = export(model, formats, out / "with", oracle.KIND)
        info = outcome.manifest.golden.oracle or {}
        base = None if args.no_baseline else export(model, formats, out / "without", None)[1]
        times.append([model, f"{info.get('seconds', 0):.2f}", f"{seconds:.1f}",
                      "-" if base is None else f"{base:.1f}", info.get("why_not") or ""])
        for key, chk in outcome.checks.items():
            o = chk.oracle
            if not o or not o.get("available"):
                if chk.status.value in ("pass", "fail") and chk.format in formats:
                    rows.append([model, key, *["-"] * 8, chk.status.value,
                                 (o or {}).get("why_not", chk.reason)[:60]])
                continue
            for set_name, per in o["sets"].items():
                for output, f in per.items():
                    worst = max(worst, f["ratio"])
                    w = f["worst"]
                    rows.append([model, key, set_name, output, str(w["sample"]), f"{w['noise']:.2e}",
                                 f"{w['ulps_floor']:.2e}", f"{w['error']:.2e}", f"{f['ratio']:.2f}",
                                 "PASS" if f["passed"] else "FAIL",
                                 "PASS" if f["fixed_tier"]["passed"] else "FAIL", chk.status.value])
        print(f"{model}: done", flush=True)
    table = md_table(["model", "target", "set", "output", "worst sample", "reference noise", "4-ulp floor",
                      "artifact error", "ratio",
                      "oracle", "fixed fp32 tier", "check"], rows)
    timing = md_table(["model", "float64 runs (s)", "export with --oracle (s)", "export without (s)", "no oracle"],
                      times)
    body = f"{table}\n\nLargest ratio: {worst:.2f} (FACTOR {oracle.FACTOR:g}).\n\n{timing}\n"
    print(body)
    write_markdown(ap, args, body)


if __name__ == "__main__":
    main()
