"""The runtime registry: one file per runtime in this package, each defining ``RUNTIME``.

A runtime loads an artifact, runs feeds -> outputs and says what I/O the artifact declares and
what it is set to. Nothing else: no comparing, no layout adaptation (the worker does those), and no
timing unless the runtime lives outside Python and times itself (``time``), so each file stays
small (Polygraphy's habit).

The contract is complete here: what to install (``packages`` from the pip ``extra``, ``programs``
that are not Python packages), what is recorded of it (``distributions``' versions), and what it
reports back (``Settings``, the same names for every runtime).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool import install


@dataclass(frozen=True)
class Program:
    """A requirement that is not a Python package: a program found on ``PATH`` (``shutil.which``), or anything
    else ``present`` can tell is there (the npm packages ``deploytool setup`` installs)."""

    name: str  # e.g. "g++", "chromium"
    why: str  # what the runtime needs it for, e.g. "compiles the libtorch runner"
    hint: str  # how to get it, e.g. "apt-get install g++"
    present: Callable[[], bool] | None = None  # None: a program on PATH

    def found(self) -> bool:
        return self.present() if self.present is not None else shutil.which(self.name) is not None


@dataclass(frozen=True)
class Missing:
    """One requirement of a runtime this machine lacks, and what to do about it."""

    kind: str  # "package" or "program"
    name: str
    hint: str
    why: str = ""

    def __str__(self) -> str:
        why = f", {self.why}" if self.why else ""
        return f"no {self.kind} {self.name}{why}: {self.hint}"


SETTINGS_KEYS = ("threads", "inter_op_threads", "spinning")


@dataclass
class Settings:
    """What a runtime is set to once it has loaded an artifact, read back from the runtime where it can
    say, under the same names for every runtime (results are compared across runtimes by them).
    ``None``: the runtime's own default, or a knob this runtime does not have."""

    threads: int | None  # intra-op threads through the runtime's own knob
    inter_op_threads: int | None = None
    spinning: bool | None = None  # whether idle worker threads spin
    extras: dict[str, Any] = field(default_factory=dict)  # runtime-specific, e.g. {"inference_precision": "f32"}

    def __post_init__(self) -> None:
        clash = sorted(set(self.extras) & set(SETTINGS_KEYS))
        if clash:
            raise ValueError(f"settings extras may not redefine {', '.join(clash)}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form results carry (validation.json checks, bench rows): the common keys, then the extras."""
        return {"threads": self.threads, "inter_op_threads": self.inter_op_threads, "spinning": self.spinning,
                **self.extras}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


@dataclass
class Timed:
    """What a runtime that times itself (``Runtime.time``) measured, as ``timing.measure`` returns it."""

    samples_ns: list[int]  # one per timed call, after warm-up
    warmup_runs: int
    measure_s: float  # wall time of the timed part
    capped: bool = False  # the protocol's hard cap stopped it before its minimum


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    packages: tuple[str, ...]  # import names that must be importable
    extra: str  # the pip extra that installs them (install.extras())
    load: Callable[[Path, dict], Any]  # (artifact path, settings such as threads) -> session
    run: Callable[[Any, dict], dict]  # (session, {artifact input name: array}) -> {artifact output name: array}
    version: Callable[[], str]
    settings: Callable[[Any], Settings] = lambda session: Settings(None)  # what it is set to, read back
    # The artifact's own view of its I/O: {"inputs": [{"name", "dtype", "shape"}], "outputs": [...],
    # "ordered": bool}; None where the format does not declare it (a TorchScript module: its
    # outputs are checked by count when it runs). Checked against the contract before any run.
    describe: Callable[[Any], dict | None] = lambda session: None
    # Formats this runtime runs besides those that list it in ``Format.runtimes`` (a runtime added
    # for existing artifacts, e.g. OpenVINO for ``onnx``, is one file, not an edit of each format).
    runs: tuple[str, ...] = ()
    programs: tuple[Program, ...] = ()  # what it needs besides Python packages (a compiler, a browser)
    # A runtime that lives outside Python (a C++ runner, a browser page) times itself:
    # (session, batched feeds, timing.Protocol) -> Timed, used instead of the worker's own loop.
    time: Callable[[Any, list[dict], Any], Timed] | None = None

    @property
    def install_hint(self) -> str:
        """What to pip install when its packages are missing (one spelling: ``install.hint``)."""
        return install.hint(self.extra)

    @property
    def distributions(self) -> tuple[str, ...]:
        """The distributions whose versions are recorded for it (manifest, machine fingerprint)."""
        return tuple(dict.fromkeys(install.distribution(p) for p in self.packages))

    def missing_packages(self) -> list[str]:
        return [p for p in self.packages if not install.installed(p)]

    def missing(self) -> list[Missing]:
        """Everything it needs that this machine lacks (packages, then programs), each with its hint."""
        out = [Missing("package", p, self.install_hint) for p in self.missing_packages()]
        return out + [Missing("program", p.name, p.hint, p.why) for p in self.programs if not p.found()]

    def unavailable(self) -> str | None:
        """One line saying what is missing and how to get it; None when it can run here."""
        missing = self.missing()
        if not missing:
            return None
        if all(m.kind == "package" for m in missing):  # the usual case, said as it always was
            return f"runtime {self.name} not installed (no {', '.join(m.name for m in missing)}): {self.install_hint}"
        return f"runtime {self.name} cannot run here: {'; '.join(map(str, missing))}"

    def reported_settings(self, session: Any) -> dict[str, Any]:
        """``settings(session)`` in its JSON form; a runtime must report ``Settings``."""
        s = self.settings(session)
        if not isinstance(s, Settings):
            raise TypeError(f"runtime {self.name}: settings() returned {type(s).__name__}, not runtimes.Settings")
        return s.to_dict()


def distributions() -> tuple[str, ...]:
    """Every registered runtime's recorded distributions, once each, in registry order (the manifest's
    versions and the machine fingerprint's runtimes come from here)."""
    return tuple(dict.fromkeys(d for rt in RUNTIMES.values() for d in rt.distributions))


def _discover() -> dict[str, Runtime]:
    """Every ``RUNTIME`` of this package's modules and of ``deploytool.runtimes`` entry points (``registry``)."""
    from deploytool import registry

    return registry.discover(__name__, "RUNTIME", Runtime, registry.GROUPS["runtimes"])


RUNTIMES: dict[str, Runtime] = _discover()
