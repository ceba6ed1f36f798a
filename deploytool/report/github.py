"""GitHub Actions output: ``::error`` workflow commands (annotations on the run) and the Markdown
report appended to ``$GITHUB_STEP_SUMMARY``.

On when ``GITHUB_ACTIONS=true`` (set by every Actions runner) or with ``--github``. One annotation
per failing artifact names its format, runtime, the hop where the error first appears and the
first failing metric; bench adds one per failed row and per ``--compare`` regression. The summary
is report.md's renderer (``report/markdown.py``) on the bundle and the results just written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from deploytool.results import label, target_label
from deploytool.running.jobs import FAILING_CHECKS as FAILING
from deploytool.running.jobs import ArtifactStatus, RowStatus

if TYPE_CHECKING:
    from deploytool.results import BenchRow, Comparison


def enabled(flag: bool) -> bool:
    return flag or os.environ.get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def error(title: str, message: str) -> str:
    """One ``::error`` workflow command (escaped as the runner expects)."""
    return f"::error title={_prop(title)}::{_data(message)}"


def first_failing_metric(check) -> str | None:
    """``set/output: reason`` of the first output that failed against the reference and gates the verdict: not one
    judged on task accuracy instead (``gating`` false), not one of a family reported only (``family_ungated``), not a
    hop comparison (it blames, it does not gate)."""
    for set_name, outputs in (check.sets or {}).items():
        for output, verdict in (outputs or {}).items():
            if isinstance(verdict, dict) and verdict.get("passed") is False and verdict.get("gating", True) and \
                    not verdict.get("family_ungated"):
                return f"{set_name}/{output}: {verdict.get('reason', 'failed')}"
    return None


def further_gate_failed(check) -> bool:
    """Whether a gate besides the tensor checks failed the target: task accuracy, the multi-step check, the pipeline's
    decisions or its deployed preprocessing (the reason names each)."""
    accuracy = check.accuracy is not None and check.accuracy.get("passed") is False
    steps = bool(check.steps and (check.steps.get("failures") or check.steps.get("error")))
    pipe = check.pipeline or {}
    deployed = pipe.get("preprocess_deployed") or {}
    pipeline = pipe.get("gate", {}).get("passed") is False or deployed.get("match") is False
    return accuracy or steps or pipeline


def failure_text(check) -> str:
    """What one line says of a failed target: ``metric SET/OUTPUT: ...`` of its first failing output where the tensor
    checks are all that failed, else its reason (which names every failure)."""
    metric = first_failing_metric(check)
    return f"metric {metric}" if metric and not further_gate_failed(check) else check.reason


def check_annotations(model: str, manifest, checks: dict) -> list[str]:
    """export / validate: one annotation per artifact that failed to export, and per target (artifact on a
    runtime) that failed its check."""
    out = []
    for name, rec in manifest.artifacts.items():
        if rec.status == ArtifactStatus.FAILED:
            out.append(error(f"deploytool {model}/{name}: export failed", f"{name} ({rec.runtime}): {rec.error}"))
    for chk in checks.values():
        if chk.status not in FAILING or manifest.artifacts[chk.format].status == ArtifactStatus.FAILED:
            continue
        parts = [f"{chk.format} on {chk.target.where}: {chk.status.upper()}"]
        if chk.hop_blamed:
            parts.append(f"error appears at hop {chk.hop_blamed}")
        parts.append(failure_text(chk))
        out.append(error(f"deploytool {model}/{label(chk)}: {chk.status}", "; ".join(parts)))
    return out


def bench_annotations(model: str, rows: list[BenchRow], compare: list[Comparison] | None,
                      threshold: float) -> list[str]:
    out = []
    for r in rows:
        if r.status in (RowStatus.FAILED, RowStatus.CORRUPT):
            out.append(error(f"deploytool {model}/{target_label(r.format, r.runtime)}: bench {r.status}",
                             f"{r.label}: {r.reason}"))
    for c in compare or []:
        if c.regression:
            out.append(error(f"deploytool {model}/{target_label(c.format, c.runtime)}: latency regression",
                             f"{c.label}: metric p50 {c.ratio:.2f}x the baseline's (threshold {threshold:g})"))
    return out


def summary(bundle: Path | str, results: list[Path | str] | None = None) -> str:
    """report.md's text for the bundle and the result files just written."""
    from deploytool.report import markdown
    from deploytool.results import collect

    return markdown.render(collect(bundle, [p for p in results or [] if Path(p).is_file()]))


def append_summary(text: str) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY (None when it is not set)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n\n")
    return Path(target)
