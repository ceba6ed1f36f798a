"""report.md: GitHub-flavoured Markdown, verdict first, one row per artifact, a column group per
machine, failures with their blamed hop and repro folder, the environment folded away. Small
enough to append to $GITHUB_STEP_SUMMARY as it is."""
from __future__ import annotations

from deploytool.report.console import human_size
from deploytool.report.view import ArtifactView, artifacts, pareto


def _ms(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _acc(v: ArtifactView) -> str:
    a = v.accuracy
    return "-" if not a else f"{a['accuracy']:.2%} ({-a['drop_points']:+.2f})"


def verdict_line(views: list[ArtifactView]) -> str:
    made = [v for v in views if v.verdicts]
    bad = [v for v in made if v.failed]
    if not made:
        return "**No artifact was checked.**"
    if bad:
        return f"**FAIL**: {len(bad)} of {len(made)} checked targets (artifact on runtime) do not match the " \
            "reference: " + \
            ", ".join(f"`{v.label}`" + (" (vacuous: its reference does not vary)" if "vacuous" in v.verdicts.values()
                                       else "") for v in bad)
    others = [v for v in made if not v.passed]
    note = f" ({', '.join(f'`{v.label}` {sorted(set(v.verdicts.values()))[0]}' for v in others)})" if others else ""
    return f"**PASS**: no checked target (artifact on runtime) fails on any machine that validated it{note}"


def table(results, views: list[ArtifactView]) -> tuple[list[str], list[list[str]]]:
    """The per-target table (headers, rows of cell text), shared by the Markdown and HTML pages."""
    bench_machines = [d["machine"]["name"] for d in results.benches]
    headers = ["format", "runtime", "precision", "verdict", "max_abs_err", "accuracy (drop)", "size"]
    for name in bench_machines:
        headers += [f"p50 / p90 ms @ {name}", f"load / first ms @ {name}", f"peak RSS MB @ {name}"]
    headers += ["chain"]
    rows = []
    for v in views:
        verdict = ", ".join(f"{s.upper()}" + (f" ({mach})" if len(v.verdicts) > 1 else "")
                            for mach, s in v.verdicts.items()) or v.exported.upper()
        cells = [v.name, v.runtime, v.precision, verdict,
                 "-" if v.max_abs is None else f"{v.max_abs:.2e}", _acc(v), human_size(v.size_bytes)]
        for name in bench_machines:
            t = v.best(name)
            cells += ["-", "-", "-"] if t is None else [f"{_ms(t.p50_ms)} / {_ms(t.p90_ms)} ({t.threads}t)",
                                                         f"{t.load_ms:.0f} / {_ms(t.first_ms)}", f"{t.rss_mb:.0f}"]
        cells.append(" → ".join(v.chain) + (f" ({v.route})" if v.route else ""))
        rows.append(cells)
    return headers, rows


def render(results) -> str:
    views = artifacts(results)
    machines = results.machines()
    bench_machines = [d["machine"]["name"] for d in results.benches]
    m = results.manifest
    lines = [f"# deploytool report: {m.model.name}", "", verdict_line(views), ""]
    headers, rows = table(results, views)
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for cells in rows:
        cells = [f"`{cells[0]}`", *cells[1:]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for name in bench_machines:
        front = pareto({v.label: (t.p90_ms, float(v.size_bytes)) for v in views
                        if v.passed and v.size_bytes and (t := v.best(name)) is not None})
        if front:
            names = ", ".join(f"`{n}`" for n in sorted(front))
            lines += ["", f"Pareto-optimal on p90 latency and size @ {name}: {names}"]
    failed = [v for v in views if v.failed]
    if failed:
        lines += ["", "## Failures", ""]
        for v in failed:
            where = f" — error appears at hop `{v.hop_blamed}`" if v.hop_blamed else ""
            repro = f" — repro: `{v.repro}`" if v.repro else ""
            lines.append(f"- `{v.name}` on {v.runtime}: {v.reason}{where}{repro}")
    lines += ["", "<details><summary>Environment</summary>", "",
              f"- model: `{m.model.name}` ({m.model.description}), source `{m.model.source.get('kind')}` "
              f"({m.model.framework}), exported {m.created} with deploytool {m.tool.get('version')}",
              "- versions at export: " + ", ".join(f"{k} {v}" for k, v in m.versions.items() if v)]
    for data in results.validations + results.benches:
        mach = data["machine"]
        kind = "bench" if "rows" in data else "validate"
        lines.append(f"- {kind} on `{mach['name']}`: {mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('os')}, "
                     "runtimes " + ", ".join(f"{k} {v}" for k, v in (mach.get("runtimes") or {}).items() if v))
    lines += ["", "</details>", ""]
    if not machines:
        lines.insert(3, "_No validation or bench results yet: run `deploytool validate` and `deploytool bench`._\n")
    return "\n".join(lines)
