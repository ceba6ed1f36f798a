"""Python environments beside deploytool's own, for stages whose packages cannot share it.

Some converters and runtimes pin packages that conflict with the ones deploytool runs on (the TF.js converter,
``tensorflowjs`` 4.22, needs TensorFlow 2.19 and older numpy/protobuf/packaging than the pinned TensorFlow 2.21).
Such a stage runs its worker under an interpreter of its own: a venv deploytool creates from a requirements file it
ships beside this module (``<name>.txt``, every package pinned: a lock), once per lock and interpreter, in
``$DEPLOYTOOL_CACHE/envs/<name>-<key>/`` (default ``~/.cache/deploytool``). Creating it is the explicit set-up step
(``deploytool setup``); nothing is installed when a model is exported, validated or benched. A stage's worker is the
same worker (``deploytool.running.worker``, same job protocol and lifecycle), started with the venv's Python and
deploytool's own package on its path (and nothing else of deploytool's environment), so a stage is named to an
environment here (``STAGES``) and nowhere else. The versions installed are recorded in the manifest, under
``<env>/<package>``, for the artifacts the environment made.

The same mechanism checks a bundle under another version of a runtime: an environment whose lock pins that version.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deploytool.core import cache

HERE = Path(__file__).parent
CACHE_ENV = cache.CACHE_ENV
HINT = "run `deploytool setup`"
INSTALL_TIMEOUT_S = 1800.0
READY = "installed.json"


class SetupError(RuntimeError):
    """An environment could not be created: one line saying why (pip's own error, its log)."""


@dataclass(frozen=True)
class Env:
    name: str
    why: str  # what runs in it, for doctor and setup
    recorded: tuple[str, ...]  # the distributions whose versions the manifest records for what it made
    requirements: Path | None = None  # its lock; None: <name>.txt beside this module

    @property
    def lock(self) -> Path:
        return self.requirements or HERE / f"{self.name}.txt"

    def key(self) -> str:
        """Hashes the lock and the interpreter: a new pin or another Python gets a folder of its own."""
        digest = hashlib.sha256(self.lock.read_bytes())
        digest.update(f"{_base_python()}|{platform.python_version()}|{platform.machine()}".encode())
        return digest.hexdigest()[:16]

    def folder(self) -> Path:
        return cache.root() / "envs" / f"{self.name}-{self.key()}"

    def python(self) -> Path:
        return self.folder() / "bin" / "python"

    def installed(self) -> bool:
        return (self.folder() / READY).is_file() and self.python().exists()

    def versions(self) -> dict[str, str | None]:
        """``<env>/python`` and ``<env>/<dist>`` for each recorded distribution, as installed."""
        if not self.installed():
            return {}
        data = json.loads((self.folder() / READY).read_text())
        packages = {_normal(k): v for k, v in data.get("packages", {}).items()}
        return {f"{self.name}/python": data.get("python"),
                **{f"{self.name}/{d}": packages.get(_normal(d)) for d in self.recorded}}

    def describe(self) -> str:
        return f"the {self.name} Python environment ({self.why})"


ENVS: dict[str, Env] = {
    "tfjs": Env("tfjs", "the TensorFlow.js converter: tensorflowjs 4.22 with TensorFlow 2.19",
                ("tensorflowjs", "tensorflow", "tf_keras", "numpy", "protobuf")),
}
STAGES: dict[str, str] = {"tfjs": "tfjs"}  # a worker stage -> the environment it runs in (others: deploytool's own)


def for_stage(stage: str) -> Env | None:
    """The environment a stage's worker runs in; None: deploytool's own."""
    name = STAGES.get(stage)
    return ENVS[name] if name else None


def _base_python() -> str:
    """The interpreter deploytool's own venv was made from: each environment is made from it too."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def worker_interpreter(env: Env) -> tuple[str, dict[str, str]]:
    """(python, environment variables) that start a worker in ``env``: its venv's Python, with deploytool's own
    package (and only that, through a folder holding a link to it) on ``PYTHONPATH``. Raises SetupError when the
    environment was not created."""
    if not env.installed():
        raise SetupError(f"{env.describe()} is not set up: {HINT}")
    package = Path(__file__).resolve().parent.parent
    links = env.folder() / "links" / hashlib.sha256(str(package).encode()).hexdigest()[:12]
    link = links / "deploytool"
    if not (link.is_symlink() and link.resolve() == package):
        links.mkdir(parents=True, exist_ok=True)
        tmp = links / f".deploytool-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent worker sees the old link or the new one
    return str(env.python()), {"PYTHONPATH": str(links), "PYTHONNOUSERSITE": "1"}


@dataclass(frozen=True)
class Installed:
    env: Env
    folder: Path
    install_s: float  # 0.0 when it was there already


def ensure(env: Env, timeout: float = INSTALL_TIMEOUT_S) -> Installed:
    """``env`` created now unless it is; under a lock, ``installed.json`` written last, so a half-made one is never
    used (it is removed and made again). Raises SetupError."""
    target = env.folder()
    return cache.once(target.parent / f"{target.name}.lock",
                      lambda: Installed(env, target, 0.0) if env.installed() else None,
                      lambda: _create(env, target, timeout))


def _create(env: Env, target: Path, timeout: float) -> Installed:
    shutil.rmtree(target, ignore_errors=True)  # a leftover without installed.json: never used, replaced
    log = target.with_name(f"{target.name}.log")
    t0 = time.perf_counter()
    python = target / "bin" / "python"
    steps = [[_base_python(), "-m", "venv", str(target)],
             [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r", str(env.lock)]]
    deadline = time.monotonic() + timeout
    with open(log, "w") as out:
        for cmd in steps:
            try:
                done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=max(1.0, deadline - time.monotonic()), check=False)
            except subprocess.TimeoutExpired:
                shutil.rmtree(target, ignore_errors=True)
                raise SetupError(f"creating {env.describe()} took over {timeout:.0f} s (log: {log})") from None
            if done.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                raise SetupError(f"creating {env.describe()} failed: {_first_error(log)} (log: {log})")
    freeze = subprocess.run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                            capture_output=True, text=True, timeout=300, check=False)
    packages = {p["name"]: p["version"] for p in json.loads(freeze.stdout or "[]")}
    wrong = {n: (v, packages.get(n)) for n, v in pins(env).items()
             if _normal(n) not in {_normal(k) for k, got in packages.items() if got == v}}
    if wrong:
        shutil.rmtree(target, ignore_errors=True)
        raise SetupError(f"creating {env.describe()}: pip installed other versions than pinned: "
                         f"{', '.join(f'{n} {got} (pinned {v})' for n, (v, got) in sorted(wrong.items())[:5])}")
    seconds = round(time.perf_counter() - t0, 1)
    version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=120, check=False).stdout.strip()
    ready = target / f"{READY}.tmp"
    ready.write_text(json.dumps({"python": version, "packages": packages, "install_s": seconds}, indent=1))
    os.replace(ready, target / READY)  # last, and whole: a reader sees the environment complete or not at all
    return Installed(env, target, seconds)


def pins(env: Env) -> dict[str, str]:
    """The lock's ``name==version`` lines."""
    out = {}
    for line in env.lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip()] = version.strip()
    return out


def _first_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    hit = next((ln for ln in lines if ln.startswith("ERROR:")), None)
    return (hit or (lines[-1] if lines else "no output"))[:300]
