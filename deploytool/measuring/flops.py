"""FLOPs per sample of a source model, counted at export (in the source's worker).

One FLOP is one multiply or one add (a multiply-add is 2), as GEMM peaks are quoted. Torch
modules are counted by running them once under ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions, attention: the ops that dominate); ONNX graphs by their Conv, ConvTranspose,
Gemm and MatMul nodes with shapes from ``onnx.shape_inference`` at the given dims. Elementwise
ops are not counted by either, so the figure is a floor on the work (and achieved GFLOP/s is a
floor too). Frameworks are imported inside the functions (callers are workers).
"""
from __future__ import annotations

from math import prod

import numpy as np

TORCH_METHOD = "torch.utils.flop_counter.FlopCounterMode on one sample (matmul, conv, attention; 2 per MAC)"
ONNX_METHOD = "ONNX graph: Conv, ConvTranspose, Gemm, MatMul nodes at the sample's shapes (2 per MAC)"


def torch_flops(module, sample: tuple) -> float:
    """FLOPs of one forward pass of ``module`` on ``sample`` (a tuple of tensors)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*sample)
    return float(counter.get_total_flops())


def onnx_flops(model, feeds: dict[str, np.ndarray]) -> float:
    """FLOPs of ``model`` (an onnx.ModelProto) on inputs shaped like ``feeds``' arrays."""
    import onnx
    from onnx import shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())  # shapes fixed on a copy
    graph = model.graph
    for value in graph.input:
        if value.name in feeds:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, feeds[value.name].shape):
                d.ClearField("dim_param")
                d.dim_value = int(size)
    inferred = shape_inference.infer_shapes(model, data_prop=True).graph
    shapes: dict[str, list[int]] = {}
    for v in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0.0
    for node in inferred.node:
        ins = [shapes.get(n) for n in node.input]
        out = shapes.get(node.output[0]) if node.output else None
        if out is None or -1 in out or any(s is None for s in ins[:2]):
            continue
        if node.op_type in ("Conv", "ConvTranspose") and ins[1] is not None:
            w = ins[1]  # [M, C/group, k...] (Conv) or [C, M/group, k...] (ConvTranspose)
            spatial = prod(w[2:])
            if node.op_type == "Conv":
                total += 2.0 * prod(out) * w[1] * spatial
            elif ins[0] is not None:
                total += 2.0 * prod(ins[0]) * w[1] * spatial
        elif node.op_type == "Gemm" and ins[0] is not None:
            attrs = {a.name: a.i for a in node.attribute}
            k = ins[0][0] if attrs.get("transA") else ins[0][-1]
            total += 2.0 * prod(out) * k
        elif node.op_type == "MatMul" and ins[0] is not None:
            total += 2.0 * prod(out) * ins[0][-1]
    return total
