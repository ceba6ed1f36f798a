"""Plain-text tables for the terminal.

By default a table fits the terminal (100 columns when stdout is not one): each row's note goes
below the table, wrapped, and the least important columns are left out until the rest fits (a
line says which; the Markdown/HTML report and ``--wide`` show every column, notes as the last one).
"""
from __future__ import annotations

import shutil
import sys
import textwrap

from deploytool.results import BenchRow, Comparison, target_label
from deploytool.running.jobs import ArtifactStatus
from deploytool.store.manifest import Manifest


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


def table(headers: list[str], rows: list[list], columns: list[int] | None = None) -> str:
    if columns is not None:
        headers, rows = [headers[i] for i in columns], [[r[i] for i in columns] for r in rows]
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


WIDTH = 100  # what a table fits when stdout is not a terminal


def terminal_width() -> int:
    """The terminal's width when stdout is one (at least 60), else ``WIDTH``."""
    if sys.stdout.isatty():
        return max(60, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def fit(headers: list[str], rows: list[list], notes: list[tuple[str, str]], optional: list[str],
        wide: bool = False, width: int | None = None) -> str:
    """``rows`` as a table with each row's note (``notes[i]``: the row's name, its note): with ``wide``
    as the last column; otherwise below the table, wrapped to ``width``, with the ``optional``
    columns left out (first named first) while the table is wider than ``width``."""
    if wide:
        return table(headers + ["note"], [list(r) + [n] for r, (_, n) in zip(rows, notes)])
    width = width or terminal_width()
    keep, dropped = list(range(len(headers))), []
    for name in optional:
        if name not in headers or _widest(table(headers, rows, keep)) <= width:
            continue
        keep.remove(headers.index(name))
        dropped.append(name)
    out = [table(headers, rows, keep)]
    noted: list[tuple[str, str]] = []
    first: dict[str, str] = {}  # a note several rows share (a vacuous reference) is printed once
    for k, n in notes:
        if n:
            noted.append((k, f"as {first[n]}" if n in first else n))
            first.setdefault(n, k)
    if noted:
        out.append("notes:")
        out += [textwrap.fill(f"{k}: {n}", width, initial_indent="  ", subsequent_indent="      ",
                              break_on_hyphens=False) for k, n in noted]
    if dropped:
        out.append(textwrap.fill(f"({', '.join(dropped)} left out to fit {width} columns: --wide shows every "
                                 "column)", width, break_on_hyphens=False))
    return "\n".join(out)


def _widest(text: str) -> int:
    return max(map(len, text.splitlines()))


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


def export_table(manifest: Manifest, checks: dict, wide: bool = False, width: int | None = None) -> str:
    """One row per target: each artifact on every runtime it was checked on (one row, on its default
    runtime, for an artifact that was not exported)."""
    rows, notes, row_checks = [], [], []
    for name, rec in manifest.artifacts.items():
        mine = [c for c in checks.values() if c.format == name] or [None]
        for chk in mine:
            status = chk.status.upper() if rec.status == ArtifactStatus.OK and chk else rec.status.upper()
            note = (chk.reason if chk and chk.reason else "") or (rec.error or "") or _skipped(chk)
            notes.append((_label(name, chk, len(mine)), "; ".join(filter(None, [
                note, chk.coverage if chk else "", chk.basis if chk else "", chk.overrides_text() if chk else "",
                *(chk.notes if chk else []),
                rec.route.text() if rec.route else ""]))))
            rows.append([name, chk.target.where if chk else rec.runtime, status, _computes(rec, chk),
                         fmt_err(chk.max_abs if chk else None), rec.tier, human_size(rec.size_bytes),
                         f"{rec.export_seconds:.1f}" if rec.export_seconds is not None else "-"])
            row_checks.append(chk)
    headers, rows = _with_accuracy(["format", "runtime", "status", "computes", "max_abs_err", "tier", "size",
                                    "export_s"], rows, row_checks, 5)
    return _with_steps(fit(headers, rows, notes, ["tier", "export_s", "size"], wide, width), checks, width)


def _computes(rec, chk) -> str:
    """The precision the target computed in (``ArtifactCheck.executed``), else the artifact's."""
    return (chk.executed if chk is not None else "") or rec.precision


def _label(name: str, chk, count: int = 1) -> str:
    """How a table's note names a row: the format on its default runtime, FORMAT@RUNTIME on another."""
    return target_label(chk.format, chk.runtime, chk.platform) if chk is not None else name


def _skipped(chk) -> str:
    """Golden sets an artifact could not take (a converter fixed a dim), said next to its verdict."""
    if not chk or not chk.skipped_sets:
        return ""
    return "; ".join(f"{name} set not run: {why}" for name, why in chk.skipped_sets.items())


def _min_metric(chk, key: str):
    vals = [v["metrics"][key] for per_set in chk.sets.values() for v in per_set.values()
            if v["metrics"].get(key) is not None]
    return min(vals) if vals else None


def validate_table(manifest: Manifest, checks: dict, wide: bool = False, width: int | None = None) -> str:
    """One row per target checked."""
    rows, notes = [], []
    for chk in checks.values():
        name = chk.format
        rec = manifest.artifacts[name]
        cos, sqnr = _min_metric(chk, "cosine"), _min_metric(chk, "sqnr_db")
        hop = "-"
        hop_errs = [v["metrics"]["max_abs"] for per in chk.hop.values() for v in per.values()
                    if v["metrics"]["max_abs"] is not None]
        if hop_errs:
            hop = f"{max(hop_errs):.2e}"
        rows.append([name, chk.target.where, chk.status.upper(), _computes(rec, chk), fmt_err(chk.max_abs),
                     "-" if cos is None else f"{cos:.6f}", "-" if sqnr is None else f"{sqnr:.1f}",
                     hop, rec.tier, ",".join(chk.sets) or "-"])
        several = sum(1 for c in checks.values() if c.format == name)
        notes.append((_label(name, chk, several), "; ".join(filter(None, [
            chk.reason or _skipped(chk), chk.coverage, chk.basis, chk.overrides_text(), *chk.notes,
            rec.route.text() if rec.route else ""]))))
    headers, rows = _with_accuracy(["format", "runtime", "status", "computes", "max_abs_err", "min_cosine",
                                    "min_sqnr_db", "vs_parent", "tier", "sets"], rows, list(checks.values()), 8)
    return _with_steps(fit(headers, rows, notes, ["tier", "min_sqnr_db", "min_cosine", "vs_parent", "computes"], wide,
                           width), checks, width)


def _with_steps(text: str, checks: dict, width: int | None) -> str:
    """The table and, where targets ran a multi-step loop, one line saying what it found (report/steps.py)."""
    from deploytool.report.steps import console_line

    line = console_line(checks)
    return text if not line else text + "\n" + textwrap.fill(line, width or terminal_width(), subsequent_indent="  ",
                                                            break_on_hyphens=False)


def _ms(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def bench_table(rows: list[BenchRow], wide: bool = False, width: int | None = None) -> str:
    out, notes = [], []
    for r in rows:
        s = r.summary
        out.append([r.format, r.runtime, r.threads, r.batch, r.status.upper(),
                    _ms(s.p50_ms if s else None), _ms(s.p90_ms if s else None), _ms(s.p99_ms if s else None),
                    f"{s.cv:.3f}" if s else "-", f"{s.throughput_per_s:.0f}" if s else "-", s.n if s else "-",
                    _fixed(r.import_s, 1, ".2f"), _fixed(r.load_s, 1e3, ".0f"), _ms(r.first_inference_ms),
                    _fixed(r.rss_peak_mb, 1, ".0f"), human_size(r.size_bytes), _achieved(r)])
        notes.append((r.label, "; ".join(filter(None, [_relative(r), r.reason or "; ".join(r.warnings)]))))
    return fit(["format", "runtime", "thr", "batch", "status", "p50_ms", "p90_ms", "p99_ms", "cv", "items/s", "n",
                "import_s", "load_ms", "first_ms", "rss_mb", "size", "GFLOP/s"], out, notes,
               ["items/s", "n", "import_s", "cv", "first_ms", "p99_ms", "load_ms"], wide, width)


def _fixed(x: float | None, scale: float, spec: str) -> str:
    return "-" if x is None else format(x * scale, spec)


def _achieved(r: BenchRow) -> str:
    """``27.9 (29%)``: achieved GFLOP/s and its share of the fp32 GEMM peak; ``int8`` where no int8
    peak was measured (GOP/s then)."""
    g = r.gflops_per_s
    if g is None:
        return "-"
    text = f"{g:.1f}" if g >= 1 else f"{g:.2f}"
    if r.pct_of_peak is not None:
        return f"{text} ({r.pct_of_peak:.0f}%)"
    return f"{text} (int8)" if r.peak_note else text


def peak_line(manifest: Manifest, peak: dict) -> str:
    """What the GFLOP/s column is measured against."""
    if peak.get("error"):
        return f"peak: {peak['error']}"
    flops = manifest.flops.per_sample if manifest.flops else None
    work = f"{flops / 1e9:.3g} GFLOP/sample" if flops else "FLOPs not in the manifest"
    return textwrap.fill(f"peak fp32 GEMM: {peak['fp32_gflops_1_thread']:.1f} GFLOP/s at 1 thread, "
                         f"{peak['fp32_gflops_all_threads']:.1f} at {peak['all_threads']} ({peak['library']}); model: "
                         f"{work}; GFLOP/s column: achieved (% of the peak at the row's threads)",
                         terminal_width(), subsequent_indent="  ")


def _relative(r: BenchRow) -> str:
    """``0.48x time, 0.30x size of tflite_fp32``."""
    rel = r.relative
    if rel is None:
        return ""
    size = f", {rel.size_ratio:.2f}x size" if rel.size_ratio else ""
    return f"{rel.p50_ratio:.2f}x time{size} of {rel.to}"


def compare_table(comparison: list[Comparison], threshold: float, wide: bool = False, width: int | None = None) -> str:
    rows = [[c.format, c.runtime, c.threads, c.batch, _ms(c.candidate_p50_ms), _ms(c.baseline_p50_ms),
             "-" if c.ratio is None else f"{c.ratio:.3f}",
             "REGRESSION" if c.regression else ("ok" if c.ratio is not None else "-")]
            for c in comparison]
    notes = [(c.label, c.note) for c in comparison]
    return fit(["format", "runtime", "thr", "batch", "p50_ms", "baseline_p50_ms", f"ratio(>{threshold:g} flags)",
                "verdict"], rows, notes, [], wide, width)
