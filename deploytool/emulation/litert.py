"""LiteRT's aarch64 build under ``qemu-aarch64 -cpu CPU``: ``.tflite`` files, as ``deploytool/runtimes/litert.py``
runs them (same load / run / describe / settings, same output names, order and dtypes), so the worker runs an emulated
target through its usual code path: ``emulated_runtime(cpu)`` is a ``Runtime`` named ``litert`` bound to one CPU
model. The process, its protocol and its lifecycle: ``session.py``.
"""
from __future__ import annotations

import functools
from pathlib import Path

from deploytool.emulation import session as emulated
from deploytool.runtimes import Runtime, Settings
from deploytool.runtimes import litert as native


def load(path: Path, settings: dict, cpu: str) -> emulated.Session:
    """Start the emulated Python on ``cpu`` and load the artifact in it, as runtimes/litert.py loads it."""
    threads = int(settings["threads"]) if settings.get("threads") else None
    session = emulated.start("litert", cpu, {"path": str(path), "threads": threads or 0})
    details = session.view
    session.view = {"input_details": details["inputs"], "output_details": details["outputs"], "threads": threads}
    return session


def describe(session: emulated.Session) -> dict:
    return native.describe(session.view)


def settings(session: emulated.Session) -> Settings:
    s = native.settings(session.view)
    s.extras.update(emulated.extras(session))
    return s


def version() -> str:
    return emulated.version("ai-edge-litert")


def emulated_runtime(cpu: str) -> Runtime:
    """LiteRT's aarch64 build on the emulated CPU model ``cpu``, as a Runtime the worker runs like the native one."""
    return Runtime("litert", f"LiteRT's aarch64 build under QEMU, CPU {cpu}", (), native.RUNTIME.extra,
                   functools.partial(load, cpu=cpu), emulated.run, version, settings, describe,
                   programs=(emulated.ENVIRONMENT,))
