"""The npm packages the browser runtimes load, installed once per lockfile into a cache directory.

``package.json`` pins each package exactly and ``package-lock.json`` pins the whole tree with each tarball's
integrity hash; ``npm ci --ignore-scripts`` installs exactly that tree (verifying every hash, running no
package's install scripts) into ``$DEPLOYTOOL_CACHE/npm/<key>/`` (default ``~/.cache/deploytool``), where
``key`` hashes both files, so a new pin gets a directory of its own. Installing is the explicit set-up step
(``deploytool setup``): nothing is fetched when a model is exported, validated or benched. The install is
atomic (under a lock, into a temporary directory renamed into place, ``installed.json`` written last), so a
half-finished one is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploytool.core import cache

HERE = Path(__file__).parent
FILES = ("package.json", "package-lock.json")
CACHE_ENV = cache.CACHE_ENV
NPM = "npm"
INSTALL_TIMEOUT_S = 900.0
HINT = "run `deploytool setup`"


class SetupError(RuntimeError):
    """The packages could not be installed: one line saying why (npm's own error, its log)."""


@dataclass(frozen=True)
class Installed:
    folder: Path  # holds node_modules/
    packages: dict[str, str]  # what package.json pins: name -> version
    install_s: float  # 0.0 when it was already installed


def pins() -> dict[str, str]:
    """The packages package.json pins, name -> exact version."""
    return dict(json.loads((HERE / "package.json").read_text())["dependencies"])


def key() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def folder() -> Path:
    """Where this lockfile's packages are (or would be) installed."""
    return cache.root() / "npm" / key()


def installed() -> bool:
    return (folder() / "installed.json").is_file()


def package_dir(name: str) -> Path:
    """An installed package's directory (``node_modules/NAME``)."""
    return folder() / "node_modules" / name


def ensure(offline: bool = False, timeout: float = INSTALL_TIMEOUT_S) -> Installed:
    """The packages of the lockfile, installed now unless they already are. ``offline``: from npm's own cache
    only (``--offline``). Raises SetupError."""
    target = folder()

    def install() -> Installed:
        if shutil.which(NPM) is None:
            raise SetupError("no npm on PATH to install the browser runtimes' packages: apt-get install npm")
        return _install(target, offline, timeout)
    return cache.once(target.parent / f"{target.name}.lock",
                      lambda: Installed(target, pins(), 0.0) if installed() else None, install)


def _install(target: Path, offline: bool, timeout: float) -> Installed:
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in FILES:
        shutil.copyfile(HERE / name, tmp / name)
    command = [shutil.which(NPM) or NPM, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier",
               "--offline" if offline else "--prefer-offline"]
    log = target.with_name(f"{target.name}.log")
    t0 = time.perf_counter()
    try:
        with open(log, "w") as out:
            done = subprocess.run(command, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"npm ci took over {timeout:.0f} s (log: {log})") from None
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"npm ci failed: {_first_error(log.read_text(errors='replace'))} (log: {log})")
    got = {name: json.loads((tmp / "node_modules" / name / "package.json").read_text())["version"] for name in pins()}
    if got != pins():
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"npm ci installed {got}, not the pinned {pins()} (log: {log})")
    built = Installed(target, got, round(time.perf_counter() - t0, 1))
    (tmp / "installed.json").write_text(json.dumps({"packages": got, "install_s": built.install_s}, indent=1))
    shutil.rmtree(target, ignore_errors=True)  # a leftover without installed.json: never used, replaced
    os.replace(tmp, target)  # last: the folder exists only once complete
    return built


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    hit = next((ln for ln in lines if "ERR!" in ln and "A complete log" not in ln), None)
    return (hit or (lines[-1] if lines else "no output"))[:300]
