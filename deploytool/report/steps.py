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
        if rec.get("partial"):
            verdict += f" (partial: {rec['partial']})"
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


def console_line(checks: dict) -> str:
    """One line under the export/validate table saying the multi-step loop ran and what it found over the targets
    (``ArtifactCheck.steps``), e.g. ``multi-step: 32 steps x 4 samples (logits->token:argmax, h_out->h): every
    greedy decision agrees on onnx, tflite_fp32; largest step error 6.8e-03 (savedmodel)``; "" when no target ran
    a loop."""
    from deploytool.results import target_label

    ran = [(target_label(c.format, c.runtime, c.platform), c.steps) for c in checks.values() if c.steps]
    if not ran:
        return ""
    head = max((rec for _, rec in ran), key=lambda rec: rec.get("steps") or 0)  # a loop stopped early ran fewer
    greedy = any(str(p).endswith(":argmax") for p in head.get("feedback") or [])
    agree: list[str] = []
    differ: list[str] = []
    other: list[str] = []
    worst: tuple[float, str] | None = None
    for label, rec in ran:
        if rec.get("skipped") or rec.get("error"):
            other.append(f"{label} ({'not run' if rec.get('skipped') else 'failed'})")
            continue
        if rec.get("partial"):
            label = f"{label} (stopped after {rec.get('steps')} steps)"
        first = rec.get("first_diverging_step")
        (agree if first is None else differ).append(label if first is None else f"{label} (first at step {first})")
        errs = [e for e in (rec.get("step_error") or [])[:first or None] if e == e]  # compared steps, NaN left out
        if errs and (worst is None or max(errs) > worst[0]):
            worst = (max(errs), label)
    parts = []
    if agree:
        parts.append(f"every greedy decision agrees on {', '.join(agree)}" if greedy else f"ran on {', '.join(agree)}")
    if differ:
        parts.append(f"decisions differ on {', '.join(differ)}")
    if other:
        parts.append(", ".join(other))
    if worst is not None:
        parts.append(f"largest step error {worst[0]:.1e} ({worst[1]})")
    loop = ", ".join(head.get("feedback") or [])
    return f"multi-step: {head.get('steps')} steps x {head.get('samples')} samples ({loop}): " + "; ".join(parts)
