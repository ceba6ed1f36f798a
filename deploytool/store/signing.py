"""Signed bundles with the OpenSSF ``model-signing`` library (elliptic-curve key mode, offline).

``export --sign KEY`` signs the bundle's content (manifest.json, artifacts/, golden/) into
``signature.sig`` beside the manifest, before the bundle is published; ``reports/`` and ``logs/``
are left out because validate and bench write there later, and so are the files only export reads
(``Manifest.export_only``: the calibration data), so that a device copy without them still verifies:
the signed manifest holds their sha256, which the reader checks wherever they are present. The
signature records the paths it leaves out and verifying honours them, so a signature made before
the export-only files were left out (over the full bundle) verifies as it did. ``validate --verify
PUBKEY`` (and bench) checks the signature before anything else in the bundle is read: the hashes in
the manifest catch accidental corruption and edits that did not update them; only a signature
catches an edit that rewrote the manifest's hashes too.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from pathlib import Path

from deploytool.core.errors import BundleError, UsageError, short_error
from deploytool.install import hint
from deploytool.store import bundle, manifest

SIGNATURE = "signature.sig"
UNSIGNED = (bundle.REPORTS, bundle.LOGS, SIGNATURE)  # deploytool's own later output, and the signature itself
INSTALL_HINT = hint("signing")


def _library():
    try:
        import model_signing
    except ImportError as e:  # model-signing 1.1.1 imports OpenSSL without declaring pyopenssl
        raise UsageError(f"signing needs the model-signing library ({INSTALL_HINT}): {short_error(e)}") from None
    return model_signing


def _hashing(ms, also: Sequence[str] = ()):
    """What a signature covers: everything but UNSIGNED and ``also``. Verifying passes no ``also``: the library
    adds the paths the signature itself records as left out."""
    return ms.hashing.Config().set_ignored_paths(paths=[*UNSIGNED, *also], ignore_git_paths=False)


def sign(root: Path, private_key: Path) -> Path:
    ms = _library()
    if not Path(private_key).is_file():
        raise UsageError(f"--sign {private_key}: no such key file")
    export_only = manifest.read(root).export_only()
    try:
        ms.signing.Config().use_elliptic_key_signer(private_key=Path(private_key)).set_hashing_config(
            _hashing(ms, export_only)).sign(root, root / SIGNATURE)
    except Exception as e:  # noqa: BLE001 - a bad key or an unreadable file: say which, in one line
        raise UsageError(f"--sign {private_key}: signing failed: {short_error(e)}") from None
    return root / SIGNATURE


def verify(root: Path, public_key: Path) -> None:
    """Raise BundleError unless ``root`` carries a signature by ``public_key``'s private key over its content."""
    ms = _library()
    if not Path(public_key).is_file():
        raise UsageError(f"--verify {public_key}: no such key file")
    signature = root / SIGNATURE
    if not signature.is_file():
        raise BundleError(f"bundle {root}: not signed (no {SIGNATURE}); --verify needs a bundle exported with --sign")
    try:
        ms.verifying.Config().use_elliptic_key_verifier(public_key=Path(public_key)).set_hashing_config(
            _hashing(ms)).verify(root, signature)
    except Exception as e:  # noqa: BLE001 - any verification failure refuses the bundle
        raise BundleError(f"bundle {root}: signature does not verify with {public_key}: {_why(e)}") from None


def _why(e: Exception) -> str:
    """What the library's mismatch says, in one short clause (files changed, missing or added since signing)."""
    text = " ".join(str(e).split())
    changed = re.findall(r"Hash mismatch for \\*'([^'\\]+)", text)  # quoted as in a list's repr, or not
    clauses = [f"changed since signing: {', '.join(changed)}"] if changed else []
    for kind, said in (("Missing files", "missing since signing"), ("Extra files found", "added since signing")):
        found = re.search(kind + r" in model \\*'[^']*\\*': ([^'\\\]\"]+)", text)
        if found:
            clauses.append(f"{said}: {found.group(1).strip()}")
    return "; ".join(clauses) or f"{type(e).__name__}: {text[:300]}"


def covered(root: Path, paths: Sequence[str]) -> list[str]:
    """Those of ``paths`` (bundle-relative files) that the bundle's signature covers, read from its payload
    without verifying it: what a copy must keep for the signature to verify there (verifying it is
    ``verify``'s job). Unsigned: none. A signature whose payload cannot be read: all of them, to be safe."""
    path = root / SIGNATURE
    if not path.is_file():
        return []
    try:
        if path.stat().st_size > manifest.MAX_BYTES:
            return list(paths)
        statement = json.loads(base64.b64decode(json.loads(path.read_text())["dsseEnvelope"]["payload"]))
        names = {str(r["name"]) for r in statement["predicate"]["resources"]}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return list(paths)
    return [p for p in paths if p in names]
