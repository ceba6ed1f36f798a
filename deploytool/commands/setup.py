"""``deploytool setup``: install what the runtimes need that pip does not (the browser runtimes' npm packages).

Run once per machine (the README's set-up runs it); idempotent: what is installed already is said and left as it
is. Everything else a runtime needs beyond pip is a program the machine's package manager installs (Chromium,
g++): said here too, with the command, so one run tells what this machine still lacks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from deploytool.core.errors import UNUSABLE, DeployToolError


@dataclass
class SetupOutcome:
    npm_folder: str
    npm_packages: dict[str, str]  # name -> version, as pinned and installed
    install_s: float  # 0.0: they were installed already
    programs_missing: list[str] = field(default_factory=list)  # "chromium (runtime onnxruntime_web): apt-get ..."


def run(offline: bool = False) -> SetupOutcome:
    """Install the npm packages of ``deploytool/browser/package-lock.json`` unless they are; raises
    DeployToolError (exit 11, the machine cannot be set up) naming npm's error."""
    from deploytool.browser import npm
    from deploytool.runtimes import RUNTIMES

    try:
        done = npm.ensure(offline=offline)
    except npm.SetupError as e:
        raise DeployToolError(f"setup: {e}", UNUSABLE) from None
    missing = [f"{m.name} (runtime {rt.name}): {m.hint}" for rt in RUNTIMES.values() for m in rt.missing()
               if m.kind == "program"]
    return SetupOutcome(str(done.folder), done.packages, done.install_s, missing)
