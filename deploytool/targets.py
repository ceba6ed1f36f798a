"""Which targets exist: the format and runtime registries joined (``core/target.py`` is the type).

An artifact of format F runs on every runtime in ``F.runtimes`` (the first is its default) and on
every runtime that names F in ``Runtime.runs``. ``validate`` and ``bench`` cover every such runtime
by default; ``--runtime NAME`` narrows them. Coordinator side: imports no framework.
"""
from __future__ import annotations

from deploytool.core.errors import UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.formats import FORMATS
from deploytool.runtimes import RUNTIMES


def runtimes_of(fmt: str) -> list[str]:
    """The runtimes that run format ``fmt``, its default first (an unknown format: none)."""
    f = FORMATS.get(fmt)
    declared = list(f.runtimes) if f is not None else []
    added = [name for name, rt in RUNTIMES.items() if fmt in rt.runs and name not in declared]
    return [r for r in declared if r in RUNTIMES or r == declared[0]] + added


def default_target(fmt: str) -> Target:
    return Target(fmt, FORMATS[fmt].runtime)


def default_runtime(fmt: str) -> str | None:
    f = FORMATS.get(fmt)
    return f.runtime if f is not None else None


def targets_of(fmt: str, runtimes: list[str] | None = None) -> list[Target]:
    """The targets of one artifact: every runtime that runs it, or those of ``runtimes`` that do."""
    return [Target(fmt, r, NATIVE) for r in runtimes_of(fmt) if runtimes is None or r in runtimes]


def check_runtimes(requested: list[str] | None) -> list[str] | None:
    """``--runtime`` names, repeated or comma-separated: known runtimes (UsageError otherwise); None or empty:
    every runtime."""
    requested = [part.strip() for r in requested or [] for part in r.split(",") if part.strip()]
    if not requested:
        return None
    unknown = [r for r in requested if r not in RUNTIMES]
    if unknown:
        raise UsageError(f"--runtime {', '.join(unknown)}: no such runtime (this deploytool knows "
                         f"{', '.join(RUNTIMES)})")
    return list(dict.fromkeys(requested))


def parse(key: str) -> Target:
    """A target key from a result file or an option (a bare format name: its default runtime)."""
    return Target.parse(key, default_runtime(key.split("@")[0]))
