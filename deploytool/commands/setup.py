"""``deploytool setup``: install what the runtimes and converters need that pip's install of deploytool does not:
the browser runtimes' npm packages (``deploytool/browser``), the Python environments of stages that cannot share
deploytool's own (``deploytool/envs``: the TF.js converter's) and the aarch64 emulation (``deploytool/emulation``:
QEMU, an arm64 Python and LiteRT's aarch64 build, for ``validate --emulate``).

Run once per machine (the README's set-up runs it); idempotent: what is installed already is said and left as it
is. Everything else a runtime needs beyond pip is a program the machine's package manager installs (Chromium,
g++): said here too, with the command, so one run tells what this machine still lacks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from deploytool.core.errors import UNUSABLE, DeployToolError

NPM = "npm"
AARCH64 = "aarch64"


def parts() -> list[str]:
    """What setup installs, by the names ``--skip`` takes: the npm packages, each environment, the aarch64 emulation."""
    from deploytool import envs

    return [NPM, *envs.ENVS, AARCH64]


@dataclass
class Done:
    name: str  # "npm", an environment's name or "aarch64"
    what: str  # e.g. "npm packages onnxruntime-web 1.31.1" / "the tfjs Python environment (...)"
    folder: str
    install_s: float  # 0.0: it was installed already


@dataclass
class SetupOutcome:
    done: list[Done] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # --skip, or a part this machine cannot have
    warnings: list[str] = field(default_factory=list)  # why a part was left out
    programs_missing: list[str] = field(default_factory=list)  # "chromium (runtime onnxruntime_web): apt-get ..."


def run(offline: bool = False, skip: tuple[str, ...] = ()) -> SetupOutcome:
    """Install the npm packages of ``deploytool/browser/package-lock.json``, create each environment of
    ``deploytool/envs`` and build the aarch64 emulation, unless they are (or are in ``skip``); raises DeployToolError
    (exit 11, the machine cannot be set up) naming npm's, pip's or apt's error."""
    from deploytool import envs
    from deploytool.browser import npm
    from deploytool.runtimes import RUNTIMES

    unknown = [s for s in skip if s not in parts()]
    if unknown:
        from deploytool.core.errors import UsageError

        raise UsageError(f"--skip {unknown[0]}: setup installs {', '.join(parts())}")
    outcome = SetupOutcome(skipped=[s for s in parts() if s in skip])
    if NPM not in skip:
        try:
            got = npm.ensure(offline=offline)
        except npm.SetupError as e:
            raise DeployToolError(f"setup: {e}", UNUSABLE) from None
        what = ", ".join(f"{name} {version}" for name, version in got.packages.items())
        outcome.done.append(Done(NPM, f"npm packages {what}", str(got.folder), got.install_s))
    for env in envs.ENVS.values():
        if env.name in skip:
            continue
        try:
            made = envs.ensure(env)
        except envs.SetupError as e:
            raise DeployToolError(f"setup: {e}", UNUSABLE) from None
        outcome.done.append(Done(env.name, env.describe(), str(made.folder), made.install_s))
    if AARCH64 not in skip:
        from deploytool.emulation import build

        why = build.unsupported_host()
        if why is None:
            outcome.done.append(_aarch64())
        else:  # optional: the rest of the set-up stands, and emulated targets say they are skipped
            outcome.skipped.append(AARCH64)
            outcome.warnings.append(f"aarch64: not built on this machine: {why}")
    outcome.programs_missing = [f"{m.name} (runtime {rt.name}): {m.hint}" for rt in RUNTIMES.values()
                                for m in rt.missing() if m.kind == "program"]
    return outcome


def _aarch64() -> Done:
    from deploytool.emulation import build

    try:
        built = build.ensure()
    except build.SetupError as e:
        raise DeployToolError(f"setup: {e}", UNUSABLE) from None
    wheels = build.wheels()
    what = (f"the aarch64 emulation (QEMU {built.qemu.split()[0]}, LiteRT {wheels['ai-edge-litert']} and onnxruntime "
            f"{wheels['onnxruntime']} aarch64, {built.size_bytes / 1e6:.0f} MB)")
    return Done(AARCH64, what, str(built.folder), built.build_s)
