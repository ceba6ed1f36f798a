"""``deploytool doctor``: can this machine do the job it is meant for?

It lists Python and the platform, every framework, converter and runtime deploytool uses (installed
or not, its version, whether it is the version this release was verified with: the pins in
pyproject.toml, see ``install.verified``), the CPU features the runtimes' kernels use, and whether
the network guard (``offline.py``) works, and judges the whole against a role:

- ``export``: the export stack (``deploytool[export]``): every framework, converter and runtime.
- ``device``: what ``validate`` and ``bench`` of a bundle need: the core and, for ``--bundle B``, the
  runtime of each of B's artifacts (without a bundle, at least one runtime).

A missing package the role needs, or a network guard that does not block, makes the stack unusable
(exit ``errors.UNUSABLE``) with the extras to install. A version other than the verified one is a
warning. Nothing here imports a framework: presence comes from ``find_spec``, versions from
``importlib.metadata``; ``import_check`` imports the installed packages in a subprocess.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploytool import install
from deploytool.core.errors import OK, UNUSABLE

ROLES = ("export", "device")
CORE = ("numpy", "click")
FRAMEWORKS = ("torch", "tensorflow", "keras", "tf_keras")
CONVERTERS = ("onnx", "onnxscript", "tf2onnx", "onnx2tf", "onnx_graphsurgeon", "sng4onnx", "psutil", "sklearn")
OPTIONAL = {"matplotlib": "report", "model_signing": "signing"}
# The runtime whose extra the device role suggests first: the lightest (LiteRT imports no TensorFlow).
LIGHTEST_RUNTIME_EXTRA = "litert"


def runtime_extras() -> list[str]:
    """Every registered runtime's extra, once each (the registry says which exist)."""
    from deploytool.runtimes import RUNTIMES

    return list(dict.fromkeys(rt.extra for rt in RUNTIMES.values()))


def export_extras() -> tuple[str, ...]:
    """The extras whose packages the export role needs: the core, export and every runtime's stack."""
    return ("", "export", *runtime_extras())


@dataclass
class Component:
    name: str  # import name
    distribution: str
    kind: str  # core, framework, converter, runtime (then `runtime` names it), optional
    extra: str  # "" for the core
    installed: bool
    version: str | None
    verified: str | None  # the pin, e.g. "==2.21.0"
    verified_ok: bool | None  # None: not installed or no pin
    needed: bool = False  # by the role judged
    runtime: str | None = None
    import_error: str | None = None
    program: bool = False  # a program on PATH (``extra`` holds its install hint), not a Python package


@dataclass
class DoctorOutcome:
    role: str
    python: str
    platform: str
    machine: str
    components: list[Component]
    cpu: dict[str, bool]
    network_guard: dict
    bundle: str | None = None
    problems: list[str] = field(default_factory=list)  # what makes the role's stack unusable
    warnings: list[str] = field(default_factory=list)
    install: list[str] = field(default_factory=list)  # the pip commands that fix the problems
    exit_code: int = OK

    def to_json(self) -> dict:
        return asdict(self)


def _component(name: str, kind: str, extra: str, runtime: str | None = None) -> Component:
    dist = install.distribution(name)
    present = install.installed(name)
    ver = install.version(dist) if present else None
    pin = install.verified().get(re.sub(r"[-_.]+", "-", dist).lower())
    ok = None if ver is None or not pin else install.matches(ver, pin)
    return Component(name, dist, kind, extra, present, ver, pin, ok, runtime=runtime)


def _runtime_extra(hint: str) -> str:
    """The extra an install hint names ("" if none)."""
    m = re.search(r"deploytool\[([\w-]+)\]", hint)
    return m.group(1) if m else ""


def components() -> list[Component]:
    from deploytool.runtimes import RUNTIMES

    out = [_component(n, "core", "") for n in CORE]
    out += [_component(n, "framework", "torch" if n == "torch" else "tensorflow") for n in FRAMEWORKS]
    out += [_component(n, "converter", "export") for n in CONVERTERS]
    for rt in RUNTIMES.values():
        for package in rt.packages:
            top = package.split(".")[0]
            c = _component(top, "runtime", rt.extra, runtime=rt.name)
            c.installed = not rt.missing_packages()
            out.append(c)
        for program in rt.programs:  # a requirement that is not a package: a program on PATH, its hint as the fix
            out.append(Component(program.name, program.name, "runtime", program.hint, program.found(), None, None,
                                 None, runtime=rt.name, program=True))
    out += [_component(n, "optional", extra) for n, extra in OPTIONAL.items()]
    return out + env_components() + emulation_components()


def env_components() -> list[Component]:
    """Each Python environment of ``deploytool.envs`` (the TF.js converter's) as a converter: made by ``deploytool
    setup`` (its ``extra`` holds that hint), its version the first package it records."""
    from deploytool import envs

    out = []
    for env in envs.ENVS.values():
        version = env.versions().get(f"{env.name}/{env.recorded[0]}")
        out.append(Component(f"{env.name} environment", f"{env.name} environment ({env.recorded[0]})", "converter",
                             envs.HINT, env.installed(), version, envs.pins(env).get(env.recorded[0]), None,
                             program=True))
    return out


def emulation_components() -> list[Component]:
    """The aarch64 emulation (``deploytool.emulation``: QEMU, an arm64 Python, LiteRT's aarch64 build) as a component
    of kind ``emulation``: built by ``deploytool setup`` (its ``extra`` holds that hint), its version QEMU's. Never
    needed by a role: without it the emulated targets are SKIPPED, which is a warning."""
    from deploytool.emulation import build

    qemu = build.record().get("qemu")
    return [Component("aarch64 emulation", "aarch64 emulation (qemu-aarch64)", "emulation", build.HINT,
                      build.installed(), qemu.split()[0] if qemu else None, None, None, program=True)]


def cpu_features(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, bool]:
    """The SIMD features the runtimes' CPU kernels pick from (x86: AVX2, AVX-512, VNNI; ARM: NEON, dot product)."""
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        # aarch64 always has Advanced SIMD; /proc/cpuinfo says asimd (or neon on 32-bit ARM)
        return {"neon": machine in ("aarch64", "arm64") or bool(flags & {"asimd", "neon"}),
                "dotprod": "asimddp" in flags, "sve": "sve" in flags}
    return {"avx2": "avx2" in flags, "fma": "fma" in flags, "avx512f": "avx512f" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags}


_GUARD_PROBE = """
import socket
from deploytool.core.errors import NetworkBlocked
from deploytool.running.offline import forbid_network
forbid_network()
blocked = []
for what, call in (("lookup", lambda: socket.getaddrinfo("pypi.org", 443)),
                   ("connect", lambda: socket.create_connection(("192.0.2.1", 443), timeout=0.5))):
    try:
        call()
    except NetworkBlocked:
        blocked.append(what)
    except OSError:
        pass
print(",".join(blocked))
"""


def network_guard(timeout: float = 60) -> dict:
    """Run the guard in a fresh process (audit hooks cannot be removed) and try a lookup and a connect."""
    try:
        proc = subprocess.run([sys.executable, "-P", "-c", _GUARD_PROBE], capture_output=True, text=True,
                              timeout=timeout, env=os.environ.copy())
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"works": False, "detail": f"the probe did not run: {e}"}
    blocked = [b for b in proc.stdout.strip().split(",") if b]
    works = proc.returncode == 0 and blocked == ["lookup", "connect"]
    detail = f"blocked: {', '.join(blocked) or 'nothing'}" if proc.returncode == 0 else \
        (proc.stderr.strip().splitlines() or ["probe failed"])[-1]
    return {"works": works, "detail": detail}


_IMPORT_PROBE = "import importlib, sys\nimportlib.import_module(sys.argv[1])"


def import_check(items: list[Component], timeout: float = 300) -> None:
    """Import each installed package in a subprocess of its own; a failure is recorded as import_error."""
    for c in items:
        if not c.installed:
            continue
        try:
            proc = subprocess.run([sys.executable, "-P", "-c", _IMPORT_PROBE, c.name], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            c.import_error = f"import took longer than {timeout:g} s"
            continue
        if proc.returncode != 0:
            c.import_error = (proc.stderr.strip().splitlines() or ["import failed"])[-1][:300]


def run(role: str = "export", bundle: str | Path | None = None, check_imports: bool = False,
        guard: bool = True) -> DoctorOutcome:
    from deploytool.core.errors import UsageError

    if role not in ROLES:
        raise UsageError(f"doctor: unknown role {role!r} (expected one of {', '.join(ROLES)})")
    if bundle is not None and role != "device":
        raise UsageError("doctor: --bundle goes with --for device")
    items = components()
    outcome = DoctorOutcome(role, platform.python_version(), platform.platform(), platform.machine(), items,
                            cpu_features(), network_guard() if guard else {"works": None, "detail": "not checked"},
                            str(bundle) if bundle is not None else None)
    if role == "export":
        needed_extras = export_extras()
        for c in items:
            c.needed = c.extra in needed_extras and c.kind != "optional"
    else:
        for c in items:
            c.needed = c.kind == "core"
        needed_runtimes = _bundle_runtimes(Path(bundle)) if bundle is not None else None
        for c in items:
            if c.kind == "runtime" and needed_runtimes is not None and c.runtime in needed_runtimes:
                c.needed = True
        usable = {c.runtime for c in items if c.kind == "runtime"} - \
            {c.runtime for c in items if c.kind == "runtime" and not c.installed}  # every requirement there
        if needed_runtimes is None and not usable:
            outcome.problems.append("no runtime is installed: validate and bench can check nothing here")
            choices = runtime_extras()
            first = LIGHTEST_RUNTIME_EXTRA if LIGHTEST_RUNTIME_EXTRA in choices else choices[0]
            others = ", ".join(e for e in choices if e != first)
            outcome.install.append(install.hint(first) + f"   # or {others}: the runtimes of the artifacts you deploy")
    if check_imports:
        import_check([c for c in items if (c.needed or c.installed) and not c.program])
    extras: list[str] = []
    for c in items:
        what = f"{c.kind} {c.runtime}" if c.runtime else c.kind
        if c.needed and not c.installed and c.program:
            outcome.problems.append(f"{c.name} ({what}) is not on PATH")
            outcome.install.append(c.extra)
        elif c.needed and not c.installed:
            outcome.problems.append(f"{c.distribution} ({what}) is not installed")
            extras.append(c.extra)
        elif c.needed and c.import_error:
            outcome.problems.append(f"{c.distribution} ({what}) is installed but does not import: {c.import_error}")
            extras.append(c.extra)
        if c.program and c.kind == "converter" and not c.installed:  # an environment of deploytool.envs
            outcome.warnings.append(f"{c.name} is not set up: the formats made in it fail to export ({c.extra})")
        if c.kind == "emulation" and not c.installed:
            outcome.warnings.append(f"the {c.name} is not set up: `validate --emulate` targets are SKIPPED ({c.extra})")
        if c.installed and c.verified_ok is False:
            outcome.warnings.append(f"{c.distribution} {c.version} is not the version this release was verified with "
                                    f"({c.verified})")
    for extra in dict.fromkeys(extras):
        outcome.install.append(install.hint(extra) if extra else "pip install deploytool")
    import deploytool.expose
    import deploytool.formats
    import deploytool.sources  # noqa: F401 - every registry loaded, so registry.problems is complete
    from deploytool import registry

    # plug-ins of other distributions that were skipped (they do not import, or clash): said, never fatal
    outcome.warnings += [f"plug-in skipped: {p}" for p in registry.problems]
    if not sys.version.startswith("3.11"):
        outcome.warnings.append(f"Python {outcome.python}: this release is verified on Python 3.11")
    if guard and not outcome.network_guard["works"]:
        outcome.problems.append(f"the network guard does not work here ({outcome.network_guard['detail']}): "
                                "deploytool cannot promise offline runs")
    outcome.exit_code = UNUSABLE if outcome.problems else OK
    return outcome


def _bundle_runtimes(bundle: Path) -> set[str]:
    from deploytool.running.jobs import ArtifactStatus
    from deploytool.store import manifest

    m = manifest.read(bundle)
    return {rec.runtime for rec in m.artifacts.values() if rec.status == ArtifactStatus.OK}
