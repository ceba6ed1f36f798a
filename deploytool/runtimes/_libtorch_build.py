"""Building the libtorch runner (``libtorch_runner.cpp``) once per torch, compiler and runner source.

It is compiled with ``g++`` against the libtorch inside the installed torch wheel (``torch/include``,
``torch/lib``, an rpath to the latter, the wheel's C++ ABI: ABI 0 does not link against a cxx11-ABI
wheel) into ``$DEPLOYTOOL_CACHE/libtorch/<key>/`` (default ``~/.cache/deploytool``), where ``key`` hashes
the torch version, the compiler's version, the flags and the source, so a new torch or compiler gets a
runner of its own and an old one is never run against the wrong libraries. The build is atomic: one
process builds under a lock, into a temporary name renamed into place, so concurrent workers wait for it
and never run a half-written file; ``build.json`` beside it records what it was built from.

Imports torch only to read its C++ ABI: call it where torch is imported anyway (the worker), or from a
command that builds ahead of time (``python -m deploytool.runtimes._libtorch_build``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deploytool.core import cache

SOURCE = Path(__file__).with_name("libtorch_runner.cpp")
CACHE_ENV = cache.CACHE_ENV
COMPILER = "g++"
BINARY = "libtorch_runner"
BUILD_TIMEOUT_S = 1200.0  # 35-41 s on an idle 2-core machine; minutes on a busy one


class BuildError(RuntimeError):
    """The runner could not be built: one line naming the compiler's first error and the full log."""


@dataclass(frozen=True)
class Build:
    """A built runner and what it was built from (recorded in ``build.json`` and in each check's settings)."""

    path: str
    key: str
    compiler: str  # "g++ 12.2.0"
    torch: str
    build_s: float  # compiling took this long; 0.0 when the cached runner was used

    def record(self) -> dict:
        return {"runner": self.key, "compiler": self.compiler}


def torch_dir() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("torch is not installed: the libtorch runner is built against the torch wheel's libtorch")
    return Path(list(spec.submodule_search_locations)[0])


def compiler() -> str:
    """``g++ VERSION``; raises BuildError when there is no g++ on PATH."""
    exe = shutil.which(COMPILER)
    if exe is None:
        raise BuildError(f"no {COMPILER} on PATH to compile the libtorch runner: apt-get install g++")
    out = subprocess.run([exe, "-dumpfullversion"], capture_output=True, text=True, timeout=60, check=False)
    return f"{COMPILER} {out.stdout.strip() or 'unknown'}"


def flags(torch: Path, cxx11_abi: bool) -> list[str]:
    """Everything after the compiler's name but the source and the output."""
    return ["-O2", "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={int(cxx11_abi)}", f"-I{torch / 'include'}",
            f"-I{torch / 'include' / 'torch' / 'csrc' / 'api' / 'include'}", f"-L{torch / 'lib'}",
            f"-Wl,-rpath,{torch / 'lib'}", "-ltorch", "-ltorch_cpu", "-lc10", "-pthread"]


def key(torch_version: str, compiler_version: str, build_flags: list[str]) -> str:
    text = json.dumps([torch_version, compiler_version, build_flags, hashlib.sha256(SOURCE.read_bytes()).hexdigest()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root() -> Path:
    return cache.root() / "libtorch"


def first_error(log: str) -> str:
    """The line that says what went wrong: the compiler's first ``error:``, the linker's first complaint."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for marker in ("error:", "undefined reference", "cannot find"):
        hit = next((ln for ln in lines if marker in ln), None)
        if hit:
            return hit[:300]
    return lines[-1][:300] if lines else "no output"


def planned() -> tuple[Build, list[str]]:
    """Where this torch and compiler's runner is (built or not) and the flags it is built with."""
    cc = compiler()  # first: no g++ is said before torch is imported
    import torch as torch_module

    torch = torch_dir()
    version = importlib.metadata.version("torch")
    build_flags = flags(torch, torch_module.compiled_with_cxx11_abi())
    k = key(version, cc, build_flags)
    return Build(str(cache_root() / k / BINARY), k, cc, version, 0.0), build_flags


def ensure(timeout: float = BUILD_TIMEOUT_S) -> Build:
    """The runner for this torch and compiler: the cached one, or built now (waiting for another process
    building it). Raises BuildError naming the first compiler error and the log."""
    build, build_flags = planned()
    binary = Path(build.path)
    return cache.once(binary.parent / "build.lock", lambda: build if binary.is_file() else None,
                      lambda: _compile(binary.parent, build, build_flags, timeout))


def _compile(folder: Path, build: Build, build_flags: list[str], timeout: float) -> Build:
    tmp = folder / f"{BINARY}.tmp-{os.getpid()}"
    log = folder / "build.log"
    command = [shutil.which(COMPILER) or COMPILER, str(SOURCE), "-o", str(tmp), *build_flags]
    t0 = time.perf_counter()
    try:
        with open(log, "w") as out:
            out.write(" ".join(command) + "\n")
            out.flush()
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"compiling the libtorch runner took over {timeout:.0f} s (log: {log})") from None
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise BuildError(f"the libtorch runner failed to compile: {first_error(log.read_text(errors='replace'))} "
                         f"(log: {log})")
    built = Build(build.path, build.key, build.compiler, build.torch, round(time.perf_counter() - t0, 1))
    (folder / "build.json").write_text(json.dumps({**asdict(built), "flags": build_flags}, indent=1))
    os.replace(tmp, build.path)  # last: the runner exists only once complete
    return built


def main() -> int:
    """``python -m deploytool.runtimes._libtorch_build``: build the runner now (CI images, before a timed run);
    one line saying where it is, or why it could not be built (exit 6, the runtime's exit code)."""
    import sys

    from deploytool.core.errors import RUNTIME

    try:
        build = ensure()
    except BuildError as e:
        print(f"deploytool: error: {e}", file=sys.stderr)
        return RUNTIME
    how = f"built in {build.build_s:.1f} s" if build.build_s else "already built"
    print(f"libtorch runner {build.key} ({build.compiler}, torch {build.torch}): {how}: {build.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
