"""Which machine a result was measured on: a stable fingerprint (CPU model, cores, OS, runtime
versions) and an optional label (``--machine-name``; CI hostnames are random). Results from several
machines are told apart by it in one report, and ``recommend`` ranks on one machine's latency."""
from __future__ import annotations

import hashlib
import json
import os
import platform

from deploytool.store import bundle


def runtime_packages() -> tuple[str, ...]:
    """The distributions whose versions tell runtimes apart: every registered runtime's."""
    from deploytool import runtimes  # the registry imports no framework

    return runtimes.distributions()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(name: str | None = None) -> dict:
    versions = bundle.package_versions()
    facts = {"cpu": cpu_model(), "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
             "arch": platform.machine(), "python": platform.python_version(),
             "runtimes": {p: versions.get(p) for p in runtime_packages()}}
    ident = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    return {**facts, "id": ident, "name": name or ident}
