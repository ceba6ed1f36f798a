"""Bundles on disk: layout, hashes, atomic publication (the manifest's records: ``manifest.py``).

    <out>/<model>/
      manifest.json          schema_version, versions, contract, per-artifact records
      artifacts/             one file or directory per format
      golden/inputs.npz      seeded golden inputs  [samples, *shape] per input
      golden/reference.npz   source-model outputs on them  [samples, *shape] per output
      reports/               validation.json (and later bench results)
      logs/                  converter and runtime output, one file per worker

A bundle is built in a hidden staging directory beside its destination and renamed into place
only when complete: an export killed at any moment leaves the previous bundle or none.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import stat
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from deploytool import __version__
from deploytool.core.errors import BundleError
from deploytool.store.manifest import FileRecord

ARTIFACTS = "artifacts"
GOLDEN = "golden"
REPORTS = "reports"
LOGS = "logs"

# The packages whose versions the manifest records: the converters and libraries here, then every
# runtime's distributions (from the registry, so a new runtime is recorded the day it is added).
CONVERTER_PACKAGES = ("numpy", "onnx", "onnxscript", "onnx2tf", "tf_keras", "tf2onnx", "onnx-graphsurgeon", "sng4onnx",
                      "click")


def tracked_packages() -> tuple[str, ...]:
    from deploytool import runtimes  # the registry imports no framework

    return tuple(dict.fromkeys(CONVERTER_PACKAGES + runtimes.distributions()))


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "deploytool": __version__}
    for name in tracked_packages():
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def platform_info() -> dict:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "python_implementation": platform.python_implementation(), "cpu_count": os.cpu_count()}


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The key of an exporter's ``options`` that lists the files belonging to a file artifact beside it (an ONNX
# file's external data, e.g. ``model.onnx.data``), relative to the artifact's directory: export hashes them
# with the artifact (``file_records``), so validate and bench verify them before the artifact is loaded.
SIDECARS = "sidecar_files"


def file_records(root: Path, path: Path, sidecars: Sequence[str] = ()) -> list[FileRecord]:
    """sha256 and size of a file, or of every file under a directory, paths relative to ``root``; then
    of a file artifact's ``sidecars`` (relative to its directory: regular files, never through a link)."""
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for rel in sidecars:
        what = f"artifact {path.name}: sidecar file"
        side = path.parent / contained(rel, what)
        if path.is_dir() or any(p.is_symlink() for p in (side, *side.parents[:len(PurePosixPath(rel).parts) - 1])) \
                or not side.is_file():
            raise BundleError(f"{what} {rel!r} is not a regular file beside it")
        paths.append(side)
    return [FileRecord(p.relative_to(root).as_posix(), sha256_file(p), p.stat().st_size) for p in paths]


def onnx_external_data(path: Path) -> list[str]:
    """The external data files the tensors of the ONNX file ``path`` name, in order of first use, as
    relative POSIX paths from its directory (none: [] ). ValueError, one line naming the file, for a
    location that is absolute, not normalised or outside the directory, or a file that is missing,
    a link or not a regular file (links are refused as onnx.checker refuses them)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    found: dict[str, str] = {}  # location -> the first tensor naming it
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            found.setdefault(ExternalDataInfo(tensor).location, tensor.name)
    for location, tensor_name in found.items():
        where = f"external data file {location!r} (tensor {tensor_name!r})"
        pure = PurePosixPath(location)
        if not location or pure.is_absolute() or "\\" in location or "\0" in location or ":" in pure.parts[0] \
                or any(p in ("..", ".") for p in pure.parts) or pure.as_posix() != location:
            raise ValueError(f"{where} is not a relative path inside the model's directory (refused)")
        if location == path.name:
            raise ValueError(f"{where} is the model file itself (refused)")
        step = path.parent
        for part in pure.parts:
            step = step / part
            try:
                mode = os.lstat(step).st_mode
            except FileNotFoundError:
                raise ValueError(f"{where} is missing: it must be beside the model file, at {step}") from None
            if stat.S_ISLNK(mode):
                raise ValueError(f"{where} is a symbolic link at {step} (refused)")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{where} is not a regular file (refused)")
    return list(found)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Atomically (temporary file + rename); the temporary file is created exclusively and never
    through a link, and the rename replaces a link at ``path`` instead of writing through it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- the bundle as a trust boundary ---------------------------------------------------------------
# A bundle may have travelled through other hands. Paths it names are checked to be relative,
# normalised and inside it; nothing in it may be a link or anything but a regular file or a
# directory; and deploytool writes into it (reports/, logs/, repro folders) only through
# directories it has checked to be real directories inside the bundle.

def contained(rel: object, what: str) -> str:
    """A bundle-relative path from a manifest: a relative, normalised POSIX path inside the bundle."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{what}: path {rel!r} is not a relative path")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or "\\" in rel or "\0" in rel or any(p in ("..", ".") for p in pure.parts) \
            or pure.as_posix() != rel:
        raise BundleError(f"{what}: path {rel!r} is not a normalised relative path inside the bundle")
    return rel


def scan(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (bundle-relative POSIX path -> "file" or "dir"), never following a
    link; a link, FIFO, socket or device anywhere in the bundle is refused."""
    entries: dict[str, str] = {}

    def unreadable(e: OSError) -> None:  # a directory that cannot be listed could hide anything
        raise BundleError(f"bundle {root}: cannot read {e.filename} ({e.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"bundle {root}: {rel} is a symbolic link (links are refused: a bundle must be "
                                  "self-contained)")
            if stat.S_ISDIR(mode):
                entries[rel] = "dir"
            elif stat.S_ISREG(mode):
                entries[rel] = "file"
            else:
                raise BundleError(f"bundle {root}: {rel} is not a regular file or directory (refused)")
    return entries


def real_dir(root: Path, rel: str) -> Path:
    """``root/rel`` as a real directory inside ``root``, creating what is missing; refuses to go
    through a link or a non-directory at any step (so a write can never leave the bundle)."""
    path = Path(root)
    for part in PurePosixPath(contained(rel, f"bundle {root}")).parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            path.mkdir()
            continue
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            raise BundleError(f"bundle {root}: {path.relative_to(root).as_posix()} is "
                              f"{'a symbolic link' if stat.S_ISLNK(mode) else 'not a directory'}; "
                              "refusing to write through it")
    return path


def remove_tree(root: Path, path: Path) -> None:
    """Remove a directory deploytool wrote inside the bundle (a stale repro folder), never through a link."""
    if not path.exists() and not path.is_symlink():
        return
    real_dir(root, path.relative_to(root).as_posix())  # refuses a link on the way or at the end
    shutil.rmtree(path)  # does not follow links inside


def staging_dir(out: Path, name: str) -> Path:
    """A fresh hidden directory beside the destination (same filesystem, so the final rename is atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, name)
    path = out / f".{name}.partial-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def _remove_stale(out: Path, name: str) -> None:
    """Staging or retired directories left by a killed export whose process is gone."""
    for p in out.glob(f".{name}.*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(staging: Path, dest: Path) -> None:
    """Replace ``dest`` with the complete ``staging`` directory (rename-based, never half a bundle)."""
    _fsync_tree(staging)
    retired = None
    if dest.exists():
        retired = dest.with_name(f".{dest.name}.retired-{os.getpid()}")
        os.rename(dest, retired)
    os.rename(staging, dest)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def verify_files(bundle: Path, records: list[FileRecord], what: str) -> None:
    """Refuse before loading: every recorded file present, same size, same sha256."""
    for rec in records:
        p = Path(bundle) / rec.path
        if not p.is_file():
            raise BundleError(f"{what}: file {rec.path} is missing from the bundle")
        if p.stat().st_size != rec.size or sha256_file(p) != rec.sha256:
            raise BundleError(f"{what}: {rec.path} does not match its sha256 in the manifest (corrupt or modified)")


def golden_outputs_path(fmt: str, set_name: str) -> str:
    """Where an artifact's own outputs on a golden set are kept (for per-hop comparisons later)."""
    return f"golden/outputs/{fmt}.{set_name}.npz"
