"""A reference-zoo model by name (``--model mobilenet_v2``): a module of ``deploytool.models``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from deploytool.core.errors import ModelError
from deploytool.sources import SourceKind, SourceRef, _torch, torch_runnable


def zoo_dir() -> Path:
    spec = importlib.util.find_spec("deploytool.models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the reference zoo (deploytool.models) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def zoo_names() -> list[str]:
    return sorted(p.stem for p in zoo_dir().glob("*.py") if not p.stem.startswith("_"))


def claim(model: str) -> SourceRef | None:
    if model not in zoo_names():
        return None
    return SourceRef(kind="zoo", ref=model, name=model, details={"file": f"models/{model}.py"})


def missing(source: dict) -> str | None:
    return None if source.get("ref") in zoo_names() else \
        f"reference model {source.get('ref')!r} is not in this deploytool's zoo"


SOURCE = SourceKind(name="zoo", framework="torch", description="a reference-zoo model by name", order=20,
                    claim=claim, load=_torch.load, reference_runtime="torch_eager", takes_ranges=False,
                    takes_weights=True, runnable=torch_runnable, missing=missing)
