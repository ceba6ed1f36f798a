"""report.html: one self-contained page (inline CSS and SVG; no script, font or image fetched from
anywhere, so it renders offline) with the Markdown page's content and the plots (``plots.py``)."""
from __future__ import annotations

import html

from deploytool.report import markdown, oracle_section, pipeline_section, plots
from deploytool.report.steps import steps_table
from deploytool.report.view import artifacts

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.pass { color: #176317; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
figure { margin: 1.5em 0; } details { margin-top: 2em; }
"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table of plain-text cells (escaped)."""
    return "\n".join(["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>",
                      *("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows),
                      "</table>"])


def render(results) -> tuple[str, bool]:
    """The page, and whether it has plots (matplotlib installed)."""
    views = artifacts(results)
    m = results.manifest
    headers, rows = markdown.table(results, views)
    verdict = markdown.verdict_line(views, markdown=False)
    klass = "fail" if any(v.failed for v in views) else "pass"
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>deploytool report: {html.escape(m.model.name)}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>deploytool report: {html.escape(m.model.name)}</h1>", f"<p class='{klass}'>{html.escape(verdict)}</p>",
           _table(headers, rows), "<h2>Where it runs</h2>", f"<p>{html.escape(markdown.MATRIX_KEY)}</p>",
           _table(*markdown.matrix_table(results, views))]
    pipe_headers, pipe_rows = pipeline_section.rows(results)  # validate --pipeline: decision agreement per target
    if pipe_rows:
        out += ["<h2>Pipeline decisions</h2>", _table(pipe_headers, pipe_rows)]
    fam = markdown.families_table(views)  # export --families: each family's verdict per target (docs/families.md)
    if fam is not None:
        out += ["<h2>Input families</h2>", f"<p>{html.escape(markdown.FAMILIES_KEY)}</p>", _table(*fam)]
    out += oracle_section.html_parts(results, _table)  # --oracle float64: the fp32 tier's two verdicts
    failed = markdown.failures(views, markdown=False)
    if failed:
        out.append("<h2>Failures</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in failed) + "</ul>")
    if any(v.steps for v in views):
        out += ["<h2>Multi-step parity</h2>", _table(*steps_table(views))]
    has_plots = plots.available()
    if has_plots:
        figures = []
        for data in results.benches:
            name = data["machine"]["name"]
            figures += [plots.latency(views, name), plots.latency_vs_size(views, name)]
        figures.append(plots.hop_errors(views))
        figures.append(plots.step_errors(views))
        out += [f"<figure>{svg}</figure>" for svg in figures if svg]
    else:
        out.append(f"<p><i>Plots need matplotlib: {html.escape(plots.INSTALL_HINT)}</i></p>")
    out.append("<details><summary>Environment</summary><ul>" + "".join(
        f"<li>{html.escape(line)}</li>" for line in markdown.environment(results, markdown=False)) + "</ul></details>")
    out.append("</body></html>")
    return "\n".join(out), has_plots
