"""Test model (an ONNX file): a fault only one runtime sees. OpenVINO 2026.4.1 ignores the
``antialias`` attribute of ONNX ``Resize`` (opset 18); onnxruntime 1.32 honours it.

The graph: ``x`` [batch, 3, 16, 16] -> Mul 2 (``node_scale``) -> Resize linear, half_pixel, scales
[1, 1, 0.5, 0.5], ``antialias=1`` (``node_downsample``) -> Add 0.25 (``node_shift``) -> ``y``
[batch, 3, 8, 8].

The spec (https://onnx.ai/onnx/operators/onnx__Resize.html, Resize-18): "antialias: If set to 1,
"linear" and "cubic" interpolation modes will use an antialiasing filter when downscaling.
Antialiasing is achieved by stretching the resampling filter by a factor max(1, 1 / scale)". At
scale 0.5 each output is a 4-tap triangle filter (weights 1/8, 3/8, 3/8, 1/8 per axis) instead of
the 2-tap mean of plain linear interpolation. ``reference`` below is that definition in numpy.

Measured on uniform [-1, 1) inputs: onnxruntime matches ``reference`` and
``onnx.reference.ReferenceEvaluator`` within 1e-6; OpenVINO (CPU, f32 inference precision) returns
exactly the antialias=0 result, off by up to ~0.8 on every sample (mean ~0.2). Upstream:
openvinotoolkit/openvino#35893 ("OpenVINO CPU ignores antialias attribute for ONNX Resize"). So with
this file as an ONNX source (references from onnxruntime), ``onnx@onnxruntime`` passes and
``onnx@openvino`` (and the ``openvino`` IR, converted from it) fails, first diverging at
``node_downsample``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SCALE = 0.5
SHAPE = (3, 16, 16)  # per sample, after the dynamic batch dim
OPSET = 18  # antialias exists from Resize-18


def build(path: str | Path) -> Path:
    """Write the ONNX model to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "k"),
             numpy_helper.from_array(np.array([1, 1, SCALE, SCALE], np.float32), "scales"),
             numpy_helper.from_array(np.array(0.25, np.float32), "bias")]
    nodes = [helper.make_node("Mul", ["x", "k"], ["scaled"], name="node_scale"),
             helper.make_node("Resize", ["scaled", "", "scales"], ["small"], name="node_downsample", mode="linear",
                              coordinate_transformation_mode="half_pixel", antialias=1),
             helper.make_node("Add", ["small", "bias"], ["y"], name="node_shift")]
    out_hw = [int(d * SCALE) for d in SHAPE[1:]]
    graph = helper.make_graph(
        nodes, "runtime_split", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SHAPE[0], *out_hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _antialias_linear_1d(a: np.ndarray, axis: int, scale: float) -> np.ndarray:
    """Resize-18 linear, half_pixel, antialias=1, exclude_outside=0 along one axis: the triangle
    filter stretched by 1/scale, normalised; taps outside the input take the edge value (what
    onnx.reference does)."""
    n_in = a.shape[axis]
    n_out = int(np.floor(n_in * scale))
    support = max(1.0, 1.0 / scale)
    out = []
    for i in range(n_out):
        centre = (i + 0.5) / scale - 0.5  # half_pixel
        taps = np.arange(int(np.floor(centre - support)), int(np.ceil(centre + support)) + 1)
        w = np.clip(1.0 - np.abs(taps - centre) / support, 0.0, None)
        w = w / w.sum()
        picked = np.take(a, np.clip(taps, 0, n_in - 1), axis=axis)
        out.append(np.tensordot(picked, w, axes=([axis], [0])))
    return np.stack(out, axis=axis)


def reference(x: np.ndarray) -> np.ndarray:
    """The model per the ONNX spec, in float64 numpy: ``x`` [batch, 3, 16, 16] -> ``y`` [batch, 3, 8, 8]."""
    a = 2.0 * x.astype(np.float64)
    a = _antialias_linear_1d(_antialias_linear_1d(a, 2, SCALE), 3, SCALE)
    return a + 0.25
