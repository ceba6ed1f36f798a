"""report.md: GitHub-flavoured Markdown, verdict first, one row per target, a column group per
machine, "where it runs" (every artifact × every runtime that runs it: verdict, error, p50), failures
with their blamed hop and repro folder, the environment folded away. Small enough to append to
$GITHUB_STEP_SUMMARY as it is."""
from __future__ import annotations

from deploytool.report import oracle_section, pipeline_section
from deploytool.report.console import human_size
from deploytool.report.steps import steps_section
from deploytool.report.view import EXPORT_KIND, ArtifactView, artifacts, matrix, pareto, when
from deploytool.results import newest_per_machine


def _ms(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _acc(v: ArtifactView) -> str:
    a = v.accuracy
    return "-" if not a else f"{a['accuracy']:.2%} ({-a['drop_points']:+.2f})"


def verdict_line(views: list[ArtifactView], markdown: bool = True) -> str:
    """The headline: the verdict, each failing target with what its failure is, and how many targets were
    checked in the latest run and how many come from earlier results (with their dates). ``markdown``:
    bold and code spans (report.md, the step summary); plain text otherwise (report.html escapes it)."""
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    strong = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    made = [v for v in views if v.verdicts]
    if not made:
        return strong("No artifact was checked.")
    bad = [v for v in made if v.failed]
    counts = _counts(made)
    if bad:
        return f"{strong('FAIL')}: " + ", ".join(f"{code(v.label)} ({v.failure})" for v in bad) + f". {counts}."
    others = [v for v in made if not v.passed]
    note = f" ({', '.join(f'{code(v.label)} {sorted(set(v.verdicts.values()))[0]}' for v in others)})" if others else ""
    return f"{strong('PASS')}: no target (artifact on runtime) fails on any machine that checked it{note}. {counts}."


def _counts(made: list[ArtifactView]) -> str:
    """``Checked in the latest run (2026-12-03 12:40 UTC): 2 targets, 1 failing; from earlier results
    (2026-12-03 12:18 UTC): 9 targets, none failing``."""
    parts = []
    for now, what in ((True, "Checked in the latest run"), (False, "from earlier results")):
        group = [v for v in made if v.now == now]
        if not group:
            continue
        dates = sorted({when(c.date) for v in group for c in v.checked.values() if c.now == now})
        failing = sum(v.failed for v in group)
        parts.append(what + (f" ({', '.join(dates)})" if dates else "")
                     + f": {len(group)} target{'s' if len(group) != 1 else ''}, {failing or 'none'} failing")
    return "; ".join(parts)[:1].upper() + "; ".join(parts)[1:]


def table(results, views: list[ArtifactView]) -> tuple[list[str], list[list[str]]]:
    """The per-target table (headers, rows of cell text), shared by the Markdown and HTML pages."""
    bench_machines = [d["machine"]["name"] for d in results.benches]
    headers = ["format", "runtime", "computes in", "verdict", "basis", "max_abs_err", "accuracy (drop)", "size"]
    for name in bench_machines:
        headers += [f"p50 / p90 ms @ {name}", f"load / first ms @ {name}", f"peak RSS MB @ {name}"]
    headers += ["chain"]
    rows = []
    for v in views:
        cells = [v.name, v.column, v.executed or v.precision, verdict_text(v), v.basis or "-",
                 "-" if v.max_abs is None else f"{v.max_abs:.2e}", _acc(v), human_size(v.size_bytes)]
        for name in bench_machines:
            t = v.best(name)
            cells += ["-", "-", "-"] if t is None else [f"{_ms(t.p50_ms)} / {_ms(t.p90_ms)} ({t.threads}t)",
                                                         f"{t.load_ms:.0f} / {_ms(t.first_ms)}", f"{t.rss_mb:.0f}"]
        cells.append(" → ".join(v.chain) + (f" ({v.route})" if v.route else ""))
        rows.append(cells)
    return headers, rows


def verdict_text(v: ArtifactView, origins: bool = True) -> str:
    """``PASS``; each machine's verdict named by the machine when several checked it (``PASS (runner-a), FAIL
    (runner-b)``), with where it comes from when not the latest run (``origins``); the export status if none."""
    return ", ".join(s.upper() + _paren(mach if len(v.verdicts) > 1 else "", v.origin(mach) if origins else "")
                     for mach, s in v.verdicts.items()) or v.exported.upper()


NOT_RUN = "—"  # a matrix cell of a runtime that does not run the artifact
MATRIX_KEY = (f"Each cell: verdict · max abs error · task accuracy (drop in points), where measured · p50 at 1 "
              f"thread, batch 1 (the machine named when several); {NOT_RUN}: the runtime does not run that artifact.")


def matrix_table(results, views: list[ArtifactView]) -> tuple[list[str], list[list[str]]]:
    """"Where it runs" (``view.matrix``) as (headers, rows of cell text), shared by the Markdown and HTML pages."""
    mx = matrix(results.manifest, views)
    bench_machines = list(dict.fromkeys(d["machine"]["name"] for d in results.benches))
    rows = [[fmt, *(_cell(cells[r], mx.exported[fmt], bench_machines) if r in cells else NOT_RUN
                    for r in mx.runtimes)] for fmt, cells in mx.rows.items()]
    return ["artifact", *mx.runtimes], rows


def _cell(v: ArtifactView | None, exported: str, bench_machines: list[str]) -> str:
    """``PASS · 1.20e-06 · p50 0.412 ms``; ``not checked`` for a target no result holds."""
    if exported != "ok":
        return EXPORT_KIND.get(exported, exported.replace("_", " "))
    if v is None or not (v.verdicts or v.timings):
        return "not checked"
    parts = [verdict_text(v, origins=False) if v.verdicts else "not checked"]
    if v.verdicts:
        parts += ["-" if v.max_abs is None else f"{v.max_abs:.2e}", *([_acc(v)] if v.accuracy else [])]
    p50 = [(m, t) for m in bench_machines if (t := v.single(m)) is not None]
    if p50:
        several = len(bench_machines) > 1
        parts.append("p50 " + ", ".join(f"{_ms(t.p50_ms)} ms" + (f" ({t.threads}t)" if t.threads != 1 else "")
                                        + (f" @ {m}" if several else "") for m, t in p50))
    return " · ".join(parts)


def failures(views: list[ArtifactView], markdown: bool = True) -> list[str]:
    """One line per failing target: what failed, where the verdict comes from when not the latest run, the
    reason (with the blamed hop) and the basis, and the repro folder."""
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    out = []
    for v in (v for v in views if v.failed):
        repro = f" — repro: {code(v.repro)}" if v.repro else ""
        basis = f" ({v.basis})" if v.basis else ""
        out.append(f"{code(v.name)} on {v.runtime}, {v.failure}{_paren(*map(v.origin, v.verdicts))}: "
                   f"{v.reason or 'no reason recorded'}{basis}{repro}")
    return out


def environment(results, markdown: bool = True) -> list[str]:
    """The model, the versions it was exported with, and each machine that validated or benched it (once)."""
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    m = results.manifest
    described = f" ({m.model.description})" if m.model.description else ""
    lines = [f"model: {code(m.model.name)}{described}, source {code(m.model.source.get('kind'))} "
             f"({m.model.framework}), exported {m.created} with deploytool {m.tool.get('version')}",
             "versions at export: " + ", ".join(f"{k} {v}" for k, v in m.versions.items() if v)]
    for data in newest_per_machine(results.validations) + newest_per_machine(results.benches):
        mach = data["machine"]
        kind = "bench" if "rows" in data else "validate"
        lines.append(f"{kind} on {code(mach['name'])}: {mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('os')}, "
                     "runtimes " + ", ".join(f"{k} {v}" for k, v in (mach.get("runtimes") or {}).items() if v))
    return lines




def coverage_lines(manifest, markdown: bool = True) -> list[str]:
    """A warning per golden set whose inputs exercise the model weakly (an integer input drawn with no range
    known), as the manifest records each set's coverage; none when they cover it."""
    strong = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    out = []
    for name, rec in manifest.golden.sets.items():
        weak = {i: e for i, e in rec.coverage.items() if e.get("weak")}
        if weak:
            which = ", ".join(f"{i} ({e['distinct']} distinct values in {e['range']})" for i, e in weak.items())
            out.append(f"{strong('Weak coverage')}: golden set {name} covers integer input(s) {which} only: no range "
                       "was declared or readable from the model; every PASS on it is a weak proof "
                       "(declare --input-range NAME:LOW:HIGH).")
    return out


FAMILIES_KEY = ("Each family's verdict on its own golden sets (seeded: drawn in the declared ranges; data: the "
                "model's or your data; perturbed: that data perturbed; edge: zero or the range's midpoint, the "
                "ranges' ends, the largest dims).")


def families_table(views: list[ArtifactView]) -> tuple[list[str], list[list[str]]] | None:
    """Input families x targets (checking/families.py): each family's verdict per target, where some target was
    judged on more than one family; None otherwise."""
    from deploytool.checking.families import FAMILIES

    shown = [v for v in views if v.families]
    if not any(len(v.families) > 1 for v in shown):
        return None
    names = [f for f in FAMILIES if any(f in v.families for v in shown)]

    def cell(f: dict | None) -> str:
        if f is None:
            return "-"
        return f["status"].upper() + ("" if f.get("gating", True) else " (not gating)")
    return ["target", *names], [[v.label, *(cell(v.families.get(f)) for f in names)] for v in shown]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines, each row's first cell (a name) as code."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(c.replace("|", "\\|") for c in [f"`{cells[0]}`", *cells[1:]]) + " |" for cells in rows)]


def _paren(*parts: str) -> str:
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def render(results) -> str:
    views = artifacts(results)
    machines = results.machines()
    bench_machines = [d["machine"]["name"] for d in results.benches]
    m = results.manifest
    lines = [f"# deploytool report: {m.model.name}", "", verdict_line(views), ""]
    lines += [f"{line}\n" for line in coverage_lines(m)]
    headers, rows = table(results, views)
    lines += _table(headers, rows)
    for name in bench_machines:
        front = pareto({v.label: (t.p90_ms, float(v.size_bytes)) for v in views
                        if v.passed and v.size_bytes and (t := v.best(name)) is not None})
        if front:
            names = ", ".join(f"`{n}`" for n in sorted(front))
            lines += ["", f"Pareto-optimal on p90 latency and size @ {name}: {names}"]
    mx_headers, mx_rows = matrix_table(results, views)
    lines += ["", "## Where it runs", "", MATRIX_KEY, "", *_table(mx_headers, mx_rows)]
    lines += pipeline_section.lines(results)  # validate --pipeline: decision agreement per target
    fam = families_table(views)
    if fam is not None:  # docs/families.md
        lines += ["", "## Input families", "", FAMILIES_KEY, "", *_table(*fam)]
    lines += oracle_section.markdown_lines(results)  # --oracle float64: the fp32 tier's two verdicts
    failed = failures(views)
    if failed:
        lines += ["", "## Failures", "", *(f"- {line}" for line in failed)]
    lines += steps_section(views)
    lines += ["", "<details><summary>Environment</summary>", "", *(f"- {line}" for line in environment(results)),
              "", "</details>", ""]
    if not machines:
        lines.insert(3, "_No validation or bench results yet: run `deploytool validate` and `deploytool bench`._\n")
    return "\n".join(lines)
