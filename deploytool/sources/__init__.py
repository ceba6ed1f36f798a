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


def eager_artifact(manifest: dict, work: Path) -> tuple[Path, dict]:
    """The source model as something the torch_eager runtime can load: a descriptor file and its
    contract (a module called eagerly returns its outputs by position: output_0..N)."""
    import json

    from deploytool.contract import Contract

    path = work / "source.json"
    path.write_text(json.dumps(manifest["model"]["source"]))
    contract = Contract.from_dict(manifest["contract"])
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return path, contract.to_dict()


def source_loadable(manifest: dict) -> str | None:
    """Why the manifest's source model cannot be loaded here, or None when it can."""
    src = manifest["model"]["source"]
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if src.get("kind") == "zoo" and src.get("ref") not in zoo_names():
        return f"reference model {src.get('ref')!r} is not in this deploytool's zoo"
    if src.get("kind") == "file" and not Path(src.get("ref", "")).is_file():
        return f"model file {src.get('ref')} is not on this machine"
    return None
