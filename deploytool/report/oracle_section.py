"""The report's float64 oracle section (``--oracle float64``; checking/oracle.py): per target, golden set and
output judged by the rule, the fp32 reference's noise floor, the artifact's error against the float64 result,
their ratio and both verdicts, the oracle's (which gates) and the fixed fp32 tier's, side by side."""
from __future__ import annotations


def rows(results) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows, notes): one row per machine, target, set and output the oracle judged; notes for the
    targets that asked for it where the bundle has none (why)."""
    from deploytool.results import targets_of

    several = len(results.validations) > 1
    headers = [*(["machine"] if several else []), "target", "set", "output", "reference noise floor",
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
                    out.append([*machine, key, set_name, output, f"{f['noise_floor']:.2g}", f"{f['error']:.2g}",
                                f"{f['ratio']:.3g}x ({f['factor']:g}x)", "PASS" if f["passed"] else "FAIL",
                                "PASS" if f["fixed_tier"]["passed"] else "FAIL"])
    return headers, out, list(dict.fromkeys(notes))


def markdown_lines(results) -> list[str]:
    """The section's Markdown lines (none when no check used the oracle)."""
    headers, table, notes = rows(results)
    if not table and not notes:
        return []
    lines = ["", "## Float64 oracle (fp32 tier)", "",
             "Each fp32 artifact is judged by its error against the source run in float64, at most the factor "
             "times the fp32 reference's own error against it (its noise floor); the fixed tier's verdict "
             "(atol = rtol = 1e-4 against the fp32 reference) is shown beside it.", ""]
    if table:
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                  *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table)]
    lines += [f"- {n}" for n in notes]
    return lines
