"""Plain-text tables for the terminal."""
from __future__ import annotations

from deploytool.jobs import ArtifactStatus, RowStatus
from deploytool.manifest import Manifest


def human_size(n: float | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def fmt_err(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def accuracy_text(chk) -> str:
    """``98.66% (-0.22)``: task accuracy on the labelled set and its change from the source's, in points."""
    a = getattr(chk, "accuracy", None) if chk else None
    if not a:
        return "-"
    return f"{a['accuracy']:.2%} ({-a['drop_points']:+.2f})"


def _with_accuracy(headers: list[str], rows: list[list], checks: list, at: int) -> tuple[list[str], list[list]]:
    """Insert the accuracy column at ``at`` when any artifact was measured on labelled data."""
    if not any(getattr(c, "accuracy", None) for c in checks if c):
        return headers, rows
    return headers[:at] + ["accuracy"] + headers[at:], [r[:at] + [accuracy_text(c)] + r[at:]
                                                         for r, c in zip(rows, checks)]


def export_table(manifest: Manifest, checks: dict) -> str:
    rows = []
    for name, rec in manifest.artifacts.items():
        chk = checks.get(name)
        status = chk.status.upper() if rec.status == ArtifactStatus.OK and chk else rec.status.upper()
        note = (chk.reason if chk and chk.reason else "") or (rec.error or "") or _skipped(chk)
        note = "; ".join(filter(None, [note, chk.overrides_text() if chk else ""]))
        rows.append([name, rec.runtime, status, fmt_err(chk.max_abs if chk else None), rec.tier,
                     human_size(rec.size_bytes),
                     f"{rec.export_seconds:.1f}" if rec.export_seconds is not None else "-", note])
    headers, rows = _with_accuracy(["format", "runtime", "status", "max_abs_err", "tier", "size", "export_s", "note"],
                                   rows, [checks.get(n) for n in manifest.artifacts], 4)
    return table(headers, rows)


def _skipped(chk) -> str:
    """Golden sets an artifact could not take (a converter fixed a dim), said next to its verdict."""
    if not chk or not chk.skipped_sets:
        return ""
    return "; ".join(f"{name} set not run: {why}" for name, why in chk.skipped_sets.items())


def _min_metric(chk, key: str):
    vals = [v["metrics"][key] for per_set in chk.sets.values() for v in per_set.values()
            if v["metrics"].get(key) is not None]
    return min(vals) if vals else None


def validate_table(manifest: Manifest, checks: dict) -> str:
    rows = []
    for name, chk in checks.items():
        rec = manifest.artifacts[name]
        cos, sqnr = _min_metric(chk, "cosine"), _min_metric(chk, "sqnr_db")
        hop = "-"
        hop_errs = [v["metrics"]["max_abs"] for per in chk.hop.values() for v in per.values()
                    if v["metrics"]["max_abs"] is not None]
        if hop_errs:
            hop = f"{max(hop_errs):.2e}"
        rows.append([name, chk.runtime, chk.status.upper(), fmt_err(chk.max_abs),
                     "-" if cos is None else f"{cos:.6f}", "-" if sqnr is None else f"{sqnr:.1f}",
                     hop, rec.tier, ",".join(chk.sets) or "-",
                     "; ".join(filter(None, [chk.reason or _skipped(chk), chk.overrides_text()]))])
    headers, rows = _with_accuracy(["format", "runtime", "status", "max_abs_err", "min_cosine", "min_sqnr_db",
                                    "vs_parent", "tier", "sets", "note"], rows, list(checks.values()), 7)
    return table(headers, rows)


def _ms(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def bench_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        ok = r["status"] == RowStatus.OK
        out.append([r["format"], r["runtime"], r["threads"], r["batch"], r["status"].upper(),
                    _ms(r.get("p50_ms")), _ms(r.get("p90_ms")), _ms(r.get("p99_ms")),
                    f"{r['cv']:.3f}" if ok else "-", f"{r['throughput_per_s']:.0f}" if ok else "-",
                    r.get("n", "-"), f"{r['import_s']:.2f}" if ok else "-", f"{r['load_s'] * 1e3:.0f}" if ok else "-",
                    _ms(r.get("first_inference_ms")), f"{r['rss_peak_mb']:.0f}" if ok else "-",
                    human_size(r.get("size_bytes")), _achieved(r), _relative(r),
                    r.get("reason") or "; ".join(r.get("warnings", []))])
    return table(["format", "runtime", "thr", "batch", "status", "p50_ms", "p90_ms", "p99_ms", "cv", "items/s", "n",
                  "import_s", "load_ms", "first_ms", "rss_mb", "size", "GFLOP/s(%peak)", "vs_full_precision", "note"],
                 out)


def _achieved(r: dict) -> str:
    """``27.9 (29%)``: achieved GFLOP/s and its share of the fp32 GEMM peak; ``int8`` where no int8
    peak was measured (GOP/s then)."""
    g = r.get("gflops_per_s")
    if g is None:
        return "-"
    text = f"{g:.1f}" if g >= 1 else f"{g:.2f}"
    if r.get("pct_of_peak") is not None:
        return f"{text} ({r['pct_of_peak']:.0f}%)"
    return f"{text} (int8)" if r.get("peak_note") else text


def peak_line(manifest: Manifest, peak: dict) -> str:
    """What the GFLOP/s column is measured against."""
    if peak.get("error"):
        return f"peak: {peak['error']}"
    flops = manifest.flops.per_sample if manifest.flops else None
    work = f"{flops / 1e9:.3g} GFLOP/sample" if flops else "FLOPs not in the manifest"
    return (f"peak fp32 GEMM: {peak['fp32_gflops_1_thread']:.1f} GFLOP/s at 1 thread, "
            f"{peak['fp32_gflops_all_threads']:.1f} at {peak['all_threads']} ({peak['library']}); model: {work}")


def _relative(r: dict) -> str:
    """``0.48x time, 0.30x size of tflite_fp32``."""
    rel = r.get("relative")
    if not rel:
        return "-"
    size = f", {rel['size_ratio']:.2f}x size" if rel.get("size_ratio") else ""
    return f"{rel['p50_ratio']:.2f}x time{size} of {rel['to']}"


def compare_table(comparison: list[dict], threshold: float) -> str:
    rows = [[c["format"], c["threads"], c["batch"], _ms(c.get("candidate_p50_ms")), _ms(c.get("baseline_p50_ms")),
             "-" if c["ratio"] is None else f"{c['ratio']:.3f}",
             "REGRESSION" if c["regression"] else ("ok" if c["ratio"] is not None else "-"), c.get("note", "")]
            for c in comparison]
    return table(["format", "thr", "batch", "p50_ms", "baseline_p50_ms", f"ratio(>{threshold:g} flags)", "verdict",
                  "note"], rows)
