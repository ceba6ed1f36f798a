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
from importlib import metadata
from pathlib import Path
from typing import Any

from deploytool import __version__
from deploytool.errors import BundleError
from deploytool.manifest import FileRecord

ARTIFACTS = "artifacts"
GOLDEN = "golden"
REPORTS = "reports"
LOGS = "logs"

TRACKED_PACKAGES = ("numpy", "torch", "onnx", "onnxscript", "onnxruntime", "onnx2tf", "tensorflow", "tf_keras",
                    "ai-edge-litert", "tf2onnx", "onnx-graphsurgeon", "sng4onnx", "click")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "deploytool": __version__}
    for name in TRACKED_PACKAGES:
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


def file_records(root: Path, path: Path) -> list[FileRecord]:
    """sha256 and size of a file, or of every file under a directory, paths relative to ``root``."""
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [FileRecord(p.relative_to(root).as_posix(), sha256_file(p), p.stat().st_size) for p in paths]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
