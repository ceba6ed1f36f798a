"""Opening a bundle: the trust boundary every command that reads one goes through.

A bundle may have travelled through artifact stores, other machines and other people's hands;
``open_bundle`` trusts nothing in it and refuses (``BundleError``, exit 8, one line naming the
field or file), before anything is loaded into a runtime:

- a link, FIFO, socket or device anywhere in it (no link is followed, inside or out);
- a signature that does not verify (with ``verify_key``: ``signing.verify``);
- a malformed manifest (``manifest.load``: types, statuses, finite non-negative tolerances);
- a path that is absolute, not normalised, or outside the bundle; an artifact path its hashed
  ``files`` do not cover; an exported artifact or golden data without hash records;
- a file under ``artifacts/`` or ``golden/`` that no manifest entry accounts for (``reports/``
  and ``logs/`` are deploytool's own output and ignored);
- golden data whose hashes differ, whose arrays do not match the contract (names, dtypes,
  shapes at the set's dims) and the manifest (``samples``, ``dims``), or whose references are
  not finite; an artifact's stored outputs that do not match the reference's names and shapes;
- a hashed file that is missing, unless only export reads it (``Manifest.export_only``: the
  calibration data, left out of a device copy); such a file is still checked when present;
- a multi-step reference trajectory (``Manifest.steps``) that is not hashed, does not match the contract or its
  record, holds NaN/Inf, or declares a feedback pair the contract cannot take.

Each artifact's own files are hashed later, per artifact (a mismatch refuses that artifact,
exit 8, while the others are still checked).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from deploytool.checking import golden
from deploytool.checking.golden import DATA, MAIN
from deploytool.core import npz
from deploytool.core.contract import check_inputs
from deploytool.core.errors import BundleError
from deploytool.running.jobs import ArtifactStatus
from deploytool.store import bundle
from deploytool.store import manifest as manifest_io
from deploytool.store.manifest import Manifest

SET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class OpenedBundle:
    root: Path
    manifest: Manifest
    inputs: dict[str, dict[str, np.ndarray]]  # set -> golden inputs, checked
    references: dict[str, dict[str, np.ndarray]]  # set -> reference outputs, checked
    labels: dict[str, np.ndarray]  # labelled set -> its labels, checked
    absent: list[str] = field(default_factory=list)  # export-only files not in it (a device copy), by path
    oracles: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set -> float64 oracle, checked


def open_bundle(path: Path | str, verify_key: Path | str | None = None) -> OpenedBundle:
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle {root}: no such directory")
    if not root.is_dir():
        raise BundleError(f"bundle {root}: not a directory")
    entries = bundle.scan(root)
    if verify_key is not None:
        from deploytool.store import signing

        signing.verify(root, Path(verify_key))
    m = manifest_io.read(root)
    _check_paths(root, m, entries)
    absent = [rel for rel in m.export_only() if rel not in entries]
    bundle.verify_files(root, [f for f in m.golden.files if f.path not in absent], f"bundle {root}: golden data")
    inputs, references, labels = _check_golden(root, m, absent)
    if m.steps is not None:
        _check_steps(root, m)
    _check_contracts(root, m)
    oracles = _check_oracles(root, m, references)
    return OpenedBundle(root, m, inputs, references, labels, absent, oracles)


def _check_contracts(root: Path, m: Manifest) -> None:
    """Each artifact's contract describes the bundle's tensors: the same names, order, dtypes and shapes
    (its own artifact-side fields say how it takes them; a runtime checks those against the artifact)."""
    def view(specs) -> list[tuple]:
        return [(s.name, s.dtype, list(s.shape)) for s in specs]

    for name, rec in m.artifacts.items():
        if rec.contract is None:
            continue
        for group in ("inputs", "outputs"):
            mine, theirs = view(getattr(rec.contract, group)), view(getattr(m.contract, group))
            if mine != theirs:
                raise BundleError(f"bundle {root}: manifest.json: artifact {name}'s contract {group} {mine} "
                                  f"disagrees with the bundle's contract {theirs}")


def _check_paths(root: Path, m: Manifest, entries: dict[str, str]) -> None:
    where = f"bundle {root}: manifest.json"
    listed: set[str] = set()
    paths: list[str] = []
    sidecars: list[tuple[str, str]] = []  # (artifact, file beside its file)
    for name, rec in m.artifacts.items():
        what = f"{where}: artifact {name}"
        files = [bundle.contained(f.path, what) for f in rec.files]
        if rec.status != ArtifactStatus.OK:
            if files:
                raise BundleError(f"{what}: status {rec.status} but it lists files")
            continue
        path = bundle.contained(rec.path, what)
        if not path.startswith(f"{bundle.ARTIFACTS}/"):
            raise BundleError(f"{what}: path {path!r} is not under {bundle.ARTIFACTS}/")
        # A file artifact lists its file first, then the files beside it that belong to it (an ONNX file's
        # external data): under artifacts/, and inside no other artifact's path (checked below).
        beside = files[1:] if entries.get(path) == "file" and files[:1] == [path] else []
        if not all(f == path or f.startswith(path + "/") for f in files if f not in beside):
            raise BundleError(f"{what}: its files are not all under its path {path!r}")
        if len(set(files)) != len(files) or set(files) & listed:
            raise BundleError(f"{what}: a file is listed twice")
        if entries.get(path) == "file" and files[:1] != [path]:
            raise BundleError(f"{what}: its path {path!r} is a file, its hashed files are {files}")
        for f in beside:
            if not f.startswith(f"{bundle.ARTIFACTS}/"):
                raise BundleError(f"{what}: its file {f!r} is not under {bundle.ARTIFACTS}/")
            sidecars.append((what, f))
        for other in paths:
            if path.startswith(other + "/") or other.startswith(path + "/") or path == other:
                raise BundleError(f"{what}: its path {path!r} overlaps another artifact's {other!r}")
        paths.append(path)
        listed.update(files)
        for set_name, rel in rec.golden_outputs.items():
            if not SET_NAME.fullmatch(set_name):
                raise BundleError(f"{what}: golden_outputs set name {set_name!r} is not letters, digits, '_' and '-'")
            bundle.contained(rel, f"{what}: golden_outputs.{set_name}")
    for what, f in sidecars:
        owner = next((p for p in paths if f == p or f.startswith(p + "/")), None)
        if owner is not None:
            raise BundleError(f"{what}: its file {f!r} lies inside another artifact's path {owner!r}")
    golden_files = [bundle.contained(f.path, f"{where}: golden.files") for f in m.golden.files]
    if not golden_files:
        raise BundleError(f"{where}: golden.files is empty: the golden data is not hashed")
    for f in golden_files:
        if not f.startswith("golden/"):
            raise BundleError(f"{where}: golden file {f!r} is not under golden/")
    listed.update(golden_files)
    needed = [(f"golden.sets.{s}.labels", info.labels) for s, info in m.golden.sets.items() if info.labels] + \
        ([("golden.calibration.path", m.golden.calibration.path)] if m.golden.calibration is not None else []) + \
        [(f"golden.sets.{s}.inputs", info.inputs) for s, info in m.golden.sets.items()] + \
        [(f"golden.sets.{s}.reference", info.reference) for s, info in m.golden.sets.items()] + \
        [(f"artifacts.{n}.golden_outputs.{s}", p) for n, rec in m.artifacts.items()
         for s, p in rec.golden_outputs.items()]
    for key, rel in needed:
        if bundle.contained(rel, f"{where}: {key}") not in golden_files:
            raise BundleError(f"{where}: {key} {rel!r} is not among the hashed golden files")
    for rel, kind in entries.items():
        top = PurePosixPath(rel).parts[0]
        if kind == "file" and top in (bundle.ARTIFACTS, bundle.GOLDEN) and rel not in listed:
            raise BundleError(f"bundle {root}: {rel} is not accounted for by the manifest (refused: every file "
                              "under artifacts/ and golden/ must be listed and hashed)")


def _check_golden(root: Path, m: Manifest, absent: list[str]) -> tuple[dict, dict, dict]:
    where = f"bundle {root}: golden data"
    contract = m.contract
    if MAIN not in m.golden.sets:
        raise BundleError(f"{where}: no {MAIN!r} set")
    inputs_by_set, refs_by_set, labels_by_set = {}, {}, {}
    for set_name, info in m.golden.sets.items():
        what = f"{where}: set {set_name!r}"
        if not SET_NAME.fullmatch(set_name):  # set names become scratch file names
            raise BundleError(f"{what}: a set name is letters, digits, '_' and '-' only")
        if set_name == DATA:
            raise BundleError(f"{what}: the name is reserved for --data")
        if info.samples < 1:
            raise BundleError(f"{what}: samples = {info.samples}")
        missing = sorted(set(contract.dims) - set(info.dims))
        if missing or any(v < 1 for v in info.dims.values()):
            raise BundleError(f"{what}: dims {info.dims} do not size the contract's dims {sorted(contract.dims)}")
        inputs, refs = _load(root, info.inputs, what), _load(root, info.reference, what)
        for kind, arrays, specs in (("input", inputs, contract.inputs), ("reference", refs, contract.outputs)):
            names = [s.name for s in specs]
            if sorted(arrays) != sorted(names):
                raise BundleError(f"{what}: {kind} arrays {sorted(arrays)}, the contract names {names}")
            for spec in specs:
                a = arrays[spec.name]
                expected = (info.samples, *spec.concrete_shape({**info.dims, **contract.fixed_dims}))
                if str(a.dtype) != spec.dtype or tuple(a.shape) != expected:
                    raise BundleError(f"{what}: {kind} {spec.name!r} is {a.dtype}{list(a.shape)}, the contract and "
                                      f"manifest say {spec.dtype}{list(expected)}")
                if kind == "reference" and a.dtype.kind in "fc" and not np.isfinite(a).all():
                    bad = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
                    raise BundleError(f"{what}: reference {spec.name!r} holds NaN/Inf (sample {bad}); a comparison "
                                      "against it would be vacuous")
        inputs_by_set[set_name], refs_by_set[set_name] = inputs, refs
        if info.labels:
            try:
                labels_by_set[set_name] = golden.check_labels(
                    contract, _load(root, info.labels, what).get("labels"), info.labelled_output or "",
                    info.samples, f"{what}: {info.labels}")
            except (ValueError, StopIteration) as e:
                raise BundleError(f"{what}: labels: {e}" if isinstance(e, StopIteration) else str(e)) from None
    if m.golden.calibration is not None and m.golden.calibration.path not in absent:
        what = f"{where}: calibration data"
        calib = _load(root, m.golden.calibration.path, what)
        try:
            check_inputs(contract, calib, what)
        except ValueError as e:
            raise BundleError(str(e)) from None
        if len(next(iter(calib.values()))) != m.golden.calibration.samples:
            raise BundleError(f"{what}: {len(next(iter(calib.values())))} samples, the manifest says "
                              f"{m.golden.calibration.samples}")
    for name, rec in m.artifacts.items():
        for set_name, rel in rec.golden_outputs.items():
            what = f"{where}: artifact {name}'s stored outputs ({set_name})"
            if set_name not in refs_by_set:
                raise BundleError(f"{what}: no such golden set")
            stored = _load(root, rel, what)
            ref = refs_by_set[set_name]
            if sorted(stored) != sorted(ref) or any(stored[k].shape != ref[k].shape for k in ref):
                raise BundleError(f"{what}: names/shapes {_shapes(stored)} differ from the reference's {_shapes(ref)}")
    return inputs_by_set, refs_by_set, labels_by_set


def _load(root: Path, rel: str, what: str) -> dict[str, np.ndarray]:
    try:
        return npz.load(root / rel)
    except npz.NpzError as e:
        raise BundleError(f"{what}: {e}") from None


def _shapes(arrays: dict[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in arrays.items()}


def _check_steps(root: Path, m: Manifest) -> None:
    """The multi-step record and its reference trajectory (``checking/steps.py``)."""
    from deploytool.checking import steps

    rec = m.steps
    if rec is None:
        return
    where = f"bundle {root}: manifest.steps"
    rel = bundle.contained(rec.path, f"{where}.path")
    if rel not in [f.path for f in m.golden.files]:
        raise BundleError(f"{where}.path {rel!r} is not among the hashed golden files")
    if not 1 <= rec.steps <= steps.MAX_STEPS or rec.samples < 1:
        raise BundleError(f"{where}: steps = {rec.steps}, samples = {rec.samples}")
    try:
        rec.gates().check()  # the gates stored at export (validate re-applies them)
        steps.check(m.contract, steps.parse(rec.feedback))
        steps.check_reference(m.contract, rec, _load(root, rel, f"{where}: {rel}"),
                              m.contract.dim_sizes("example", batch_one=True), f"{where}: {rel}")
    except ValueError as e:
        raise BundleError(str(e) if str(e).startswith("bundle") else f"{where}: {e}") from None


def _check_oracles(root: Path, m: Manifest, references: dict[str, dict[str, np.ndarray]]) -> dict:
    """Each set's float64 oracle (``export --oracle float64``): a hashed golden file, float64, finite, one array
    per float output of the reference, of its shape."""
    where = f"bundle {root}: golden data"
    hashed = {f.path for f in m.golden.files}
    oracles = {}
    for set_name, info in m.golden.sets.items():
        if not info.oracle:
            continue
        what = f"{where}: set {set_name!r}: float64 oracle"
        if bundle.contained(info.oracle, f"bundle {root}: manifest.json: golden.sets.{set_name}.oracle") not in hashed:
            raise BundleError(f"bundle {root}: manifest.json: golden.sets.{set_name}.oracle {info.oracle!r} is not "
                              "among the hashed golden files")
        arrays, ref = _load(root, info.oracle, what), references[set_name]
        floats = sorted(k for k, v in ref.items() if v.dtype.kind == "f")
        if sorted(arrays) != floats:
            raise BundleError(f"{what}: arrays {sorted(arrays)}, the reference's float outputs are {floats}")
        for name, a in arrays.items():
            if a.dtype != np.float64 or a.shape != ref[name].shape:
                raise BundleError(f"{what}: {name!r} is {a.dtype}{list(a.shape)}, expected float64"
                                  f"{list(ref[name].shape)} (the reference's shape)")
            if not np.isfinite(a).all():
                raise BundleError(f"{what}: {name!r} holds NaN/Inf")
        oracles[set_name] = arrays
    return oracles
