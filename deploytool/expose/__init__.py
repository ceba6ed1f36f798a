"""Intermediate tensors of an artifact, for localising the first diverging op (``localise.py``).

One small module per runtime that can expose them, each defining ``EXPOSER = Exposer(runtime,
expose)`` with ``expose(path, feeds, limits) -> Exposed``; found by ``deploytool.registry`` (this
folder's modules, then ``deploytool.exposers`` entry points: another distribution can add one). The
exposing runs in a worker (``jobs.ExposeTensors``), never in the coordinator; the modules import
their framework inside ``expose`` only. Kept apart from ``runtimes/`` (load, run, nothing else):
exposing every tensor rebuilds or re-instruments a model. A runtime missing here cannot localise,
and the report says so.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from deploytool import registry
from deploytool.checking.localise import Limits, Node, input_dependent


@dataclass
class Exposed:
    nodes: list[Node]
    inputs: list[str]  # graph input tensor names
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    total: int = 0  # input-dependent tensors there were
    truncated: bool = False  # the limits cut the exposure short


@dataclass(frozen=True)
class Exposer:
    runtime: str  # the runtimes.RUNTIMES key whose artifacts it exposes
    expose: Callable[[str, dict[str, np.ndarray], Limits], Exposed]  # (artifact path, feeds, limits)


def expose(runtime: str, path: str, feeds: dict[str, np.ndarray], limits: Limits) -> Exposed:
    exposer = EXPOSERS.get(runtime)
    if exposer is None:
        raise KeyError(f"runtime {runtime} gives no access to intermediate tensors (these do: {', '.join(EXPOSERS)})")
    return exposer.expose(path, feeds, limits)


def select(nodes: list[Node], inputs: list[str], nbytes: Mapping[str, int | None], limits: Limits,
           wanted=lambda t: True) -> tuple[list[str], int]:
    """Input-dependent tensors to expose, in topological order, within ``limits`` (an unknown size
    counts as 1 MiB); and how many there were in all."""
    candidates = [t for t in input_dependent(nodes, inputs) if wanted(t)]
    chosen: list[str] = []
    used = 0
    for t in candidates:
        size = nbytes.get(t)
        size = (1 << 20) if size is None else size
        if len(chosen) >= limits.max_tensors or used + size > limits.max_bytes:
            break
        chosen.append(t)
        used += size
    return chosen, len(candidates)


def _runtime(exposer: Exposer) -> str:
    return exposer.runtime


# runtime name -> its exposer. Last: the modules found import ``Exposed`` and ``select`` from here.
EXPOSERS: dict[str, Exposer] = registry.discover(__name__, "EXPOSER", Exposer, registry.GROUPS["exposers"],
                                                 key=_runtime)
