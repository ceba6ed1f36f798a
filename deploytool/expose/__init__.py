"""Intermediate tensors of an artifact, for localising the first diverging op (``localise.py``).

One small module per runtime that can expose them, each defining ``expose(path, feeds, limits)
-> Exposed``; runs in a worker (``jobs.ExposeTensors``), never in the coordinator. Kept apart from
``runtimes/`` (load, run, nothing else): exposing every tensor rebuilds or re-instruments a model.
A runtime missing here cannot localise, and the report says so.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploytool.checking.localise import Limits, Node, input_dependent

# runtime name -> module exposing its intermediate tensors
EXPOSERS = {"onnxruntime": "deploytool.expose.onnx", "tensorflow": "deploytool.expose.tensorflow",
            "litert": "deploytool.expose.litert", "torch_eager": "deploytool.expose.torch_eager"}


@dataclass
class Exposed:
    nodes: list[Node]
    inputs: list[str]  # graph input tensor names
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    total: int = 0  # input-dependent tensors there were
    truncated: bool = False  # the limits cut the exposure short


def expose(runtime: str, path: str, feeds: dict[str, np.ndarray], limits: Limits) -> Exposed:
    module: Any = importlib.import_module(EXPOSERS[runtime])
    return module.expose(path, feeds, limits)


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
