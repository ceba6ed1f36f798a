"""Loads a torch source inside a torch worker (shared by the ``zoo``, ``file`` and ``factory``
kinds): a reference-zoo module, a .py file written like one, or a factory (``file.py:factory`` /
``package.module:factory``).

A zoo module defines INPUTS, OUTPUTS, DIMS (the contract), ``build()`` returning an nn.Module,
``example_inputs()``, and optionally ``golden_inputs(n, seed)`` for real data. A factory returns
an nn.Module, or a (module, example_inputs) pair; its contract comes from --input specs or is
inferred from the example inputs.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import numpy as np

from deploytool.core.contract import FLOAT_DTYPES, INT_DTYPES, Contract, RangeError, generate_inputs, observed_range
from deploytool.core.errors import ModelError, short_error
from deploytool.measuring.flops import TORCH_METHOD, torch_flops
from deploytool.sources import LoadedModel, _pycheck
from deploytool.sources._pycheck import ZOO_ATTRS


def _import_module(target: str):
    """``package.module`` of a factory. Workers run with ``python -P`` (the working directory is not first on
    sys.path, so nothing there shadows what they import); the user's own package in the working directory is
    still found, after every installed one."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name != target.split(".")[0] or os.getcwd() in sys.path:
            raise
    sys.path.append(os.getcwd())
    return importlib.import_module(target)


def _import(source: dict):
    name = source["name"]
    try:
        if source["kind"] == "zoo":
            return importlib.import_module(f"deploytool.models.{source['ref']}")
        target = source["ref"].rsplit(":", 1)[0] if source["kind"] == "factory" else source["ref"]
        if target.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"deploytool_user_model_{name}", target)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {target}")
            mod = importlib.util.module_from_spec(spec)
            # Registered before it runs (the importlib recipe): torch.jit.script / @torch.jit.interface and
            # dataclasses look a class's module up in sys.modules to read its source.
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            return mod
        return _import_module(target)
    except Exception as e:
        raise ModelError(f"model {name!r}: importing {source.get('file', name)} failed: "
                         f"{short_error(e)}") from e


def load(source: dict) -> LoadedModel:
    import torch

    name = source["name"]
    mod = _import(source)
    examples_from_factory = None
    if source["kind"] == "factory":
        attr = source["ref"].rsplit(":", 1)[1]
        factory = getattr(mod, attr, None)
        if factory is None:
            raise ModelError(_pycheck.factory_missing(source["ref"].rsplit(":", 1)[0], attr, _own_callables(mod),
                                                      all(a in vars(mod) for a in ZOO_ATTRS)))
        if not callable(factory):
            raise ModelError(f"model {name!r}: {attr!r} is a {type(factory).__name__}, not a callable factory")
        build, description = factory, f"{source['ref']}"
    else:
        missing = [attr for attr in ZOO_ATTRS if not hasattr(mod, attr)]
        if missing:
            raise ModelError(_pycheck.zoo_missing(source.get("file", name), missing, _own_callables(mod), dir(mod)))
        if not callable(mod.build):
            raise ModelError(f"model {name!r}: build is not callable")
        build, description = mod.build, getattr(mod, "DESCRIPTION", "")
    try:
        built = build()
    except Exception as e:
        raise ModelError(f"model {name!r}: factory {getattr(build, '__name__', 'build')}() raised "
                         f"{short_error(e)}") from e
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        built, examples_from_factory = built[0], _as_tuple(built[1])
    if not isinstance(built, torch.nn.Module):
        raise ModelError(f"model {name!r}: the factory returned {type(built).__name__}, not a torch.nn.Module "
                         "(or a (module, example_inputs) pair)")
    module = built
    if source.get("weights"):
        _load_weights(name, module, source["weights"])
    module.eval()
    try:
        if source["kind"] == "factory":
            contract = _factory_contract(name, module, source, examples_from_factory)
        else:
            contract = Contract.from_dict({"inputs": mod.INPUTS, "outputs": mod.OUTPUTS,
                                           "dims": getattr(mod, "DIMS", {})})
    except RangeError:  # the user's --input-range: a usage error (exit 2), not the model's
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"model {name!r}: bad I/O declaration: {e}") from e
    if examples_from_factory is not None:
        example = examples_from_factory
    elif hasattr(mod, "example_inputs") and source["kind"] != "factory":
        example = _as_tuple(mod.example_inputs())
    else:
        example = _tensors(generate_inputs(contract, 1, 0, contract.dim_sizes("example")), contract)
    _check_example(name, contract, example)
    # a reference-zoo model declares its ranges; a user's example inputs tell theirs where nothing is declared
    user_example = examples_from_factory is not None or (source["kind"] == "file" and hasattr(mod, "example_inputs"))
    _read_ranges(module, contract, example, user_example)
    alt_sizes = contract.dim_sizes("alt")
    alt = _tensors(generate_inputs(contract, 1, 1, alt_sizes), contract) if contract.dims and \
        alt_sizes != contract.dim_sizes("example") else ()
    golden_fn = getattr(mod, "golden_inputs", None) if source["kind"] != "factory" else None

    def golden(n: int, seed: int, dims: dict) -> dict[str, np.ndarray]:
        if golden_fn is not None:  # the module's own data (the digits model's are real held-out digits)
            return {k: np.ascontiguousarray(v) for k, v in golden_fn(n, seed).items()}
        return generate_inputs(contract, n, seed, dims)

    calib_fn = getattr(mod, "calibration_inputs", None) if source["kind"] != "factory" else None
    labelled_fn = getattr(mod, "labelled_data", None) if source["kind"] != "factory" else None

    def calibration(n: int, seed: int, dims: dict) -> dict[str, np.ndarray]:
        if calib_fn is not None:  # the module's own calibration data (digits: training digits)
            return {k: np.ascontiguousarray(v) for k, v in calib_fn(n, seed).items()}
        return generate_inputs(contract, n, seed, dims)  # a synthetic zoo model: its own generator, another seed

    def labelled():
        inputs, labels = labelled_fn()  # type: ignore[misc]  # only called when the module defines it
        return {k: np.ascontiguousarray(v) for k, v in inputs.items()}, np.asarray(labels), None

    # Calibration only from the module's own data, or from a reference-zoo model's own (synthetic by
    # design) generator: a user's model is never calibrated on noise it was not made for.
    has_calibration = calib_fn is not None or source["kind"] == "zoo"
    return LoadedModel(module, contract, example, alt, golden, description,
                       reference=lambda inputs: reference_outputs(module, contract, inputs),
                       versions={"torch": torch.__version__}, calibration=calibration if has_calibration else None,
                       labelled=labelled if labelled_fn is not None else None,
                       flops=lambda inputs: (torch_flops(module, _tensors(inputs, contract)), TORCH_METHOD),
                       golden_data=golden_fn is not None)


def _load_weights(name: str, module, path: str) -> None:
    """A state dict, loaded with weights_only=True only: a pickle that carries code is refused."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"model {name!r}: --weights {path}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
        raise ModelError(f"model {name!r}: --weights {path}: refused: not a plain state dict (loading with "
                         f"weights_only=True failed, so it would need to run code from the pickle: "
                         f"{str(e).splitlines()[0].split('. ')[0][:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"model {name!r}: --weights {path}: holds a {type(state).__name__}, not a state dict")
    result = module.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {', '.join(result.missing_keys[:10])}"
                        + (f" (+{len(result.missing_keys) - 10} more)" if len(result.missing_keys) > 10 else ""))
    if result.unexpected_keys:
        problems.append(f"unexpected keys {', '.join(result.unexpected_keys[:10])}"
                        + (f" (+{len(result.unexpected_keys) - 10} more)" if len(result.unexpected_keys) > 10 else ""))
    if problems:
        raise ModelError(f"model {name!r}: --weights {path} does not fit the module: {'; '.join(problems)}")


def _factory_contract(name: str, module, source: dict, examples: tuple | None) -> Contract:
    """Inputs from --input specs, or inferred from the factory's example inputs (names from
    forward()'s parameters); outputs from one forward pass (named output_0..N)."""
    import inspect

    import torch

    ranges = source.get("input_ranges", {})
    dims: dict[str, dict] = {}
    static: dict[str, list[int]] = {}
    if source.get("inputs"):
        inputs = [dict(spec) for spec in source["inputs"]]
    elif examples is not None:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params][:len(examples)]
        names += [f"input_{i}" for i in range(len(names), len(examples))]
        inputs = [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                  for n, t in zip(names, examples)]
        batch_ok, free = _free_axes(module, examples)
        for spec, axes in zip(inputs, free):
            if batch_ok:
                spec["shape"][0] = "batch"
            if axes:  # the model takes other sizes there, but the example fixed them
                static[spec["name"]] = axes
    else:
        raise ModelError(f"model {name!r}: the factory returned no example inputs; declare them with "
                         "--input NAME:SHAPE:DTYPE (e.g. --input 'ids:batch x seq:int64')")
    for spec in inputs:
        if spec["name"] in ranges:
            spec["range"] = ranges[spec["name"]]
        for axis, d in enumerate(spec["shape"]):
            if isinstance(d, str) and d not in dims:
                size = None
                if examples is not None:
                    idx = [s["name"] for s in inputs].index(spec["name"])
                    size = int(examples[idx].shape[axis]) if idx < len(examples) else None
                batch_like = axis == 0
                example = size if size and size >= 2 else (2 if batch_like else 16)
                dims[d] = {"example": example, "alt": example + 1 if batch_like else example + 8, "min": 1}
        if len(spec["shape"]) == 4 and spec["dtype"].startswith("float"):
            spec.setdefault("layout", "NCHW")
    unknown = [r for r in ranges if r not in [s["name"] for s in inputs]]
    if unknown:
        raise ModelError(f"model {name!r}: --input-range names unknown inputs {unknown}")
    contract = Contract.from_dict({"inputs": inputs, "outputs": [{"name": "probe", "shape": [1], "dtype": "float32"}],
                                   "dims": dims})
    probe = examples if examples is not None else \
        _tensors(generate_inputs(contract, 1, 0, contract.dim_sizes("example")), contract)
    try:
        with torch.no_grad():
            out = module(*probe)
    except Exception as e:
        raise ModelError(f"model {name!r}: forward() on the example inputs raised "
                         f"{short_error(e)}") from e
    out = out if isinstance(out, (tuple, list)) else (out,)
    batch = next((d for d in inputs[0]["shape"][:1] if isinstance(d, str)), None)
    batch_size = int(probe[0].shape[0]) if batch and probe[0].dim() else None  # the probe's own batch
    outputs = []
    for i, t in enumerate(out):
        if not isinstance(t, torch.Tensor):
            raise ModelError(f"model {name!r}: output {i} is a {type(t).__name__}; only tensors (or tuples of "
                             "tensors) can be exported")
        shape = list(t.shape)
        if batch and shape and shape[0] == batch_size:
            shape[0] = batch
        o = {"name": f"output_{i}", "shape": shape, "dtype": str(t.dtype).replace("torch.", "")}
        if t.dim() == 2 and t.is_floating_point():
            o["kind"] = "classifier"
        outputs.append(o)
    return Contract.from_dict({"inputs": inputs, "outputs": outputs, "dims": dims, "example_static": static})


def _forward_ok(module, args: tuple, batch: int | None = None) -> bool:
    """Whether forward() runs on ``args`` (and, given ``batch``, every output has that size at axis 0)."""
    import torch

    try:
        with torch.no_grad():
            out = module(*args)
    except Exception:  # noqa: BLE001 - the model refusing another size is the answer, not an error
        return False
    out = out if isinstance(out, (tuple, list)) else (out,)
    return batch is None or all(isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == batch for t in out)


def _grown(t, axis: int):
    """``t`` one larger at ``axis`` (its first slice repeated: integer ids stay valid)."""
    import torch

    return torch.cat([t, t.narrow(axis, 0, 1)], dim=axis)


def _free_axes(module, examples: tuple) -> tuple[bool, list[list[int]]]:
    """What a factory's example inputs fix that the model would take at other sizes: (whether axis 0 is a batch
    every input shares, which outputs follow; per input, the other axes where forward() also runs one larger,
    and axis 0 when it is no batch but takes another size)."""
    sizes = {int(t.shape[0]) if t.dim() else None for t in examples}
    n = next(iter(sizes)) if len(sizes) == 1 else None
    batch_ok = n is not None and n > 0 and _forward_ok(module, examples, n) and \
        _forward_ok(module, tuple(_grown(t, 0) for t in examples), n + 1)
    free = []
    for i, t in enumerate(examples):
        axes = [a for a in range(1 if batch_ok else 0, t.dim()) if t.shape[a] and
                _forward_ok(module, (*examples[:i], _grown(t, a), *examples[i + 1:]))]
        free.append(axes)
    return batch_ok, free


def _read_ranges(module, contract: Contract, example: tuple, user_example: bool) -> None:
    """Ranges for inputs that declare none: an integer input's from the embedding it feeds (its rows), else
    (``user_example``: the example inputs are the user's) an input's from the values its example spans."""
    missing = [i for i, s in enumerate(contract.inputs) if s.range is None and s.dtype in INT_DTYPES | FLOAT_DTYPES]
    tables = _embedding_rows(module, example) if any(contract.inputs[i].dtype in INT_DTYPES for i in missing) else {}
    for i in missing:
        spec = contract.inputs[i]
        if i in tables and spec.dtype in INT_DTYPES:
            rows, where = tables[i]
            spec.range, spec.range_from = [0, rows], where
        elif user_example and (seen := observed_range(example[i].numpy())) is not None:
            spec.range, spec.range_from = seen, "the example inputs"


def _embedding_rows(module, example: tuple) -> dict[int, tuple[int, str]]:
    """{input index: (rows, which embedding)} for inputs fed as they are to an nn.Embedding / EmbeddingBag
    (found with forward pre-hooks during one forward pass on ``example``; the smallest table where several)."""
    import torch

    found: dict[int, tuple[int, str]] = {}

    def hook(mod_name: str, m):
        def pre(_module, args):
            x = args[0] if args else None
            for i, t in enumerate(example):
                same = isinstance(x, torch.Tensor) and (x is t or (x.data_ptr() == t.data_ptr() and x.shape == t.shape
                                                                   and x.dtype == t.dtype))
                if same and (i not in found or m.num_embeddings < found[i][0]):
                    found[i] = (int(m.num_embeddings), f"embedding {mod_name!r} ({m.num_embeddings} rows)")
        return pre

    handles = [m.register_forward_pre_hook(hook(n, m)) for n, m in module.named_modules()
               if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]
    try:
        _forward_ok(module, example)
    finally:
        for h in handles:
            h.remove()
    return found


def _own_callables(mod) -> list[str]:
    """The public functions and classes a user's module defines itself (not those it imports): what could be
    its factory."""
    import inspect

    return [n for n, v in vars(mod).items() if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
            and getattr(v, "__module__", None) == mod.__name__]


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
