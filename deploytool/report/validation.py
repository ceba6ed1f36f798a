"""Validation reports: validation.json (schema-versioned, every metric and verdict), JUnit XML,
and a repro folder per failing artifact. Renders what judging computed; computes nothing new."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.checking import parity
from deploytool.checking.golden import GoldenSet
from deploytool.core import npz, records
from deploytool.measuring.machine import fingerprint
from deploytool.report import junit
from deploytool.results import VALIDATION_SCHEMA, ArtifactCheck, earlier_targets, worst_sample
from deploytool.running.jobs import CheckStatus
from deploytool.store import bundle
from deploytool.store.manifest import FILENAME as MANIFEST_FILE
from deploytool.store.manifest import Manifest

SCHEMA_VERSION = VALIDATION_SCHEMA


def write_reports(bundle_dir: Path, reports_dir: Path, manifest: Manifest, checks: dict[str, ArtifactCheck],
                  sets: list[GoldenSet], tolerances: parity.Tolerances, references: dict[str, dict[str, np.ndarray]],
                  json_path: Path | None = None, junit_path: Path | None = None,
                  machine_name: str | None = None,
                  extras: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Path]:
    """validation.json (schema-versioned, every metric and verdict), JUnit XML, and a repro
    folder per failing artifact. ``extras``: per artifact, the first diverging op's tensors (with
    the sample's inputs) for its repro folder. validation.json keeps, beside this run's checks, the
    results an earlier run of this machine on this bundle wrote there for targets not checked now
    (``results.earlier_targets``; each target says when it was checked); the JUnit XML is this run's."""
    reports_dir.mkdir(parents=True, exist_ok=True)  # a real directory (the caller checked one inside a bundle)
    own_json, own_junit = reports_dir / "validation.json", reports_dir / "validation.junit.xml"
    repros = {}
    for key, chk in checks.items():
        if chk.status == CheckStatus.FAIL:
            repros[key] = write_repro(bundle_dir, reports_dir, key, manifest, chk, sets, references, tolerances)
            if (extras or {}).get(key):
                npz.save(repros[key] / "first_diverging.npz", (extras or {})[key])
    created = bundle.now_utc()
    sha = bundle.sha256_file(bundle_dir / MANIFEST_FILE) if (bundle_dir / MANIFEST_FILE).is_file() else None
    machine = fingerprint(machine_name)
    # Targets this run did not check keep their results from an earlier run of this machine on this bundle.
    kept = earlier_targets(own_json, sha, machine["name"], set(checks)) if sha else {}
    data = {
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "model": manifest.model.name,
        "manifest_sha256": sha,
        "machine": machine,
        "sets": {s.name: {"dims": s.dims, "samples": s.samples} for s in sets},
        "tolerances": {"tiers": {n: t.to_dict() for n, t in parity.TIERS.items()}, "overrides": tolerances.to_dict()},
        "targets": _in_order(manifest, {**kept, **{k: {**c.to_dict(), "target": k, "repro": str(repros[k]) if k in
                                                        repros else None, "route": _route(manifest, c.format),
                                                        "checked": created} for k, c in checks.items()}}),
    }
    xml = junit.render(manifest.model.name, checks)
    for path in {own_json, json_path or own_json}:  # --json / --junit: also there, not instead
        bundle.write_json(path, data)
    for path in {own_junit, junit_path or own_junit}:
        bundle.write_text(path, xml)
    return {"json": json_path or own_json, "junit": junit_path or own_junit,
            **{f"repro:{k}": v for k, v in repros.items()}}


def _in_order(manifest: Manifest, targets: dict[str, dict]) -> dict[str, dict]:
    """Targets in the manifest's order of artifacts (this run's and those kept from an earlier one alike)."""
    order = {name: i for i, name in enumerate(manifest.artifacts)}
    return dict(sorted(targets.items(), key=lambda kv: order.get(kv[1].get("format", ""), len(order))))


def _route(manifest: Manifest, name: str) -> dict | None:
    """The fallback route that made the artifact (as in the manifest), or None: its format's only route."""
    rec = manifest.artifacts.get(name)
    return records.dump(rec.route) if rec is not None and rec.route is not None else None


def write_repro(bundle_dir: Path, reports_dir: Path, key: str, manifest: Manifest, chk: ArtifactCheck,
                sets: list[GoldenSet], references: dict[str, dict[str, np.ndarray]],
                tolerances: parity.Tolerances) -> Path:
    """Everything a converter bug report needs: inputs, expected and actual outputs, the worst
    sample alone, artifact hashes, versions and tolerances."""
    # A stale folder is removed and a fresh one made, never through a link (bundle.real_dir).
    bundle.remove_tree(reports_dir, reports_dir / "repro" / key)
    dest = bundle.real_dir(reports_dir, f"repro/{key}")
    worst = worst_sample(chk)
    by_name = {s.name: s for s in sets}
    for set_name, out_path in chk.outputs.items():
        src = Path(out_path) if Path(out_path).is_absolute() else bundle_dir / out_path
        inputs = npz.load(by_name[set_name].inputs)
        npz.save(dest / f"inputs.{set_name}.npz", inputs)
        npz.save(dest / f"expected.{set_name}.npz", references[set_name])
        npz.save(dest / f"actual.{set_name}.npz", npz.load(src))
        if worst and worst[0] == set_name:
            i = worst[2]
            npz.save(dest / "worst_sample.npz", {**{f"input.{k}": v[i] for k, v in inputs.items()},
                                                 **{f"expected.{k}": v[i] for k, v in references[set_name].items()},
                                                 **{f"actual.{k}": v[i] for k, v in npz.load(src).items()}})
    rec = manifest.artifacts[chk.format]
    info = {
        "artifact": chk.format, "target": key, "files": records.dump(rec.files), "parent": rec.parent,
        "exporter": records.dump(rec.exporter), "route": _route(manifest, chk.format),
        "runtime": chk.runtime, "target_platform": chk.platform, "runtime_version": chk.runtime_version,
        "versions": manifest.versions, "platform": manifest.platform, "reason": chk.reason,
        "hop_blamed": chk.hop_blamed, "first_diverging": chk.first_diverging,
        "worst": {"set": worst[0], "output": worst[1], "sample": worst[2]} if worst else None,
        "verdicts": chk.sets, "per_hop": chk.hop, "tolerance_overrides": tolerances.to_dict(),
        "contract": records.dump(rec.contract),
    }
    bundle.write_json(dest / "repro.json", info)
    bundle.write_text(
        dest / "README.txt",
        f"deploytool parity failure: {manifest.model.name}/{chk.format} on {chk.target.where}\n{chk.reason}\n\n"
        "inputs.SET.npz    golden inputs, [samples, *shape] per input (source layout, e.g. NCHW)\n"
        "expected.SET.npz  reference outputs (the source model on its own runtime)\n"
        "actual.SET.npz    this artifact's outputs, mapped back to the source names and layout\n"
        "worst_sample.npz  the single sample with the largest error: its inputs, expected and actual\n"
        "repro.json        artifact files + sha256, exporter + options, runtime and package versions,\n"
        "                  the I/O contract (names, layout permutation), metrics and tolerances, and\n"
        "                  first_diverging: the first op of the blamed hop's parent the child does not reproduce\n"
        "first_diverging.npz  (when localised) that sample's inputs and the op's output in the parent and\n"
        "                  in the child (each in its runtime's layout; the permutation is in repro.json)\n")
    return dest
