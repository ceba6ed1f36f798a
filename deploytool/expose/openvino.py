"""ONNX files and OpenVINO IR on OpenVINO: every op's output added as a model output
(``ov.Model.add_outputs``) before compiling, at f32 inference precision as the runtime runs it.
The ONNX frontend keeps ONNX tensor names on the ops it converts; an output without a name gets
``<op name>:<port>``."""
from __future__ import annotations

import math
from pathlib import Path

from deploytool.checking.localise import Limits, Node
from deploytool.expose import Exposed, Exposer, select
from deploytool.runtimes.openvino import model_file  # the runtime's reading of an artifact path

_SKIP = {"Parameter", "Result", "Constant"}
_FLOAT = {"f32", "f16", "bf16", "f64"}


def _name(output) -> str:
    names = output.get_names()
    if names:
        return output.get_any_name()
    name = f"{output.get_node().get_friendly_name()}:{output.get_index()}"
    output.add_names({name})
    return name


def expose(path, feeds, limits: Limits) -> Exposed:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_file(Path(path))))
    inputs = [_name(p) for p in model.inputs]
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in _SKIP]
    nodes = [Node(op.get_friendly_name(), op.get_type_name(),
                  [_name(i.get_source_output()) for i in op.inputs()], [_name(o) for o in op.outputs()])
             for op in ops]
    ports = {_name(o): o for op in ops for o in op.outputs()}

    def nbytes(output) -> int | None:
        shape = output.get_partial_shape()
        if shape.rank.is_dynamic:
            return None
        dims = [d.get_length() if d.is_static else 1 for d in shape]
        return output.get_element_type().size * math.prod(dims)

    chosen, total = select(nodes, inputs, {t: nbytes(o) for t, o in ports.items()}, limits,
                           lambda t: t in ports and ports[t].get_element_type().get_type_name() in _FLOAT)
    if chosen:
        model.add_outputs([ports[t] for t in chosen])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(feeds)
    by_name = {n: results[o] for o in compiled.outputs for n in o.get_names()}
    tensors = {t: by_name[t].copy() for t in chosen if t in by_name}
    return Exposed(nodes, inputs, tensors, total, len(chosen) < total)


EXPOSER = Exposer("openvino", expose)


EXPOSER = Exposer("openvino", expose)
