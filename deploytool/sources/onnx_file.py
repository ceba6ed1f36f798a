"""Loads an ``.onnx`` file as the source, inside an onnx worker: the contract is read from the
graph, golden inputs are seeded, and onnxruntime computes the reference outputs.

Dynamic dims come from the graph's dim_params (an unnamed dynamic dim is named
``<input>_dim<axis>``). A dynamic first dim is the batch (golden samples use 1, the second
shape 3); other dynamic dims use 16 and, for the second shape, 24. Integer inputs are drawn from
[0, 2) unless ``--input-range NAME:LOW:HIGH`` gives their range.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.contract import Contract, generate_inputs
from deploytool.errors import ModelError, short_error
from deploytool.sources.torch_module import LoadedModel


def read_contract(path: Path, ranges: dict | None = None) -> Contract:
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a broken model file
        raise ModelError(f"model file {path}: not a readable ONNX model ({short_error(e)})") from None
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    dims: dict[str, dict] = {}

    def spec(value, axis0_is_batch: bool) -> dict:
        tt = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise ModelError(f"model file {path}: {value.name!r} is not a tensor (sequences/maps are not supported)")
        shape = []
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
                continue
            name = d.dim_param or f"{value.name}_dim{axis}"
            if name not in dims:
                batch = axis == 0 and axis0_is_batch
                dims[name] = {"example": 2 if batch else 16, "alt": 3 if batch else 24, "min": 1}
            shape.append(name)
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        out = {"name": value.name, "shape": shape, "dtype": dtype}
        if len(shape) == 4 and dtype.startswith("float"):
            out["layout"] = "NCHW"
        return out

    try:
        inputs = [spec(v, True) for v in graph.input if v.name not in inits]
        unknown = sorted(set(ranges or {}) - {i["name"] for i in inputs})
        if unknown:
            raise ModelError(f"model file {path}: --input-range names unknown inputs {unknown} "
                             f"(the graph has {[i['name'] for i in inputs]})")
        for i in inputs:
            if i["name"] in (ranges or {}):
                i["range"] = ranges[i["name"]]
        outputs = [spec(v, True) for v in graph.output]
        for o in outputs:
            o.pop("layout", None)
            if len(o["shape"]) == 2:
                o["kind"] = "classifier"
        return Contract.from_dict({"inputs": inputs, "outputs": outputs, "dims": dims})
    except ValueError as e:
        raise ModelError(f"model file {path}: {e}") from None


def load(source: dict) -> LoadedModel:
    import onnx
    import onnxruntime as ort

    path = Path(source["ref"])
    contract = read_contract(path, source.get("input_ranges"))
    try:
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model file {path}: {short_error(e)}") from None

    def golden(n: int, seed: int) -> dict[str, np.ndarray]:
        return generate_inputs(contract, n, seed, contract.dim_sizes("example", batch_one=True))

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        outs = [session.run(contract.output_names, {k: v[i] for k, v in inputs.items()}) for i in range(n)]
        return {name: np.stack([o[j] for o in outs]) for j, name in enumerate(contract.output_names)}

    return LoadedModel(module=None, contract=contract, example_inputs=(), alt_inputs=(), golden=golden,
                       description=f"ONNX file {path.name}", reference=reference, path=path,
                       versions={"onnxruntime": ort.__version__, "onnx": onnx.__version__})
