"""The float64 oracle: the source model run in float64 on the golden inputs (``export --oracle float64``).

Called in the source's worker, next to ``LoadedModel.reference``, for every golden set. What can run in
float64:

- a torch source (``LoadedModel.module`` a ``torch.nn.Module``): a deep copy of the module, ``.double()``,
  float inputs cast to float64 (integer inputs unchanged), run as the reference runs (one sample at a time);
- an ONNX file: every float32 initializer, Constant, Cast-to-float and graph input/output retyped to double,
  run on onnxruntime's CPU provider (many of its kernels have no double version: then no oracle, saying why);
- any other source (Keras, SavedModel): none.

Never an export failure: a model that fails in float64 (an op without a double kernel) gets no oracle, with
the reason, and is judged by the fixed fp32 tier. ``compute`` returns ``(outputs or None, why not)``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from deploytool.core.errors import short_error

KIND = "float64"


def oracle_of(loaded: Any) -> tuple[Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None, str]:
    """(inputs -> float64 outputs, "") for a source that can run in float64, else (None, why not)."""
    module = getattr(loaded, "module", None)
    if _is_torch_module(module):
        return _torch_oracle(loaded, module)
    path = getattr(loaded, "path", None)
    if module is None and path is not None and str(path).endswith(".onnx"):
        return _onnx_oracle(loaded, path)
    what = "a Keras" if module is not None else "this kind of"
    if path is not None and not str(path).endswith(".onnx"):
        what = "a SavedModel" if not str(path).endswith((".keras", ".h5")) else "a Keras"
    return None, f"no float64 oracle for {what} source (torch and ONNX sources only)"


def _is_torch_module(module: Any) -> bool:
    try:
        import torch
    except ImportError:  # not a torch worker
        return False
    return isinstance(module, torch.nn.Module)


def _torch_oracle(loaded: Any, module: Any) -> tuple[Callable | None, str]:
    from deploytool.sources._torch import reference_outputs

    try:
        double = copy.deepcopy(module).double()
    except Exception as e:  # noqa: BLE001 - a module that cannot be copied or cast: no oracle
        return None, f"no float64 oracle: the torch module cannot be copied to float64 ({short_error(e)})"
    contract = loaded.contract

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return reference_outputs(double, contract, _as_float64(inputs))
    return run, ""


def _onnx_oracle(loaded: Any, path: Any) -> tuple[Callable | None, str]:
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        for init in graph.initializer:
            if init.data_type == TensorProto.FLOAT:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
        for node in graph.node:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.DOUBLE
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64),
                                                            attr.t.name))
        for value in [*graph.input, *graph.output]:
            if value.type.tensor_type.elem_type == TensorProto.FLOAT:
                value.type.tensor_type.elem_type = TensorProto.DOUBLE
        del graph.value_info[:]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - no double kernel, a graph that does not retype: no oracle
        return None, f"no float64 oracle for this ONNX source: it does not run in double on onnxruntime " \
                     f"({short_error(e)})"
    names = loaded.contract.output_names

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = _as_float64(inputs)
        n = len(next(iter(feeds.values())))
        outs = [session.run(names, {k: v[i] for k, v in feeds.items()}) for i in range(n)]
        return {name: np.stack([np.asarray(o[j]) for o in outs]) for j, name in enumerate(names)}
    return run, ""


def _as_float64(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float inputs cast to float64 (the same values, exactly); integer and bool inputs unchanged."""
    return {k: np.ascontiguousarray(v.astype(np.float64)) if v.dtype.kind == "f" else v for k, v in inputs.items()}


def compute(loaded: Any, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            run: Callable | None = None) -> tuple[dict[str, np.ndarray] | None, str]:
    """The float64 outputs for one golden set, checked against the reference (same names and shapes, finite),
    or (None, why not). ``run``: the oracle from ``oracle_of`` (made once per source)."""
    if run is None:
        run, why = oracle_of(loaded)
        if run is None:
            return None, why
    try:
        outs = run(inputs)
    except Exception as e:  # noqa: BLE001 - an op without a double kernel: no oracle, never an export failure
        return None, f"no float64 oracle: the model fails in float64 ({short_error(e)})"
    return check(outs, reference)


def check(outs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray] | None, str]:
    """Float64 outputs usable as an oracle for ``reference``, or (None, why not)."""
    if sorted(outs) != sorted(reference):
        return None, f"no float64 oracle: the float64 model returns {sorted(outs)}, the reference {sorted(reference)}"
    kept: dict[str, np.ndarray] = {}
    for name, ref in reference.items():
        a = np.asarray(outs[name])
        if a.shape != ref.shape:
            return None, f"no float64 oracle: output {name!r} is {list(a.shape)} in float64, {list(ref.shape)} in " \
                         "the reference"
        if ref.dtype.kind != "f":  # an integer / bool output has no rounding to judge: kept as the reference's
            continue
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            return None, f"no float64 oracle: output {name!r} is NaN/Inf in float64"
        kept[name] = a
    if not kept:
        return None, "no float64 oracle: the model has no float output"
    return kept, ""


class Writer:
    """Computes the float64 oracle of each golden set in the source's worker (``running/worker.write_golden``)
    and writes them all, or none when one set cannot have one (``result``: what the coordinator records)."""

    def __init__(self, loaded: Any) -> None:
        import time

        self.loaded, self._clock = loaded, time.perf_counter
        t0 = self._clock()
        self.run, self.why = oracle_of(loaded)
        self.seconds = self._clock() - t0
        self.pending: list[tuple[str, Any, dict[str, np.ndarray]]] = []

    def add(self, set_name: str, path: Any, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
        if self.run is None:
            return
        t0 = self._clock()
        outs, why = compute(self.loaded, inputs, reference, self.run)
        self.seconds += self._clock() - t0
        if outs is None:
            self.run, self.why, self.pending = None, f"{why} (on the {set_name} golden set)", []
            return
        self.pending.append((set_name, path, outs))

    def result(self) -> dict:
        """Writes the oracles (float64 .npz) when every set has one: {"kind", "sets": {set: written},
        "why_not": "" or why none, "seconds": the time the float64 runs took}."""
        from deploytool.core import npz

        written = {}
        for set_name, path, outs in self.pending if self.run is not None else []:
            npz.save(path, outs)
            written[set_name] = True
        return {"kind": KIND, "sets": written, "why_not": self.why, "seconds": round(self.seconds, 3)}
