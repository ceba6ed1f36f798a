"""``deploytool report``: one page per model from what a bundle's reports hold (manifest,
validation.json, bench.json), from this machine and others; computes nothing new.

Results produced elsewhere from the same bundle (a CI matrix: export once, validate and bench on
each target, merge in a final job) are added as files; each must carry the sha256 of this bundle's
manifest, so results of another bundle are refused. Machines are told apart by their fingerprint
(``machine.py``) or ``--machine-name`` label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploytool.core.errors import UsageError
from deploytool.results import Results, collect
from deploytool.store import bundle


@dataclass
class ReportOutcome:
    results: Results
    files: dict[str, Path]
    plots: bool  # False: matplotlib is not installed (tables only)


def run(bundle_dir: Path | str, extra: list[Path | str] | None = None, out: Path | str | None = None) -> ReportOutcome:
    from deploytool.report import html, markdown

    results = collect(bundle_dir, extra)
    out_dir = Path(out) if out else bundle.real_dir(results.root, bundle.REPORTS)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md = markdown.render(results)
        page, plots = html.render(results)
        bundle.write_text(out_dir / "report.md", md)
        bundle.write_text(out_dir / "report.html", page)
    except OSError as e:
        raise UsageError(f"cannot write the report to {out_dir}: {e.strerror or e} (use --out DIR)") from None
    return ReportOutcome(results, {"md": out_dir / "report.md", "html": out_dir / "report.html"}, plots)
