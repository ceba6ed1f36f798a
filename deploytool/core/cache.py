"""Where deploytool keeps what it builds or installs once per machine (npm packages, other Python environments, the
libtorch runner, the aarch64 emulation): ``$DEPLOYTOOL_CACHE``, default ``~/.cache/deploytool``."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DEPLOYTOOL_CACHE"


def root() -> Path:
    """The cache folder (read at each call: a test or a CI job may point it elsewhere)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deploytool")
