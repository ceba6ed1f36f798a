"""Loads a torch source (a reference-zoo module) inside a torch worker.

A zoo module defines INPUTS, OUTPUTS, DIMS (the contract), ``build()`` returning an nn.Module,
``example_inputs()``, and optionally ``golden_inputs(n, seed)`` for real data.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploytool.contract import Contract, generate_inputs
from deploytool.errors import ModelError


@dataclass
class LoadedModel:
    """A source loaded in its framework's worker (shared by every source loader)."""
    module: Any  # the framework object formats export from (None for file sources)
    contract: Contract
    example_inputs: tuple
    alt_inputs: tuple
    golden: Callable[[int, int], dict[str, np.ndarray]]  # (samples, seed) -> {input: [samples, *shape]}
    description: str
    reference: Callable[[dict], dict[str, np.ndarray]] | None = None  # inputs -> reference outputs
    path: Path | None = None  # the source file, for sources that are files (.onnx)
    versions: dict | None = None


def load(source: dict) -> LoadedModel:
    import torch

    name = source["name"]
    try:
        if source["kind"] == "zoo":
            mod = importlib.import_module(f"deploytool.models.{source['ref']}")
        else:
            spec = importlib.util.spec_from_file_location(f"deploytool_user_model_{name}", source["ref"])
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
    except Exception as e:
        raise ModelError(f"model {name!r}: importing {source.get('file', name)} failed: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from e
    for attr in ("INPUTS", "OUTPUTS", "build"):
        if not hasattr(mod, attr):
            raise ModelError(f"model {name!r}: {source.get('file', name)} defines no {attr} (see models/digits_cnn.py)")
    if not callable(mod.build):
        raise ModelError(f"model {name!r}: build is not callable")
    try:
        contract = Contract.from_dict({"inputs": mod.INPUTS, "outputs": mod.OUTPUTS, "dims": getattr(mod, "DIMS", {})})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"model {name!r}: bad I/O declaration: {e}") from e
    try:
        module = mod.build()
    except Exception as e:
        raise ModelError(f"model {name!r}: factory build() raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"model {name!r}: build() returned {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    example = _as_tuple(mod.example_inputs() if hasattr(mod, "example_inputs")
                        else _tensors(generate_inputs(contract, 1, 0, contract.dim_sizes("example")), contract))
    alt_sizes = contract.dim_sizes("alt")
    alt = _tensors(generate_inputs(contract, 1, 1, alt_sizes), contract) if contract.dims and \
        alt_sizes != contract.dim_sizes("example") else ()
    _check_example(name, contract, example)
    golden_fn = getattr(mod, "golden_inputs", None)

    def golden(n: int, seed: int) -> dict[str, np.ndarray]:
        if golden_fn is not None:
            return {k: np.ascontiguousarray(v) for k, v in golden_fn(n, seed).items()}
        return generate_inputs(contract, n, seed, contract.dim_sizes("example", batch_one=True))

    loaded = LoadedModel(module, contract, example, alt, golden, getattr(mod, "DESCRIPTION", ""),
                         versions={"torch": torch.__version__})
    loaded.reference = lambda inputs: reference_outputs(module, contract, inputs)
    return loaded


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _tensors(arrays: dict[str, np.ndarray], contract: Contract) -> tuple:
    import torch

    return tuple(torch.from_numpy(arrays[s.name][0]) for s in contract.inputs)


def _check_example(name: str, contract: Contract, example: tuple) -> None:
    if len(example) != len(contract.inputs):
        raise ModelError(f"model {name!r}: example_inputs() gives {len(example)} tensors, the contract names "
                         f"{len(contract.inputs)} ({', '.join(contract.input_names)})")
    for spec, t in zip(contract.inputs, example):
        dtype = str(t.dtype).replace("torch.", "")
        if dtype != spec.dtype or t.dim() != len(spec.shape):
            raise ModelError(f"model {name!r}: example input {spec.name!r} is {dtype}{list(t.shape)}, "
                             f"the contract says {spec.dtype}{spec.shape}")
        for axis, d in enumerate(spec.shape):
            if isinstance(d, int) and t.shape[axis] != d:
                raise ModelError(f"model {name!r}: example input {spec.name!r} has size {t.shape[axis]} at axis "
                                 f"{axis}, the contract fixes {d}")


def reference_outputs(module, contract: Contract, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch-eager outputs, one sample at a time: {output: [samples, *shape]}."""
    import torch

    refs: dict[str, list] = {n: [] for n in contract.output_names}
    with torch.no_grad():
        for i in range(len(next(iter(inputs.values())))):
            out = module(*[torch.from_numpy(np.ascontiguousarray(inputs[s.name][i])) for s in contract.inputs])
            out = out if isinstance(out, (tuple, list)) else (out,)
            if len(out) != len(contract.outputs):
                raise ValueError(f"returns {len(out)} outputs, the contract names {len(contract.outputs)} "
                                 f"({', '.join(contract.output_names)})")
            for spec, t in zip(contract.outputs, out):
                refs[spec.name].append(t.detach().numpy())
    return {k: np.stack(v) for k, v in refs.items()}
