"""Signed bundles with the OpenSSF ``model-signing`` library (elliptic-curve key mode, offline).

``export --sign KEY`` signs the bundle's content (manifest.json, artifacts/, golden/) into
``signature.sig`` beside the manifest, before the bundle is published; ``reports/`` and ``logs/``
are left out because validate and bench write there later. ``validate --verify PUBKEY`` (and
bench) checks the signature before anything else in the bundle is read: the hashes in the
manifest catch accidental corruption and edits that did not update them; only a signature
catches an edit that rewrote the manifest's hashes too.
"""
from __future__ import annotations

import re
from pathlib import Path

from deploytool.core.errors import BundleError, UsageError, short_error
from deploytool.install import hint

SIGNATURE = "signature.sig"
UNSIGNED = ("reports", "logs", SIGNATURE)  # deploytool's own later output, and the signature itself
INSTALL_HINT = hint("signing")


def _library():
    try:
        import model_signing
    except ImportError as e:  # model-signing 1.1.1 imports OpenSSL without declaring pyopenssl
        raise UsageError(f"signing needs the model-signing library ({INSTALL_HINT}): {short_error(e)}") from None
    return model_signing


def _hashing(ms):
    return ms.hashing.Config().set_ignored_paths(paths=list(UNSIGNED), ignore_git_paths=False)


def sign(root: Path, private_key: Path) -> Path:
    ms = _library()
    if not Path(private_key).is_file():
        raise UsageError(f"--sign {private_key}: no such key file")
    try:
        ms.signing.Config().use_elliptic_key_signer(private_key=Path(private_key)).set_hashing_config(
            _hashing(ms)).sign(root, root / SIGNATURE)
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
        text = " ".join(str(e).split())
        changed = re.findall(r"Hash mismatch for \\*'([^'\\]+)", text)  # quoted as in a list's repr, or not
        why = f"changed since signing: {', '.join(changed)}" if changed else f"{type(e).__name__}: {text[:300]}"
        raise BundleError(f"bundle {root}: signature does not verify with {public_key}: {why}") from None
