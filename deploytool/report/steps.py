"""The report's multi-step parity section (``ArtifactCheck.steps``, ``checking/steps.py``): one row per target that
ran the loop. Reads the views only."""
from __future__ import annotations

from deploytool.report.view import ArtifactView


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def steps_table(views: list[ArtifactView]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "steps", "first diverging step", "decision there (reference, artifact)",
               "step error (first -> last)", "verdict"]
    rows = []
    for v in views:
        rec = v.steps
        if not rec:
            continue
        if rec.get("skipped") or rec.get("error"):
            rows.append([v.label, str(rec.get("steps", "-")), "-", "-", "-",
                         f"not run: {rec['skipped']}" if rec.get("skipped") else f"FAIL: {rec['error']}"])
            continue
        first, where, errs = rec.get("first_diverging_step"), rec.get("divergence"), rec.get("step_error") or []
        verdict = "FAIL: " + "; ".join(rec["failures"]) if rec.get("failures") else \
            ("UNINFORMATIVE: " + rec["uninformative"] if rec.get("uninformative") else
             ("pass" if rec.get("gated") else "reported (not gated for this tier)"))
        rows.append([v.label, f"{rec['steps']} x {rec['samples']} samples", "none" if first is None else str(first),
                     f"{where['input']}: {where['reference']}, {where['artifact']} (sample {where['sample']})"
                     if where else "-", f"{_g(errs[0] if errs else None)} -> {_g(errs[-1] if errs else None)}",
                     verdict])
    return headers, rows


def steps_section(views: list[ArtifactView]) -> list[str]:
    """The Markdown section's lines ([] when no target ran a multi-step check)."""
    from deploytool.report.markdown import _table

    headers, rows = steps_table(views)
    if not rows:
        return []
    return ["", "## Multi-step parity", "",
            "Each target ran the declared feedback loop with its own outputs fed back (greedy decisions by argmax); "
            "the first step whose decision differs from the source's, and the error per step relative to the "
            "reference's magnitude (the HTML report plots it).", "", *_table(headers, rows)]
