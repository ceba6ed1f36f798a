"""The runtime registry: one file per runtime in this package, each defining ``RUNTIME``.

A runtime loads an artifact, runs feeds -> outputs and says what I/O the artifact declares.
Nothing else: no timing, no comparing, no layout adaptation (the worker does those), so each file
stays small (Polygraphy's habit).
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    packages: tuple[str, ...]  # import names that must be importable
    install_hint: str  # what to pip install when they are not
    load: Callable[[Path, dict], Any]  # (artifact path, settings such as threads) -> session
    run: Callable[[Any, dict], dict]  # (session, {artifact input name: array}) -> {artifact output name: array}
    version: Callable[[], str]
    settings: Callable[[Any], dict] = lambda session: {}  # what the runtime is set to, as it reports it
    # The artifact's own view of its I/O: {"inputs": [{"name", "dtype", "shape"}], "outputs": [...],
    # "ordered": bool}; None where the format does not declare it (a TorchScript module: its
    # outputs are checked by count when it runs). Checked against the contract before any run.
    describe: Callable[[Any], dict | None] = lambda session: None
    # Formats this runtime runs besides those that list it in ``Format.runtimes`` (a runtime added
    # for existing artifacts, e.g. OpenVINO for ``onnx``, is one file, not an edit of each format).
    runs: tuple[str, ...] = ()

    def missing_packages(self) -> list[str]:
        missing = []
        for p in self.packages:
            try:
                found = importlib.util.find_spec(p) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(p)
        return missing


def _discover() -> dict[str, Runtime]:
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        rt = getattr(importlib.import_module(f"{__name__}.{info.name}"), "RUNTIME", None)
        if isinstance(rt, Runtime):
            found[rt.name] = rt
    return dict(sorted(found.items()))


RUNTIMES: dict[str, Runtime] = _discover()
