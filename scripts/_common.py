"""Shared by the benchmark scripts: a scratch directory and a mobilenet_v2 bundle to measure."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def bundle_or_export(bundle: Path | None, prefix: str, model: str = "mobilenet_v2") -> tuple[Path, Path]:
    """(bundle, scratch dir): the given bundle, or a fresh export of ``model`` into the scratch dir."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if bundle is None:
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", model, "--out", str(work)],
                       check=True, stdout=subprocess.DEVNULL)
        bundle = work / model
    return bundle, work
