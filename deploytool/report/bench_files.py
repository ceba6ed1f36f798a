"""bench.json (schema-versioned: protocol, machine, versions, every row with its raw samples) and
bench.csv. Renders the rows bench measured; computes nothing new."""
from __future__ import annotations

import csv
from pathlib import Path

from deploytool.core.errors import UsageError
from deploytool.measuring import timing
from deploytool.results import BENCH_SCHEMA, BenchRow, Comparison
from deploytool.store import bundle
from deploytool.store.manifest import Manifest

SCHEMA_VERSION = BENCH_SCHEMA
CSV_FIELDS = ["format", "runtime", "threads", "batch", "status", "p50_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms",
              "std_ms", "iqr_ms", "cv", "throughput_per_s", "n", "import_s", "load_s", "first_inference_ms",
              "rss_after_load_mb", "rss_peak_mb", "size_bytes", "gflops_per_s", "pct_of_peak", "settings", "reason",
              "warnings"]


def write_bench_reports(manifest: Manifest, manifest_sha256: str, machine: dict, rows: list[BenchRow],
                        comparison: list[Comparison] | None, protocol: timing.Protocol, threshold: float,
                        reports_dir: Path, extra: dict | None = None) -> dict[str, Path]:
    """``machine``: the fingerprint of the machine measured on, with its ``gemm_peak`` (deploytool.measuring.peak's
    probe: fp32 GFLOP/s at 1 and all threads, the library; rows' pct_of_peak)."""
    row_dicts = [r.to_dict() for r in rows]
    data = {
        "schema_version": SCHEMA_VERSION, "created": bundle.now_utc(), "model": manifest.model.name,
        "manifest_sha256": manifest_sha256, "machine": machine,
        "flops_per_sample": manifest.flops.per_sample if manifest.flops else None,
        "platform": bundle.platform_info(), "versions": bundle.package_versions(),
        "protocol": {**protocol.to_dict(), "percentile_method": timing.PERCENTILE_METHOD,
                     "timer": "time.perf_counter_ns", "memory": "peak RSS of the worker (Linux VmHWM; else ru_maxrss)"},
        "rows": row_dicts, "compare": None if comparison is None else [c.to_dict() for c in comparison],
        "threshold": threshold,
    }
    data.update(extra or {})  # e.g. "pipeline": bench --pipeline's pre/post time (commands/pipeline.py)
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        bundle.write_json(reports_dir / "bench.json", data)
        with open(reports_dir / "bench.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for r, d in zip(rows, row_dicts):
                w.writerow({**d, "settings": r.settings if r.settings is not None else "",
                            "warnings": "; ".join(r.warnings)})
    except OSError as e:
        raise UsageError(f"cannot write reports to {reports_dir}: {e.strerror or e} (use --reports DIR)") from None
    return {"json": reports_dir / "bench.json", "csv": reports_dir / "bench.csv"}
