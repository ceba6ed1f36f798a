"""What to install, in one place: the pip extras (pyproject.toml's ``[project.optional-dependencies]``),
the hint printed when something is missing, and the versions this release was verified with.

The pins in pyproject.toml are the single source of truth for "verified": a source checkout reads
them from its pyproject.toml, an installed package from its own metadata (``Requires-Dist``, which
pip writes from the same pins). Nothing here imports a framework: versions come from
``importlib.metadata``, presence from ``importlib.util.find_spec``.
"""
from __future__ import annotations

import importlib.util
import re
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

# Import name -> distribution name, where the two differ. Every other package deploytool looks for (the
# runtimes' ``packages``, the formats' ``requires``, the source frameworks) is distributed under its import
# name (``distribution()``), so a new runtime or format adds no line here. A test checks every one is pinned.
RENAMED = {
    "ai_edge_litert": "ai-edge-litert",
    "tf_keras": "tf-keras",
    "onnx_graphsurgeon": "onnx-graphsurgeon",
    "sklearn": "scikit-learn",
    "model_signing": "model-signing",
    "OpenSSL": "pyopenssl",
}


def distribution(import_name: str) -> str:
    """The distribution that installs an import name (``ai_edge_litert.interpreter`` -> ``ai-edge-litert``)."""
    top = import_name.split(".")[0]
    return RENAMED.get(top, top)


# A source framework (sources.FRAMEWORKS) -> the extra that runs it as the reference.
FRAMEWORK_EXTRAS = {"torch": "torch", "onnx": "export", "tensorflow": "tensorflow"}


def extras() -> tuple[str, ...]:
    """The extras deploytool declares (pyproject.toml's ``[project.optional-dependencies]``, or an installed
    package's metadata): the one list, read where the pins are."""
    return tuple(dict.fromkeys(extra for _req, extra in requirements() if extra))


def hint(extra: str) -> str:
    """The one spelling of an install hint."""
    return f"pip install 'deploytool[{extra}]'"


def installed(import_name: str) -> bool:
    try:
        return importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        return False


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _pyproject() -> Path | None:
    """pyproject.toml of the checkout this package runs from (None when installed as a wheel)."""
    candidate = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        data = tomllib.loads(candidate.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return candidate if data.get("project", {}).get("name") == "deploytool" else None


def requirements() -> list[tuple[str, str]]:
    """(requirement, extra or "" for the core) for every requirement deploytool declares."""
    path = _pyproject()
    if path is not None:
        project = tomllib.loads(path.read_text())["project"]
        out = [(r, "") for r in project.get("dependencies", [])]
        for extra, reqs in project.get("optional-dependencies", {}).items():
            out += [(r, extra) for r in reqs]
        return out
    out = []
    for line in metadata.requires("deploytool") or []:
        req, _, marker = line.partition(";")
        m = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        out.append((req.strip(), m.group(1) if m else ""))
    return out


_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def verified() -> dict[str, str]:
    """Distribution (normalised name) -> the version spec this release was verified with ("==2.21.0", ">=5.9")."""
    out = {}
    for req, _extra in requirements():
        m = _REQ.match(req)
        if m and m.group(1).lower() != "deploytool":
            out[_normal(m.group(1))] = m.group(3).strip()
    return out


def matches(installed_version: str, spec: str) -> bool:
    """Whether a version satisfies a pin of the simple forms pyproject.toml uses (==, >=, <, comma-joined).
    A local build tag (2.13.0+cpu) matches its public version."""
    public = installed_version.split("+")[0]
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op, want = re.match(r"(==|>=|<=|<|>|!=|~=)?\s*(.*)", clause).groups()  # type: ignore[union-attr]
        a, b = _key(public), _key(want)
        ok = {"==": a == b, ">=": a >= b, "<=": a <= b, "<": a < b, ">": a > b, "!=": a != b,
              "~=": a >= b, None: a == b}[op]
        if not ok:
            return False
    return True


def _key(v: str) -> tuple:
    parts = []
    for p in v.split("."):
        m = re.match(r"\d+", p)
        parts.append(int(m.group()) if m else 0)
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
