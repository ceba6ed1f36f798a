"""Where deploytool keeps what it builds or installs once per machine (npm packages, other Python environments, the
libtorch runner, the aarch64 emulation): ``$DEPLOYTOOL_CACHE``, default ``~/.cache/deploytool``."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DEPLOYTOOL_CACHE"


def root() -> Path:
    """The cache folder, absolute (``~`` expanded; a relative one is the working directory's): read at each call, a
    test or a CI job may point it elsewhere; subprocesses started in other folders find it all the same."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deploytool").expanduser().resolve()
