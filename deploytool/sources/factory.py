"""A torch model factory: ``file.py:build`` or ``package.module:build``, returning an nn.Module
or ``(module, example_inputs)``; inputs from ``--input`` or the example inputs."""
from __future__ import annotations

from pathlib import Path

from deploytool.core.errors import ModelError
from deploytool.sources import SourceKind, SourceRef, _pycheck, _torch, torch_runnable


def claim(model: str) -> SourceRef | None:
    target, sep, attr = model.rpartition(":")
    if not (sep and target and attr.isidentifier()):
        return None
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {target}: no such file")
        _pycheck.check_factory(path, target, attr)  # a typo found now, not after a torch worker started
        return SourceRef(kind="factory", ref=f"{path.resolve()}:{attr}", name=path.stem,
                         details={"file": str(path.resolve()), "factory": attr})
    if all(part.isidentifier() for part in target.split(".")):
        return SourceRef(kind="factory", ref=f"{target}:{attr}", name=attr, details={"module": target, "factory": attr})
    raise ModelError(f"--model {model!r}: expected file.py:factory or package.module:factory")


def missing(source: dict) -> str | None:
    file = source.get("file")
    return None if not file or Path(file).exists() else f"model file {file} is not on this machine"


SOURCE = SourceKind(name="factory", framework="torch", description="file.py:factory or package.module:factory",
                    order=10, claim=claim, load=_torch.load, reference_runtime="torch_eager", takes_inputs=True,
                    takes_weights=True, runnable=torch_runnable, missing=missing)
