"""Loads an ``.onnx`` file as the source, inside an onnx worker: the contract is read from the
graph, golden inputs are seeded, and onnxruntime computes the reference outputs.

Dynamic dims come from the graph's dim_params, named as ``contract.spec_from_graph`` says (an
unnamed dynamic first dim is the batch). An integer input is drawn from ``--input-range NAME:LOW:HIGH``,
else from the rows of the table a ``Gather`` indexes with it (an embedding), else from [0, 2) only
(weak coverage, ``checking/golden.py``).

A file may keep its tensors in external data files beside it (``torch.onnx.export`` writes
``model.onnx.data`` by default): ``onnx_external_data`` names them, read without loading any data, and
refuses a location outside the file's directory or a file that is missing, before anything loads it
(``store/bundle.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.core.contract import INT_DTYPES, Contract, generate_inputs, spec_from_graph
from deploytool.core.errors import ModelError, short_error
from deploytool.measuring.flops import ONNX_METHOD, onnx_flops
from deploytool.sources import LoadedModel, SourceKind, SourceRef, graph_contract
from deploytool.store.bundle import onnx_external_data


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

    def spec(value) -> dict:
        if not value.type.HasField("tensor_type"):
            raise ModelError(f"model file {path}: {value.name!r} is not a tensor (sequences/maps are not supported)")
        tt = value.type.tensor_type
        shape = [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        return spec_from_graph(value.name, shape, helper.tensor_dtype_to_np_dtype(tt.elem_type).name, dims,
                               image_layout="NCHW")

    inputs = [spec(v) for v in graph.input if v.name not in inits]
    _table_ranges(graph, inputs, ranges or {})
    return graph_contract(f"model file {path}", inputs, [spec(v) for v in graph.output], dims, ranges)


def _table_ranges(graph, inputs: list[dict], declared: dict) -> None:
    """An integer input that indexes rows of a constant table (``Gather`` at axis 0 on an initializer, directly
    or through a ``Cast``: an embedding) takes the table's rows as its range, unless one is declared."""
    from onnx import helper

    rows = {i.name: int(i.dims[0]) for i in graph.initializer if len(i.dims)}
    wanted = {i["name"] for i in inputs if i["dtype"] in INT_DTYPES and i["name"] not in declared}
    fed = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast" and n.input and n.input[0] in wanted}
    fed.update({w: w for w in wanted})
    found: dict[str, tuple[int, str]] = {}
    for node in graph.node:
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if node.op_type != "Gather" or len(node.input) != 2 or axis != 0 or node.input[0] not in rows:
            continue
        name, size = fed.get(node.input[1]), rows[node.input[0]]
        if name is not None and (name not in found or size < found[name][0]):
            found[name] = (size, f"table {node.input[0]!r} ({size} rows)")
    for i in inputs:
        if i["name"] in found:
            i["range"], i["range_from"] = [0, found[i["name"]][0]], found[i["name"]][1]


def load(source: dict) -> LoadedModel:
    import onnx
    import onnxruntime as ort

    path = Path(source["ref"])
    contract = read_contract(path, source.get("input_ranges"))
    try:
        onnx_external_data(path)
    except ValueError as e:
        raise ModelError(f"model file {path}: {e}") from None
    try:
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model file {path}: {short_error(e)}") from None

    def golden(n: int, seed: int, dims: dict) -> dict[str, np.ndarray]:
        return generate_inputs(contract, n, seed, dims)

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        outs = [session.run(contract.output_names, {k: v[i] for k, v in inputs.items()}) for i in range(n)]
        return {name: np.stack([o[j] for o in outs]) for j, name in enumerate(contract.output_names)}

    return LoadedModel(module=None, contract=contract, example_inputs=(), alt_inputs=(), golden=golden,
                       description=f"ONNX file {path.name}", reference=reference, path=path,
                       versions={"onnxruntime": ort.__version__, "onnx": onnx.__version__},
                       flops=lambda inputs: (onnx_flops(onnx.load(str(path)), {k: v[0] for k, v in inputs.items()}),
                                             ONNX_METHOD))


def claim(model: str) -> SourceRef | None:
    if not model.endswith(".onnx"):
        return None
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {model}: no such file")
    return SourceRef(kind="onnx", ref=str(path.resolve()), name=path.stem, framework="onnx",
                     details={"file": str(path.resolve())})


SOURCE = SourceKind(name="onnx", framework="onnx", description="an .onnx file (ONNX is the source)", order=30,
                    claim=claim, load=load, reference_runtime="onnxruntime", is_format="onnx")
