"""Test models whose input and output names are not identifiers, as ONNX files from other frameworks name them
(``input/ids:0``, ``1st input``), plus ``x.y`` beside ``x_y`` (one spelling once ``.`` is replaced).

As a zoo-style module (``--model tests/models/odd_names.py``) it is a torch source: INPUTS/OUTPUTS name the
tensors (no ``:`` in a torch input name: ``--input`` splits on it). ``write_onnx(path)`` writes the ONNX-file source,
the realistic case, with ``:`` in names too. ``calibration(n)`` is calibration data named as either source.
Both: out = a @ W1 + b @ W2 + c + d (logits, [batch, 3]) and its softmax (probs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# torch source: '/', '.', a space and a leading digit; 'x.y' and 'x_y' meet in TensorFlow's spelling
TORCH_INPUTS = ["input/ids", "1st input", "x.y", "x_y"]
TORCH_OUTPUTS = ["out/logits.0", "2 probs"]
# ONNX source: ':' too
ONNX_INPUTS = ["input/ids:0", "1st input", "x.y", "x_y"]
ONNX_OUTPUTS = ["out/logits:0", "2 probs"]
SIZES = [4, 2, 3, 3]  # per input, after the dynamic batch dim
DESCRIPTION = "inputs and outputs named with '/', '.', a space and a leading digit"


def _weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        w1, w2 = _weights()
        self.w1, self.w2 = nn.Parameter(torch.from_numpy(w1)), nn.Parameter(torch.from_numpy(w2))

    def forward(self, a, b, c, d):
        logits = a @ self.w1 + b @ self.w2 + c + d
        return logits, torch.softmax(logits, dim=-1)


def _specs(names: list[str], sizes: list[int]) -> list[dict]:
    return [{"name": n, "shape": ["batch", s], "dtype": "float32"} for n, s in zip(names, sizes)]


INPUTS = _specs(TORCH_INPUTS, SIZES)
OUTPUTS = _specs(TORCH_OUTPUTS, [3, 3])
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1}}


def build():
    return Model().eval()


def write_onnx(path) -> None:
    """The same model as an ONNX file (opset 13) named with ONNX_INPUTS / ONNX_OUTPUTS."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, w2 = _weights()
    a, b, c, d = ONNX_INPUTS
    logits, probs = ONNX_OUTPUTS
    nodes = [helper.make_node("MatMul", [a, "W1"], ["ab"]), helper.make_node("MatMul", [b, "W2"], ["bb"]),
             helper.make_node("Add", ["ab", "bb"], ["s1"]), helper.make_node("Add", ["s1", c], ["s2"]),
             helper.make_node("Add", ["s2", d], [logits]), helper.make_node("Softmax", [logits], [probs], axis=-1)]
    graph = helper.make_graph(
        nodes, "odd_names",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", s]) for n, s in zip(ONNX_INPUTS, SIZES)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ONNX_OUTPUTS],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def calibration(names: list[str], n: int = 32) -> dict[str, np.ndarray]:
    """``n`` rows per input (as ``--calib-data`` takes them), seeded."""
    rng = np.random.default_rng(1)
    return {name: rng.uniform(-1, 1, (n, s)).astype(np.float32) for name, s in zip(names, SIZES)}
