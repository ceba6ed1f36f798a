"""The format registry: one file per format in this package, each defining ``FORMAT``.

A format declares everything about itself (name, artifact suffix, parent format, precision,
tolerance tier, runtime, exporting stage, required packages) and how it is exported. Its fields
describe the chain from a torch source; a ``Route`` per other source framework says how it is made
there instead (from a TensorFlow source, ``savedmodel`` is the root and ``onnx`` comes from it
through tf2onnx). ``plan(framework)`` is the registry as one source framework sees it. CLI
choices, report rows and test parameters all come from ``FORMATS``; adding a format is adding a
file here. Format modules must not import torch or TensorFlow at module level: the coordinator
imports this registry.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deploytool.contract import Contract


@dataclass
class ExportContext:
    """What an export function gets inside its worker."""

    model_name: str
    contract: Contract  # the source contract
    out_path: Path  # where the artifact must be written (file or directory)
    workdir: Path  # scratch space, deleted with the staging directory
    model: Any = None  # the loaded source model (stages that hold it)
    source_path: Path | None = None  # the source file, when the source is a file of this format (.onnx)
    example_inputs: tuple = ()
    alt_inputs: tuple = ()  # inputs at the contract's alt dim sizes (shape-specialisation checks)
    parent_path: Path | None = None
    parent_contract: Contract | None = None
    options: dict = field(default_factory=dict)  # export options from the command line (keep_layout, ...)


@dataclass
class ExportResult:
    contract: Contract  # the artifact's I/O contract
    exporter_version: str
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exporter: str | None = None  # when it differs from the format's usual exporter


@dataclass(frozen=True)
class Route:
    """How a format is made when the source is of another framework than its default chain's."""

    parent: str | None  # None: made from the source model itself, in the source's worker
    stage: str
    exporter: str
    export: Callable[[ExportContext], ExportResult]
    requires: tuple[str, ...] = ()
    explain: Callable[[BaseException, str, ExportContext], str] | None = None
    description: str | None = None


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    suffix: str  # appended to the model name under artifacts/
    parent: str | None  # format this one is converted from; None = the source model
    precision: str
    tier: str  # key into parity.TIERS
    runtime: str  # key into runtimes.RUNTIMES
    stage: str  # which worker family exports it: "torch" or "tensorflow"
    exporter: str  # what does the conversion, as shown to users
    requires: tuple[str, ...]  # import names needed to export it
    export: Callable[[ExportContext], ExportResult]
    # (exception, the worker's log since this export began, the context) -> one line naming the cause
    explain: Callable[[BaseException, str, ExportContext], str] | None = None
    is_dir: bool = False
    # For formats made from the source (parent None): the source frameworks they can be made from.
    # A root format runs in the source's own worker; from any other source it is not applicable.
    sources: tuple[str, ...] = ("torch",)
    routes: dict[str, Route] = field(default_factory=dict)  # source framework -> how it is made there

    def artifact_name(self, model: str) -> str:
        return f"{model}{self.suffix}"

    def missing_packages(self) -> list[str]:
        return [p for p in self.requires if importlib.util.find_spec(p) is None]


def _discover() -> dict[str, Format]:
    found: dict[str, Format] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        fmt = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if isinstance(fmt, Format):
            if fmt.name in found:
                raise RuntimeError(f"two formats named {fmt.name!r}")
            found[fmt.name] = fmt
    return _ordered(found)


def _ordered(found: dict[str, Format]) -> dict[str, Format]:
    """Topological order: every parent before its children; siblings by name."""
    ordered: dict[str, Format] = {}
    remaining = dict(sorted(found.items()))
    while remaining:
        ready = [n for n, f in remaining.items() if f.parent is None or f.parent in ordered]
        if not ready:
            raise RuntimeError(f"formats with unknown or cyclic parents: {sorted(remaining)}")
        for n in ready:
            ordered[n] = remaining.pop(n)
    return ordered


def plan(framework: str = "torch") -> dict[str, Format]:
    """The registry as a source of ``framework`` sees it: each format with its route for that
    framework applied (parent, stage, exporter, export function), in dependency order."""
    routed = {}
    for name, fmt in FORMATS.items():
        route = fmt.routes.get(framework)
        if route is None:
            routed[name] = fmt
            continue
        routed[name] = dataclasses.replace(
            fmt, parent=route.parent, stage=route.stage, exporter=route.exporter, export=route.export,
            requires=route.requires or fmt.requires, explain=route.explain,
            description=route.description or fmt.description,
            sources=(*fmt.sources, framework) if route.parent is None else fmt.sources)
    return _ordered(routed)


def lineage(name: str, framework: str = "torch") -> list[str]:
    """The chain of formats from the source to ``name``, inclusive (e.g. onnx, savedmodel, tflite_fp16)."""
    formats = plan(framework)
    chain = []
    cur: str | None = name
    while cur is not None:
        chain.append(cur)
        cur = formats[cur].parent
    return chain[::-1]


def resolve(requested: list[str] | None, framework: str = "torch") -> tuple[list[str], list[str]]:
    """Requested names -> (formats to export in dependency order, parents added to make them)."""
    formats = plan(framework)
    if not requested:
        return list(formats), []
    unknown = [n for n in requested if n not in formats]
    if unknown:
        raise KeyError(", ".join(unknown))
    wanted = {n for r in requested for n in lineage(r, framework)}
    added = sorted(wanted - set(requested))
    return [n for n in formats if n in wanted], added


FORMATS: dict[str, Format] = _discover()
