"""``deploytool report``: one page per model from what a bundle's reports hold (manifest,
validation.json, bench.json), from this machine and others; computes nothing new.

Results produced elsewhere from the same bundle (a CI matrix: export once, validate and bench on
each target, merge in a final job) are added as files; each must carry the sha256 of this bundle's
manifest, so results of another bundle are refused. Machines are told apart by their fingerprint
(``machine.py``) or ``--machine-name`` label.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.core.errors import UsageError
from deploytool.report import bench_files, validation
from deploytool.store import bundle
from deploytool.store import manifest as manifest_io
from deploytool.store.manifest import FILENAME, Manifest


@dataclass
class Results:
    """A bundle and every result that belongs to it, by machine."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    validations: list[dict] = field(default_factory=list)
    benches: list[dict] = field(default_factory=list)

    def machines(self) -> list[str]:
        names = [d["machine"]["name"] for d in self.validations + self.benches]
        return list(dict.fromkeys(names))


@dataclass
class ReportOutcome:
    results: Results
    files: dict[str, Path]
    plots: bool  # False: matplotlib is not installed (tables only)


def collect(bundle_dir: Path | str, extra: list[Path | str] | None = None) -> Results:
    root = Path(bundle_dir)
    manifest = manifest_io.read(root)
    results = Results(root, manifest, bundle.sha256_file(root / FILENAME))
    own = [p for n in ("validation.json", "bench.json") if (p := root / bundle.REPORTS / n).is_file()]
    for path in [*own, *map(Path, extra or [])]:
        _add(results, path)
    return results


def _add(results: Results, path: Path) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"results {path}: unreadable ({e})") from None
    if not isinstance(data, dict) or ("rows" not in data and "artifacts" not in data):
        raise UsageError(f"results {path}: neither a validation.json nor a bench.json")
    kind, schema = ("bench", bench_files.SCHEMA_VERSION) if "rows" in data else \
        ("validation", validation.SCHEMA_VERSION)
    if data.get("schema_version") != schema:
        raise UsageError(f"results {path}: {kind} schema_version {data.get('schema_version')!r}, this deploytool reads "
                         f"{schema} (rerun deploytool {kind} with this version)")
    if data.get("manifest_sha256") != results.manifest_sha256:
        theirs = str(data.get("manifest_sha256"))[:12]
        raise UsageError(f"results {path}: from another bundle (its manifest sha256 {theirs} is not this bundle's "
                         f"{results.manifest_sha256[:12]})")
    if not isinstance(data.get("machine"), dict) or "name" not in data["machine"]:
        raise UsageError(f"results {path}: no machine block")
    target = results.benches if kind == "bench" else results.validations
    # the same machine twice (the bundle's own report given again as a file): keep one
    if not any(d["machine"]["name"] == data["machine"]["name"] and d.get("created") == data.get("created")
               for d in target):
        target.append(data)


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
