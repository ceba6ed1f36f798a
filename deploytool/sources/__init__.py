"""How a model comes in. The coordinator resolves a ``--model`` argument to a plain-data source
reference (no torch import); the worker that holds the framework loads it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.errors import ModelError


@dataclass
class SourceRef:
    kind: str  # "zoo"
    ref: str  # zoo name
    name: str  # the bundle / model name
    framework: str = "torch"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ref": self.ref, "name": self.name, "framework": self.framework, **self.details}


def zoo_dir() -> Path:
    spec = importlib.util.find_spec("deploytool.models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the reference zoo (deploytool.models) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def zoo_names() -> list[str]:
    return sorted(p.stem for p in zoo_dir().glob("*.py") if not p.stem.startswith("_"))


def resolve(model: str) -> SourceRef:
    """A zoo name, or the path of a Python file written like a zoo module (see models/)."""
    names = zoo_names()
    if model in names:
        return SourceRef(kind="zoo", ref=model, name=model, details={"file": f"models/{model}.py"})
    if model.endswith(".py") or "/" in model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {model}: no such file")
        if path.suffix != ".py":
            raise ModelError(f"model file {model}: expected a .py file written like a models/ zoo module")
        return SourceRef(kind="file", ref=str(path.resolve()), name=path.stem, details={"file": str(path.resolve())})
    raise ModelError(f"unknown model {model!r}: the reference zoo has {', '.join(names)} "
                     "(or pass the path of a model .py file)")
