"""Faults injected into copies of real bundles, one class of the trust-boundary issue each: what a
corrupt or hostile bundle can look like. Shared by tests/test_faults.py and scripts/fault_campaign.py.

Each fault edits a copy of a bundle (``bundle``) and may plant things in a canary directory beside
it (``canary``, watched: nothing may read or write there). ``rehash`` plays the attacker who
updates the manifest's hashes after an edit, so what is tested is the check itself, not the hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OK, PARITY, USAGE, BUNDLE = 0, 5, 2, 8


@dataclass
class Fault:
    name: str
    klass: str  # the fault class
    edit: Callable[[Path, Path], None]
    expect: int  # documented exit code
    message: str = ""  # a substring of the one error line
    base: str = "digits_cnn"
    args: list[str] = field(default_factory=list)  # extra validate arguments
    needs_runtime: bool = False  # passes the bundle reader; a runtime decides


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write(bundle: Path, m: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(m, indent=1))


def edit_manifest(fn: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def edit(bundle: Path, canary: Path) -> None:
        m = manifest(bundle)
        fn(m)
        write(bundle, m)
    return edit


def _record(path: Path, root: Path) -> dict:
    data = path.read_bytes()
    return {"path": path.relative_to(root).as_posix(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def rehash(bundle: Path) -> None:
    """Recompute every hash the manifest holds, as an attacker who edits files and manifest alike would."""
    m = manifest(bundle)
    m["golden"]["files"] = [_record(p, bundle) for p in sorted((bundle / "golden").rglob("*")) if p.is_file()]
    for rec in m["artifacts"].values():
        if rec.get("status") == "ok" and rec.get("path"):
            p = bundle / rec["path"]
            files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
            rec["files"] = [_record(q, bundle) for q in files]
            rec["size_bytes"] = sum(f["size"] for f in rec["files"])
    write(bundle, m)


def edit_npz(rel_key: str, fn: Callable[[dict], dict], set_name: str = "main") -> Callable[[Path, Path], None]:
    """Rewrite one golden .npz (``inputs`` or ``reference`` of a set) with ``fn`` and rehash."""
    def edit(bundle: Path, canary: Path) -> None:
        path = bundle / manifest(bundle)["golden"]["sets"][set_name][rel_key]
        with np.load(path) as d:
            arrays = {k: d[k] for k in d.files}
        np.savez(path, **fn(arrays))
        rehash(bundle)
    return edit


def _nan_one(a: dict) -> dict:
    ref = a["logits"].copy()
    ref[3, 0, 2] = np.nan
    return {**a, "logits": ref}


def _link(bundle_rel: str, target: Callable[[Path, Path], Path]) -> Callable[[Path, Path], None]:
    """Replace ``bundle_rel`` with a symbolic link to a copy of it (or a directory) in the canary."""
    def edit(bundle: Path, canary: Path) -> None:
        p = bundle / bundle_rel
        dest = target(p, canary)
        if p.is_dir() and not p.is_symlink():
            import shutil

            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, p)
    return edit


def _copy_to_canary(p: Path, canary: Path) -> Path:
    import shutil

    dest = canary / ("linked_" + p.name)
    if p.is_dir():
        shutil.copytree(p, dest)
    elif p.exists():
        shutil.copyfile(p, dest)
    else:
        dest.mkdir()
    return dest


def _canary_dir(p: Path, canary: Path) -> Path:
    dest = canary / f"dir_for_{p.name}"
    dest.mkdir(exist_ok=True)
    (dest / "victim.txt").write_text("must survive")
    return dest


def _fifo(bundle: Path, canary: Path) -> None:
    p = bundle / "artifacts/digits_cnn_float32.tflite"
    p.unlink()
    os.mkfifo(p)


def _scale_onnx_weight(bundle: Path, canary: Path) -> None:
    import onnx
    from onnx import numpy_helper

    p = bundle / "artifacts/digits_cnn.onnx"
    model = onnx.load(str(p))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(p))
    rehash(bundle)


def _reorder_onnx_outputs(bundle: Path, canary: Path) -> None:
    import onnx

    p = bundle / "artifacts/multi_io.onnx"
    model = onnx.load(str(p))
    outs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(reversed(outs))
    onnx.save(model, str(p))
    rehash(bundle)


def _junk_appended_no_files(bundle: Path, canary: Path) -> None:
    with open(bundle / "artifacts/digits_cnn_float32.tflite", "ab") as f:
        f.write(b"junk" * 100)
    m = manifest(bundle)
    m["artifacts"]["tflite_fp32"]["files"] = []
    write(bundle, m)


def _not_a_zip(bundle: Path, canary: Path) -> None:
    (bundle / "golden/inputs.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    rehash(bundle)


def _pickled(bundle: Path, canary: Path) -> None:
    path = bundle / "golden/inputs.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("image.npy", "w") as f:
            np.save(f, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    rehash(bundle)


def _raw_member(bundle: Path, canary: Path) -> None:
    """A zip member without an .npy header: numpy hands back raw bytes for it."""
    with zipfile.ZipFile(bundle / "golden/inputs.npz", "w") as z:
        z.writestr("image", b"junk")


def _extra(rel: str) -> Callable[[Path, Path], None]:
    def edit(bundle: Path, canary: Path) -> None:
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(b"unlisted")
    return edit


def _pop(path: str) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[p]
        del node[last]
    return fn


def _set(path: str, value) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return fn


def _swap_contract_outputs(m: dict) -> None:
    m["contract"]["outputs"].reverse()


def _swap_artifact_contract_outputs(m: dict) -> None:
    m["artifacts"]["onnx"]["contract"]["outputs"].reverse()


def _rename_input(m: dict) -> None:
    m["contract"]["inputs"][0]["name"] = "picture"


def _both(*edits: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def edit(bundle: Path, canary: Path) -> None:
        for e in edits:
            e(bundle, canary)
    return edit


def _stored_override(bundle: Path, canary: Path) -> None:
    _scale_onnx_weight(bundle, canary)
    m = manifest(bundle)
    m["tolerances"] = {"onnx:*": {"atol": 100.0}}
    write(bundle, m)


FAULTS: list[Fault] = [
    # 1. NaN/Inf in the golden reference (hashes updated)
    Fault("reference-one-nan", "1 nan-reference", edit_npz("reference", _nan_one), BUNDLE, "holds NaN/Inf (sample 3)"),
    Fault("reference-all-nan", "1 nan-reference", edit_npz("reference", lambda a: {"logits": a["logits"] * np.nan}),
          BUNDLE, "holds NaN/Inf"),
    Fault("alt-reference-inf", "1 nan-reference", edit_npz("reference", lambda a: {"logits": a["logits"] + np.inf},
                                                           "alt"), BUNDLE, "holds NaN/Inf"),
    # 2. non-finite or negative tolerances, from the manifest or the command line
    Fault("manifest-nan-tolerance", "2 nan-tolerance",
          edit_manifest(_set("tolerances", {"*:*": {"atol": float("nan")}})),
          BUNDLE, "must be a finite number >= 0"),
    Fault("manifest-negative-rtol", "2 nan-tolerance", edit_manifest(_set("tolerances", {"onnx:*": {"rtol": -1}})),
          BUNDLE, "must be a finite number >= 0"),
    Fault("cli-atol-nan", "2 nan-tolerance", lambda b, c: None, USAGE, "must be a finite number >= 0",
          args=["--atol", "nan"]),
    Fault("cli-rtol-inf", "2 nan-tolerance", lambda b, c: None, USAGE, "must be a finite number >= 0",
          args=["--rtol", "onnx=inf"]),
    # 3. paths out of the bundle, paths not tied to the hashed files, non-regular files
    Fault("artifact-path-dotdot", "3 paths", edit_manifest(_set("artifacts.onnx.path", "../canary/x.onnx")), BUNDLE,
          "not a normalised relative path inside the bundle"),
    Fault("artifact-path-absolute", "3 paths", edit_manifest(_set("artifacts.onnx.path", "/etc/hostname")), BUNDLE,
          "not a normalised relative path"),
    Fault("file-record-dotdot", "3 paths", edit_manifest(_set("artifacts.onnx.files.0.path", "../canary/f.bin")),
          BUNDLE, "not a normalised relative path"),
    Fault("golden-path-dotdot", "3 paths", edit_manifest(_set("golden.sets.main.inputs", "golden/../../canary/i.npz")),
          BUNDLE, "not a normalised relative path"),
    Fault("path-not-normalised", "3 paths", edit_manifest(_set("artifacts.onnx.path", "artifacts/./digits_cnn.onnx")),
          BUNDLE, "not a normalised relative path"),
    Fault("path-not-its-files", "3 paths",
          edit_manifest(_set("artifacts.onnx.path", "artifacts/digits_cnn_float32.tflite")),
          BUNDLE, "its files are not all under its path"),
    Fault("fifo-artifact", "3 paths", _fifo, BUNDLE, "not a regular file or directory"),
    # 4. symbolic links, to identical files or to directories outside
    Fault("artifact-symlink", "4 links", _link("artifacts/digits_cnn.onnx", _copy_to_canary), BUNDLE, "symbolic link"),
    Fault("savedmodel-dir-symlink", "4 links", _link("artifacts/digits_cnn_saved_model", _copy_to_canary), BUNDLE,
          "symbolic link"),
    Fault("golden-symlink", "4 links", _link("golden/inputs.npz", _copy_to_canary), BUNDLE, "symbolic link"),
    Fault("logs-symlink", "4 links", _link("logs", _canary_dir), BUNDLE, "symbolic link"),
    Fault("reports-symlink", "4 links", _link("reports", _canary_dir), BUNDLE, "symbolic link"),
    Fault("junit-symlink", "4 links", _link("reports/validation.junit.xml", _copy_to_canary), BUNDLE, "symbolic link"),
    Fault("repro-symlink", "4 links", _link("reports/repro", _canary_dir), BUNDLE, "symbolic link"),
    # 5. hashing switched off
    Fault("artifact-files-empty", "5 hashing", _junk_appended_no_files, BUNDLE, "an exported artifact needs files"),
    Fault("artifact-files-missing", "5 hashing", edit_manifest(_pop("artifacts.onnx.files")), BUNDLE,
          "an exported artifact needs files"),
    Fault("golden-files-empty", "5 hashing", edit_manifest(_set("golden.files", [])), BUNDLE,
          "golden.files is empty"),
    Fault("junk-appended", "5 hashing", lambda b, c: open(b / "artifacts/digits_cnn_float32.tflite", "ab").write(b"x"),
          BUNDLE, "does not match its sha256"),
    # 6. the contract
    Fault("input-renamed", "6 contract", edit_manifest(_rename_input), BUNDLE, "the contract names ['picture']"),
    Fault("input-reshaped", "6 contract", edit_manifest(_set("contract.inputs.0.shape", ["batch", 1, 8, 9])), BUNDLE,
          "the contract and manifest say float32"),
    Fault("input-dtype", "6 contract", edit_manifest(_set("contract.inputs.0.dtype", "float64")), BUNDLE,
          "the contract and manifest say float64"),
    Fault("outputs-swapped-in-contract", "6 contract", edit_manifest(_swap_contract_outputs), BUNDLE,
          "disagrees with the bundle's contract", base="multi_io"),
    Fault("outputs-swapped-in-artifact", "6 contract", edit_manifest(_swap_artifact_contract_outputs), BUNDLE,
          "disagrees with the bundle's contract", base="multi_io"),
    Fault("onnx-graph-outputs-reordered", "6 contract", _reorder_onnx_outputs, PARITY,
          "does not honour its I/O contract",
          base="multi_io", needs_runtime=True),
    Fault("artifact-dtype-claim", "6 contract", edit_manifest(_set("artifacts.onnx.contract.inputs.0.artifact_dtype",
                                                                   "float64")), PARITY,
          "does not honour its I/O contract", needs_runtime=True),
    # 7. golden data against the manifest and contract
    Fault("golden-dtype", "7 golden", edit_npz("inputs", lambda a: {"image": a["image"].astype(np.float64)}), BUNDLE,
          "is float64"),
    Fault("golden-samples", "7 golden", edit_manifest(_set("golden.sets.main.samples", 15)), BUNDLE,
          "the contract and manifest say"),
    Fault("golden-dims", "7 golden", edit_manifest(_set("golden.sets.alt.dims", {"batch": 2})), BUNDLE,
          "the contract and manifest say"),
    Fault("golden-empty", "7 golden", edit_npz("inputs", lambda a: {"image": a["image"][:0]}), BUNDLE,
          "the contract and manifest say"),
    Fault("golden-input-missing", "7 golden", edit_npz("inputs", lambda a: {"other": a["image"]}), BUNDLE,
          "input arrays ['other']"),
    Fault("golden-swapped", "7 golden", edit_manifest(lambda m: m["golden"]["sets"]["main"].update(
        inputs=m["golden"]["sets"]["main"]["reference"], reference=m["golden"]["sets"]["main"]["inputs"])), BUNDLE,
          "arrays"),
    # 8. malformed manifests and golden files
    Fault("status-missing", "8 malformed", edit_manifest(_pop("artifacts.onnx.status")), BUNDLE, "missing 'status'"),
    Fault("status-unknown", "8 malformed", edit_manifest(_set("artifacts.onnx.status", "great")), BUNDLE,
          "unknown value"),
    Fault("exporter-wrong-type", "8 malformed", edit_manifest(_set("artifacts.onnx.exporter", 3)), BUNDLE,
          "expected an object"),
    Fault("tolerances-malformed", "8 malformed", edit_manifest(_set("tolerances", {"onnx": 1})), BUNDLE,
          "manifest.tolerances"),
    Fault("golden-missing", "8 malformed", edit_manifest(_pop("golden")), BUNDLE, "missing 'golden'"),
    Fault("manifest-not-json", "8 malformed", lambda b, c: (b / "manifest.json").write_text("{"), BUNDLE, "unreadable"),
    Fault("manifest-a-list", "8 malformed", lambda b, c: (b / "manifest.json").write_text("[]"), BUNDLE,
          "expected an object"),
    Fault("npz-not-zip", "8 malformed", _not_a_zip, BUNDLE, "not a readable .npz"),
    Fault("npz-pickle", "8 malformed", _pickled, BUNDLE, "pickled Python objects"),
    Fault("zero-samples", "8 malformed", edit_manifest(_set("golden.sets.main.samples", 0)), BUNDLE, "samples = 0"),
    Fault("stored-outputs-reshaped", "8 malformed", _both(
        lambda b, c: np.savez(b / "golden/outputs/onnx.main.npz", logits=np.zeros((16, 1, 3), np.float32)),
        lambda b, c: rehash(b)), BUNDLE, "stored outputs"),
    Fault("npz-member-not-array", "8 malformed", _both(_raw_member, lambda b, c: rehash(b)), BUNDLE,
          "is not a numpy array"),
    Fault("set-name-traversal", "3 paths", edit_manifest(lambda m: m["golden"]["sets"].update(
        {"../../escaped": m["golden"]["sets"].pop("alt")})), BUNDLE, "a set name is letters, digits"),
    # 9. design gaps: unaccounted files, hidden artifacts
    Fault("hidden-not-applicable", "9 unaccounted", edit_manifest(lambda m: m["artifacts"]["onnx"].update(
        status="not_applicable", files=[])), BUNDLE, "not accounted for by the manifest"),
    Fault("hidden-entry-deleted", "9 unaccounted", edit_manifest(_pop("artifacts.tflite_fp16")), BUNDLE,
          "not accounted for by the manifest"),
    Fault("extra-artifact-file", "9 unaccounted", _extra("artifacts/payload.bin"), BUNDLE,
          "not accounted for by the manifest"),
    Fault("extra-golden-file", "9 unaccounted", _extra("golden/outputs/extra.npz"), BUNDLE,
          "not accounted for by the manifest"),
    # weights edited with the hash updated: the check itself must catch it
    Fault("onnx-weight-x1.5", "weights", _scale_onnx_weight, PARITY, "error appears at hop source -> onnx",
          needs_runtime=True),
    Fault("stored-override-hides-it", "9 stored tolerance", _stored_override, PARITY, "outside atol=0.0001",
          args=["--tier-defaults"], needs_runtime=True),
]
