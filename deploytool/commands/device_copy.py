"""``deploytool device-copy``: a copy of a bundle for a device, without what only the export machine needs.

What a device runs (``validate``, ``bench``) reads the manifest, the artifacts and the golden data. The
copy leaves out (``LEFT_OUT`` says why, in one place):

- the files only export reads (``Manifest.export_only``: the int8 formats' calibration data, 77 MB of
  mobilenet_v2's 184 MB); the manifest keeps their sha256 and the reader accepts their absence, theirs only;
- ``logs/`` and ``reports/`` (repro folders included): the export machine's own output, neither hashed nor
  signed; validate and bench on the device write their own.

``manifest.json`` and ``signature.sig`` are copied byte for byte, so the manifest's hashes and a signature over
them stay valid. A bundle signed before export-only files were left out of signatures has them covered by its
signature: the copy keeps them then (and says so), or it would not verify. The copy never follows a link, is
staged beside ``DEST`` and checked by the bundle reader (every hash; the signature with ``verify_key``)
before it is renamed into place; the source is checked the same way first, so an error names the bundle.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploytool.core.errors import BundleError, UsageError
from deploytool.store import bundle, manifest, signing
from deploytool.store.reader import OpenedBundle, open_bundle

LEFT_OUT = {
    "export-only": "only export reads it (the int8 formats' calibration data); the manifest keeps its sha256",
    bundle.LOGS: "the export machine's converter and worker logs; validate and bench write their own",
    bundle.REPORTS: "the export machine's results and repro folders; validate and bench write their own",
}


@dataclass
class DeviceCopyOutcome:
    bundle: Path
    dest: Path
    bytes_full: int  # the bundle's files, all of them
    bytes_copied: int
    left_out: dict[str, tuple[int, str]]  # bundle-relative path (a directory ends with "/") -> (bytes, why)
    verified: bool  # the signature verified with the key given, on the bundle and on its copy
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run(bundle_dir: Path | str, dest: Path | str, force: bool = False,
        verify_key: Path | str | None = None) -> DeviceCopyOutcome:
    """Copy ``bundle_dir`` to ``dest`` without its export-only files, logs/ and reports/ (``force``: replace a
    bundle already at ``dest``; ``verify_key``: refuse unless the signature verifies, on the bundle and on the
    copy). BundleError (exit 8) for a bundle the reader refuses, UsageError (exit 2) for a ``dest`` it cannot
    take."""
    t0 = time.perf_counter()
    dest = Path(dest)
    _check_dest(Path(bundle_dir), dest, force)
    source = _checked(Path(bundle_dir), verify_key)
    kept = signing.covered(source.root, [p for p in source.manifest.export_only() if p not in source.absent])
    entries = bundle.scan(source.root)
    skipped = _left_out(source, entries, kept)
    root = dest.absolute()
    try:
        staging = bundle.staging_dir(root.parent, root.name)
    except OSError as e:
        raise UsageError(f"cannot write {dest}: {e.strerror or e}") from None
    try:
        copied = _copy(source.root, staging, entries, skipped)
        try:
            _checked(staging, verify_key)
        except BundleError as e:
            raise BundleError(f"device copy of {source.root}: the copy does not verify, nothing was published "
                              f"({e})") from None
        bundle.publish(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    sizes = _sizes(source.root, entries)
    left_out = {(f"{rel}/" if entries[rel] == "dir" else rel): (sizes[rel], why) for rel, why in skipped.items()}
    messages = [f"kept {rel}: the bundle's signature covers it (signed by a deploytool that signed export-only "
                "files too), so the copy would not verify without it; re-export with --sign for a smaller copy"
                for rel in kept]
    if (source.root / signing.SIGNATURE).is_file() and verify_key is None:
        messages.append(f"{signing.SIGNATURE} copied unverified; verify on the device with validate --verify PUBKEY")
    return DeviceCopyOutcome(source.root, dest, sizes[""], copied, left_out, verify_key is not None, messages,
                             time.perf_counter() - t0)


def _checked(root: Path, verify_key: Path | str | None) -> OpenedBundle:
    """The bundle as the reader opens it (the signature with ``verify_key``), and every artifact's files hashed."""
    opened = open_bundle(root, verify_key)
    for name, rec in opened.manifest.artifacts.items():
        bundle.verify_files(root, rec.files, f"bundle {root}: artifact {name}")
    return opened


def _check_dest(source: Path, dest: Path, force: bool) -> None:
    """``dest`` must be new, or (``force``) a bundle or an empty directory, and neither inside the bundle nor
    holding it."""
    src, target = source.resolve(), dest.resolve()
    if target == src or src in target.parents or target in src.parents:
        raise UsageError(f"{dest}: a device copy cannot be the bundle {source}, inside it, or hold it")
    if not dest.exists() and not dest.is_symlink():
        return
    if not force:
        raise UsageError(f"{dest} already exists (--force replaces it)")
    if dest.is_symlink() or not dest.is_dir() or \
            (any(dest.iterdir()) and not (dest / manifest.FILENAME).is_file()):
        raise UsageError(f"{dest}: not a bundle or an empty directory; --force replaces only those")


def _left_out(source: OpenedBundle, entries: dict[str, str], kept: list[str]) -> dict[str, str]:
    """Bundle-relative path -> why the copy leaves it out (a directory: all under it)."""
    skipped = {rel: LEFT_OUT["export-only"] for rel in source.manifest.export_only()
               if rel in entries and rel not in kept}
    skipped.update({top: LEFT_OUT[top] for top in (bundle.LOGS, bundle.REPORTS) if top in entries})
    return skipped


def _copy(src: Path, dst: Path, entries: dict[str, str], skipped: dict[str, str]) -> int:
    """Copy every entry but the ``skipped`` ones (and what is under them), never through a link (the copy is
    checked by the reader afterwards, which refuses any link); returns the bytes copied."""
    copied = 0
    for rel, kind in sorted(entries.items()):
        parts = PurePosixPath(rel).parts
        if any("/".join(parts[:i]) in skipped for i in range(1, len(parts) + 1)):
            continue
        if kind == "dir":
            (dst / rel).mkdir()
        else:
            shutil.copyfile(src / rel, dst / rel, follow_symlinks=False)
            copied += os.lstat(dst / rel).st_size
    return copied


def _sizes(root: Path, entries: dict[str, str]) -> dict[str, int]:
    """Bytes of each entry (a directory: of every file under it; "": the whole bundle)."""
    sizes = {rel: 0 for rel in entries}
    sizes[""] = 0
    for rel, kind in entries.items():
        if kind == "file":
            size = os.lstat(root / rel).st_size
            parts = PurePosixPath(rel).parts
            for i in range(len(parts) + 1):
                sizes["/".join(parts[:i])] += size
    return sizes


__all__ = ["run", "DeviceCopyOutcome", "LEFT_OUT"]
