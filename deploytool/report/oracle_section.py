"""The report's float64 oracle section (``--oracle float64``; checking/oracle.py), in report.md and report.html:
per target, golden set and output judged by the rule, its worst sample (the rule judges each sample on its own),
the fp32 reference's noise on it, the artifact's error against the float64 result on it, their ratio and both
verdicts, the oracle's (which gates) and the fixed fp32 tier's, side by side."""
from __future__ import annotations


def rows(results) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows, notes): one row per machine, target, set and output the oracle judged; notes for the
    targets that asked for it where the bundle has none (why)."""
    from deploytool.results import targets_of

    several = len(results.validations) > 1
    headers = [*(["machine"] if several else []), "target", "set", "output", "worst sample", "reference noise",
               "artifact error", "ratio (limit)", "oracle", "fixed fp32 tier"]
    out: list[list[str]] = []
    notes: list[str] = []
    for data in results.validations:
        machine = [data["machine"]["name"]] if several else []
        for key, entry in targets_of(data).items():
            o = entry.get("oracle")
            if not o:
                continue
            if not o.get("available"):
                notes.append(f"{key}: {o.get('why_not', 'no float64 oracle')}")
                continue
            for set_name, per in o.get("sets", {}).items():
                for output, f in per.items():
                    w = f.get("worst") or {"sample": "-", "noise": f["noise_floor"], "error": f["error"]}
                    out.append([*machine, key, set_name, output, str(w["sample"]), f"{w['noise']:.2g}",
                                f"{w['error']:.2g}", f"{f['ratio']:.3g}x ({f['factor']:g}x)",
                                "PASS" if f["passed"] else "FAIL", "PASS" if f["fixed_tier"]["passed"] else "FAIL"])
    return headers, out, list(dict.fromkeys(notes))


TITLE = "Float64 oracle (fp32 tier)"
INTRO = ("Each fp32 artifact is judged per golden sample by its error against the source run in float64, at most "
         "the factor times the fp32 reference's own error against it on that sample (its noise floor, at least 4 "
         "float32 ulps of the sample's largest value); the row shows the worst sample. The fixed tier's verdict "
         "(atol = rtol = 1e-4 against the fp32 reference) is shown beside it.")


def markdown_lines(results) -> list[str]:
    """The section's Markdown lines (none when no check used the oracle)."""
    headers, table, notes = rows(results)
    if not table and not notes:
        return []
    lines = ["", f"## {TITLE}", "", INTRO, ""]
    if table:
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                  *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table)]
    lines += [f"- {n}" for n in notes]
    return lines


def html_parts(results, table) -> list[str]:
    """The section in report.html (none when no check used the oracle); ``table(headers, rows)`` renders a table."""
    import html

    headers, body, notes = rows(results)
    if not body and not notes:
        return []
    return [f"<h2>{TITLE}</h2>", f"<p>{html.escape(INTRO)}</p>", *([table(headers, body)] if body else []),
            *(f"<p>{html.escape(n)}</p>" for n in notes)]
