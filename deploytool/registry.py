"""One registry type for every plug-in layer: formats, runtimes, source kinds and tensor exposers.

``discover(package, attribute, kind, group)`` gathers the plug-ins of one layer into a dict
``name -> plug-in``, from two places, in this order:

1. every module of ``package``'s folder whose name does not start with ``_``, that defines
   ``attribute`` (``FORMAT``, ``RUNTIME``, ``SOURCE``, ``EXPOSER``); modules without it are helpers;
2. the entry points of ``group`` (``deploytool.formats``, ``deploytool.runtimes``,
   ``deploytool.sources``, ``deploytool.exposers``) of every installed distribution (or one whose
   ``*.dist-info`` is on ``sys.path``), so another distribution (``deploytool-x``) adds a plug-in
   without editing deploytool. **An entry point names the plug-in object itself**, an instance of the
   layer's type, and its name is the plug-in's registry name::

       [project.entry-points."deploytool.runtimes"]
       x_onnxruntime = "deploytool_x.runtime:RUNTIME"

A built-in module that fails to import or declares ``attribute`` with the wrong type is a bug in
deploytool and raises, as do two built-ins of one name. A plug-in from an entry point must never
break deploytool: one that fails to load, is not of the layer's type, is named differently from its
entry point, or takes a name already registered is skipped, and the reason is appended to
``problems`` (``deploytool doctor`` can show it). ``origins`` says where each plug-in came from.

Imports no framework: the coordinator imports the registries. Plug-in modules must import their
framework inside functions only.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The entry-point group of each plug-in layer.
GROUPS = {"formats": "deploytool.formats", "runtimes": "deploytool.runtimes", "sources": "deploytool.sources",
          "exposers": "deploytool.exposers"}


class DuplicateName(RuntimeError):
    """Two built-in plug-ins of one layer have the same name."""


@dataclass(frozen=True)
class Problem:
    """A plug-in from an entry point that was skipped, and why."""

    group: str  # the entry-point group
    origin: str  # the entry point, and the distribution declaring it
    reason: str

    def __str__(self) -> str:
        return f"{self.group}: {self.origin}: {self.reason}"


problems: list[Problem] = []
"""Every entry point skipped in this process, across all registries discovered so far."""

origins: dict[str, dict[str, str]] = {}
"""group -> plug-in name -> where it came from (a module, or an entry point and its distribution)."""


def by_name(found: dict[str, T]) -> dict[str, T]:
    """The default order: by name."""
    return dict(sorted(found.items()))


def _name(obj: Any) -> str:
    return obj.name


def discover(package: str, attribute: str, kind: type[T], group: str,
             key: Callable[[T], str] = _name,
             order: Callable[[dict[str, T]], dict[str, T]] = by_name) -> dict[str, T]:
    """The plug-ins of one layer: ``attribute`` of each non-underscore module of ``package``, then the
    ``group`` entry points (see the module's docstring), as ``key(plug-in) -> plug-in``, arranged by
    ``order`` (a function of the whole dict: the formats' order is topological)."""
    found: dict[str, T] = {}
    where: dict[str, str] = {}
    folder = Path(importlib.import_module(package).__file__ or "").parent  # mid-import when called from it
    for info in pkgutil.iter_modules([str(folder)]):
        if info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        obj = getattr(importlib.import_module(module_name), attribute, None)
        if obj is None:
            continue
        if not isinstance(obj, kind):
            raise TypeError(f"{module_name}.{attribute} is a {type(obj).__name__}, not a {kind.__name__}")
        name = key(obj)
        if name in found:
            raise DuplicateName(f"two {group} plug-ins named {name!r}: {where[name]} and {module_name}")
        found[name], where[name] = obj, module_name
    for ep in _entry_points(group):
        origin = _origin(ep)
        try:
            obj = ep.load()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a broken plug-in is reported, never fatal
            problems.append(Problem(group, origin, f"does not load: {type(e).__name__}: {e}"))
            continue
        if not isinstance(obj, kind):
            hint = f" (point it at the module's {attribute}: {ep.value}:{attribute})" \
                if getattr(obj, attribute, None) is not None and ":" not in ep.value else ""
            problems.append(Problem(group, origin, f"is a {type(obj).__name__}, not a {kind.__name__}{hint}"))
            continue
        name = key(obj)
        if name != ep.name:
            problems.append(Problem(group, origin, f"declares {name!r}: an entry point's name must be its "
                                                   "plug-in's name"))
            continue
        if name in found:
            if found[name] is not obj:
                problems.append(Problem(group, origin, f"{name!r} is already taken by {where[name]}: skipped"))
            continue
        found[name], where[name] = obj, origin
    result = order(found)
    origins[group] = {name: where[name] for name in result}
    return result


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, in a stable order (by distribution, then name); a distribution whose
    metadata cannot be read is itself a problem, not a crash."""
    try:
        eps = list(importlib.metadata.entry_points(group=group))
    except Exception as e:  # noqa: BLE001 - broken metadata on the path must not break deploytool
        problems.append(Problem(group, "installed distributions", f"entry points unreadable: {e}"))
        return []
    return sorted(eps, key=lambda ep: (_distribution(ep), ep.name))


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _origin(ep: importlib.metadata.EntryPoint) -> str:
    return f"entry point {ep.name} = {ep.value} ({_distribution(ep)})"
