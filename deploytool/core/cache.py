"""Where deploytool keeps what it builds or installs once per machine (npm packages, other Python environments, the
libtorch runner, the aarch64 emulation): ``$DEPLOYTOOL_CACHE``, default ``~/.cache/deploytool``."""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CACHE_ENV = "DEPLOYTOOL_CACHE"
T = TypeVar("T")


def root() -> Path:
    """The cache folder, absolute (``~`` expanded; a relative one is the working directory's): read at each call, a
    test or a CI job may point it elsewhere; subprocesses started in other folders find it all the same."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deploytool").expanduser().resolve()


def once(lock: Path, ready: Callable[[], T | None], make: Callable[[], T]) -> T:
    """What ``ready()`` finds, or else what ``make()`` builds, under an exclusive lock on the file ``lock``: concurrent
    processes build it once (the others wait, then find it). The lock is released when its file closes, even if this
    process dies; ``make`` writes its result whole (a temporary name renamed, or a marker written last) so ``ready``
    never finds half of it."""
    found = ready()
    if found is not None:
        return found
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        found = ready()  # another process made it while this one waited
        return found if found is not None else make()
