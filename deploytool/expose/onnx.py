"""ONNX on onnxruntime: every node output made a graph output on a copy of the model (what
Polygraphy's ``--onnx-outputs mark all`` does)."""
from __future__ import annotations

import math

from deploytool.checking.localise import Limits, Node
from deploytool.expose import Exposed, Exposer, select

_FLOAT = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def expose(path, feeds, limits: Limits) -> Exposed:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - sizes are then unknown, not wrong
        inferred = model
    types = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    nodes = [Node(n.name or f"{n.op_type}_{i}", n.op_type, list(n.input), list(n.output))
             for i, n in enumerate(model.graph.node)]
    inputs = [i.name for i in model.graph.input]

    def nbytes(t):
        tt = types.get(t)
        if tt is None or not tt.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        return 4 * math.prod(dims)

    chosen, total = select(nodes, inputs, {t: nbytes(t) for n in nodes for t in n.outputs}, limits,
                           lambda t: bool(t) and (t not in types or types[t].elem_type in _FLOAT or
                                              types[t].elem_type == 0))  # "": an optional output left out
    have = {o.name for o in model.graph.output}
    for t in chosen:
        if t not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    values = sess.run(chosen, feeds)
    tensors = {t: v for t, v in zip(chosen, values) if getattr(v, "dtype", None) is not None and v.dtype.kind == "f"}
    return Exposed(nodes, inputs, tensors, total, len(chosen) < total)


EXPOSER = Exposer("onnxruntime", expose)
