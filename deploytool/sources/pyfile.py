"""A .py file written like a reference-zoo module (INPUTS, OUTPUTS, DIMS, build())."""
from __future__ import annotations

from pathlib import Path

from deploytool.core.errors import ModelError
from deploytool.sources import SourceKind, SourceRef, _pycheck, _torch, torch_runnable


def claim(model: str) -> SourceRef | None:
    if not (model.endswith(".py") or "/" in model):
        return None
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {model}: no such file")
    if path.suffix != ".py":
        raise ModelError(f"model file {model}: expected a .py file written like a models/ zoo module")
    _pycheck.check_zoo_file(path, model)  # a mistake found now, not after a torch worker started
    return SourceRef(kind="file", ref=str(path.resolve()), name=path.stem, details={"file": str(path.resolve())})


SOURCE = SourceKind(name="file", framework="torch", description="a .py file written like a zoo module", order=90,
                    claim=claim, load=_torch.load, reference_runtime="torch_eager", takes_ranges=False,
                    takes_weights=True, runnable=torch_runnable)
