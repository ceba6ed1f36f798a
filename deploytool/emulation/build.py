"""The aarch64 emulation environment, built once per machine from the package registries (``deploytool setup``).

What it holds, each input pinned by a lock file beside this module:

- ``qemu-aarch64``: from Debian bookworm-backports' ``qemu-user`` (static binaries), ``aarch64-debs.txt``. QEMU >= 10
  is required and checked: bookworm's own 7.2 segfaults at the emulated interpreter's start and computes int8 wrong
  with SME, and an emulator bug looks like a model bug.
- ``sysroot/``: an arm64 Python 3.11 from Debian bookworm's arm64 packages (``aarch64-debs.txt``), passed as ``-L``.
- ``site/``: the aarch64 wheels of ai-edge-litert and onnxruntime (deploytool's pins), numpy and their dependencies
  (``aarch64-wheels.txt``, with their hashes), unpacked: the emulated Python's ``PYTHONPATH``.

The Debian packages come through a private apt configuration in the build folder (its own sources.list, state and
cache): ``apt-get update`` then ``apt-get download PKG:ARCH=VERSION`` (apt checks each .deb against the signed index;
the lock's sha256 is checked too), unpacked with ``dpkg-deb -x``. Nothing of the system's apt configuration or state
is changed, and no step needs root. It is built in a temporary folder renamed into
``$DEPLOYTOOL_CACHE/emulation/aarch64-<key>/`` (default ``~/.cache/deploytool``; ``key`` hashes the lock files) under a
lock, after a smoke check (the emulated Python imports both runtimes), ``installed.json`` written last, as
``deploytool/envs`` and ``deploytool/browser/npm.py`` do: a half-built one is never used, and building is idempotent.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deploytool.core import cache

HERE = Path(__file__).parent
LOCKS = ("aarch64-debs.txt", "aarch64-wheels.txt")
CACHE_ENV = cache.CACHE_ENV
HINT = "run `deploytool setup`"
READY = "installed.json"
BUILD_TIMEOUT_S = 1800.0
SMOKE_TIMEOUT_S = 600.0
MIN_QEMU = (10, 0)
PYTHON = "usr/bin/python3.11"  # in the sysroot
MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "bookworm-backports")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")  # the debian-archive-keyring package's
WHEEL_TAGS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
SMOKE = "import numpy, ai_edge_litert.interpreter, onnxruntime"  # every runtime with an emulated build


class SetupError(RuntimeError):
    """The environment could not be built, or is not: one line saying why (the failing tool's error, its log)."""


@dataclass(frozen=True)
class Deb:
    """One pinned Debian package: ``PACKAGE:ARCH=VERSION SHA256`` in the lock."""

    name: str
    arch: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.arch}={self.version}"


@dataclass(frozen=True)
class Built:
    folder: Path
    qemu: str  # e.g. "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"
    build_s: float  # 0.0 when it was built already
    size_bytes: int


def debs() -> list[Deb]:
    """The Debian packages the lock pins, in its order."""
    out = []
    for line in _lines(HERE / LOCKS[0]):
        spec, sha256 = line.split()
        package, version = spec.split("=", 1)
        name, arch = package.split(":")
        out.append(Deb(name, arch, version, sha256))
    return out


def wheels() -> dict[str, str]:
    """The wheels the lock pins, name -> version."""
    return dict(line.split()[0].split("==", 1) for line in _lines(HERE / LOCKS[1]))


def _lines(lock: Path) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in lock.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def key() -> str:
    digest = hashlib.sha256()
    for name in LOCKS:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def folder() -> Path:
    """Where this lock's environment is (or would be) built."""
    return cache.root() / "emulation" / f"aarch64-{key()}"


def installed() -> bool:
    return (folder() / READY).is_file()


def record() -> dict:
    """What ``installed.json`` says (versions, sizes, build seconds); {} when it is not built."""
    return json.loads((folder() / READY).read_text()) if installed() else {}


def emulated_python(cpu: str, args: list[str], root: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that start the emulated Python 3.11 on CPU model ``cpu`` with ``args``: the wheels on its
    path and nothing of this process's environment (``-P``: no script folder on the path either)."""
    root = root or folder()
    sysroot = root / "sysroot"
    argv = [str(root / "qemu-aarch64"), "-cpu", cpu, "-L", str(sysroot), str(sysroot / PYTHON), "-P", *args]
    return argv, {"PYTHONPATH": str(root / "site"), "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8"}


def qemu_version(text: str) -> tuple[int, ...]:
    """``qemu-aarch64 --version``'s first line -> its version numbers; SetupError when older than MIN_QEMU."""
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise SetupError(f"cannot read QEMU's version from {text.strip()[:120]!r}")
    version = tuple(int(x) for x in m.groups() if x is not None)
    if version < MIN_QEMU:
        raise SetupError(f"QEMU {'.'.join(map(str, version))} is too old for the aarch64 emulation: it needs "
                         f">= {'.'.join(map(str, MIN_QEMU))} (7.2 segfaults and computes int8 wrong with SME)")
    return version


def ensure(timeout: float = BUILD_TIMEOUT_S) -> Built:
    """The environment built now unless it is; under a lock, so concurrent calls build it once. Raises SetupError."""
    target = folder()
    return cache.once(target.parent / f"{target.name}.lock", lambda: _built(target) if installed() else None,
                      lambda: _build(target, timeout))


def _built(target: Path) -> Built:
    """What was built before: its build seconds not counted again (0.0)."""
    data = json.loads((target / READY).read_text())
    return Built(target, data["qemu"], 0.0, data["size_bytes"])


def _build(target: Path, timeout: float) -> Built:
    _check_host()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    log = target.with_name(f"{target.name}.log")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        with open(log, "w") as out:
            downloaded = _fetch_debs(tmp, out, deadline, log)
            _unpack_debs(tmp, downloaded, out, deadline, log)
            qemu = _check_qemu(tmp / "qemu-aarch64", log)
            _fetch_wheels(tmp, out, deadline, log)
            for scratch in ("apt", "debs", "wheels"):
                shutil.rmtree(tmp / scratch)
            _smoke(tmp, out, deadline, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.lstat().st_size for p in tmp.rglob("*"))
    build_s = round(time.perf_counter() - t0, 1)
    data = {"qemu": qemu, "debs": {d.spec.split("=")[0]: d.version for d in debs()},
            "wheels": dict(sorted(_unpacked(tmp / "site").items())), "size_bytes": size, "build_s": build_s}
    (tmp / READY).write_text(json.dumps(data, indent=1))
    shutil.rmtree(target, ignore_errors=True)  # a leftover without installed.json: never used, replaced
    os.replace(tmp, target)  # last: the folder exists only once complete
    return Built(target, qemu, build_s, size)


class UnsupportedHost(SetupError):
    """This machine cannot build the emulation at all (not x86_64, no apt/dpkg, no Debian keyring): the rest of
    ``deploytool setup`` goes on, and the emulated targets are SKIPPED saying why."""


def unsupported_host() -> str | None:
    """Why this machine cannot build the emulation, or None."""
    try:
        _check_host()
    except UnsupportedHost as e:
        return str(e)
    return None


def _check_host() -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise UnsupportedHost(f"the aarch64 emulation environment is built for x86_64 hosts, not {platform.machine()}")
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise UnsupportedHost(f"building the aarch64 emulation needs {' and '.join(missing)} (a Debian or Ubuntu "
                              "machine)")
    if not KEYRING.is_file():
        raise UnsupportedHost(f"no Debian archive keyring at {KEYRING} to check the packages: "
                              "apt-get install debian-archive-keyring")


def _run(cmd: list[str], out: IO[str], deadline: float, log: Path, what: str, cwd: Path | None = None) -> None:
    """One build step, its output to the log; SetupError with its last words when it fails or runs out of time."""
    out.write(f"$ {' '.join(cmd)}\n")
    out.flush()
    try:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                              timeout=max(1.0, deadline - time.monotonic()), check=False)
    except subprocess.TimeoutExpired:
        raise SetupError(f"building the aarch64 emulation: {what} ran out of time (log: {log})") from None
    if done.returncode != 0:
        raise SetupError(f"building the aarch64 emulation: {what} failed: {_last_error(log)} (log: {log})")


def _apt(tmp: Path) -> list[str]:
    """apt-get's options for a configuration of its own in ``tmp/apt``: Debian's bookworm and bookworm-backports for
    amd64 (the emulator) and arm64 (the sysroot), an empty package status; the system's apt state is not touched."""
    root = tmp / "apt"
    for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state" / "status").touch()
    (root / "etc" / "sources.list").write_text("".join(
        f"deb [arch=amd64,arm64 signed-by={KEYRING}] {MIRROR} {suite} main\n" for suite in SUITES))
    return ["-o", f"Dir::Etc={root / 'etc'}", "-o", f"Dir::State={root / 'state'}",
            "-o", f"Dir::State::status={root / 'state' / 'status'}", "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "APT::Architecture=amd64", "-o", "APT::Architectures::=amd64", "-o", "APT::Architectures::=arm64",
            "-o", "Debug::NoLocking=1", "-q"]


def _fetch_debs(tmp: Path, out: IO[str], deadline: float, log: Path) -> dict[Deb, Path]:
    """Each pinned .deb downloaded into ``tmp/debs`` and checked against the lock's sha256."""
    options = _apt(tmp)
    _run(["apt-get", *options, "update"], out, deadline, log, "apt-get update")
    (tmp / "debs").mkdir()
    pinned = debs()
    _run(["apt-get", *options, "download", *(d.spec for d in pinned)], out, deadline, log, "apt-get download",
         cwd=tmp / "debs")
    found = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in (tmp / "debs").glob("*.deb")}
    wrong = [d.spec for d in pinned if d.sha256 not in found]
    if wrong:
        raise SetupError(f"building the aarch64 emulation: {', '.join(wrong)}: not the .deb the lock pins (sha256)")
    return {d: found[d.sha256] for d in pinned}


def _unpack_debs(tmp: Path, downloaded: dict[Deb, Path], out: IO[str], deadline: float, log: Path) -> None:
    """The arm64 packages into ``sysroot/``; of the emulator's package, ``qemu-aarch64`` alone."""
    for deb, path in downloaded.items():
        into = tmp / ("sysroot" if deb.arch == "arm64" else "emulator")
        _run(["dpkg-deb", "-x", str(path), str(into)], out, deadline, log, f"dpkg-deb -x {path.name}")
    os.replace(tmp / "emulator" / "usr" / "bin" / "qemu-aarch64", tmp / "qemu-aarch64")
    shutil.rmtree(tmp / "emulator")


def _check_qemu(binary: Path, log: Path) -> str:
    """The emulator's version, e.g. "10.0.2 (Debian ...)"; SetupError when it does not run or is too old."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as e:
        raise SetupError(f"building the aarch64 emulation: {binary.name} does not run: {e} (log: {log})") from None
    first = (done.stdout.strip().splitlines() or [""])[0]
    qemu_version(first)
    return first.split("version", 1)[-1].strip()


def _fetch_wheels(tmp: Path, out: IO[str], deadline: float, log: Path) -> None:
    """The pinned aarch64 wheels (their hashes checked by pip) unpacked into ``site/``."""
    platforms = [arg for tag in WHEEL_TAGS for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
          "--python-version", "3.11", *platforms, "--disable-pip-version-check", "--no-input",
          "-d", str(tmp / "wheels"), "-r", str(HERE / LOCKS[1])], out, deadline, log, "pip download")
    for wheel in sorted((tmp / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp / "site")
    got = _unpacked(tmp / "site")
    wrong = {n: v for n, v in wheels().items() if got.get(_normal(n)) != v}
    if wrong:
        raise SetupError(f"building the aarch64 emulation: pip fetched other wheels than pinned: {wrong} (log: {log})")


def _unpacked(site: Path) -> dict[str, str]:
    """name -> version of each wheel unpacked in ``site`` (from its ``.dist-info`` folder)."""
    found = (p.name[:-len(".dist-info")].rsplit("-", 1) for p in site.glob("*.dist-info"))
    return {_normal(name): version for name, version in found}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _smoke(tmp: Path, out: IO[str], deadline: float, log: Path) -> None:
    """The emulated Python imports numpy and the runtimes (writing their bytecode, so later starts are quicker)."""
    from deploytool.emulation import DEFAULT_CPUS

    argv, env = emulated_python(DEFAULT_CPUS[0], ["-c", SMOKE], root=tmp)
    out.write(f"$ {' '.join(argv)}\n")
    out.flush()
    try:
        done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=min(SMOKE_TIMEOUT_S, max(1.0, deadline - time.monotonic())), check=False)
    except subprocess.TimeoutExpired:
        raise SetupError(f"the emulated Python did not import the runtimes in time (log: {log})") from None
    if done.returncode != 0:
        raise SetupError(f"the emulated Python cannot import the runtimes ({SMOKE}): {_last_error(log)} (log: {log})")


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    hit = next((ln for ln in reversed(lines) if ln.startswith(("E:", "ERROR:", "Error", "dpkg-deb: error"))), None)
    return (hit or (lines[-1] if lines else "no output"))[:300]
