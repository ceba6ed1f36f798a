"""Test model: overflows fp16 only on edge-value inputs (input families, docs/families.md).

64 inputs in [-4, 4); four weighted sums of them (all weights positive, U[1, 1.5]), squared. On inputs drawn in the
range the terms mostly cancel: a sum stays within about +-80 and its square below ~7e3. With every input at one of
the range's ends a sum is about +-320 and its square ~1e5, beyond fp16's largest finite value (65504). An artifact
that computes in fp16 (tflite_fp16_arith on an ARM CPU with fp16 arithmetic: validate --emulate aarch64:cortex-a55)
overflows to Inf there and matches on every seeded input; computing in fp32, every family passes.
"""
import torch
from torch import nn

N, OUT, LOW, HIGH = 64, 4, -4.0, 4.0
INPUTS = [{"name": "x", "shape": ["batch", N], "dtype": "float32", "range": [LOW, HIGH]}]
OUTPUTS = [{"name": "y", "shape": ["batch", OUT], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 4}}


class SquaredSums(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N, OUT, bias=False)

    def forward(self, x):
        s = self.fc(x)
        return s * s


def build():
    torch.manual_seed(0)
    m = SquaredSums()
    with torch.no_grad():
        m.fc.weight.copy_(torch.rand(OUT, N) * 0.5 + 1.0)  # all positive: each output sums the inputs
    return m.eval()
