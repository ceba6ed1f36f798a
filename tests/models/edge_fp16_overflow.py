"""Test model: overflows fp16 only on edge-value inputs (input families, docs/families.md).

64 inputs in [-1000, 1000] and a first layer whose weights are all positive (U[1, 2]): a hidden unit sums its
inputs. On inputs drawn in the range the terms mostly cancel (a hidden value stays below ~3e4); with every input at
the range's high end each hidden unit is ~9.6e4, beyond fp16's largest finite value (65504). An artifact that
computes in fp16 (tflite_fp16_arith on an ARM CPU with fp16 arithmetic: validate --emulate aarch64:cortex-a55)
overflows there and passes every seeded input; in fp32 every family passes.
"""
import torch
from torch import nn

N, HIDDEN, OUT, LOW, HIGH = 64, 16, 4, -1000.0, 1000.0
INPUTS = [{"name": "x", "shape": ["batch", N], "dtype": "float32", "range": [LOW, HIGH]}]
OUTPUTS = [{"name": "y", "shape": ["batch", OUT], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 4}}


class Summing(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(N, HIDDEN), nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def build():
    torch.manual_seed(0)
    m = Summing()
    with torch.no_grad():
        m.fc1.weight.copy_(torch.rand(HIDDEN, N) + 1.0)  # all positive: each hidden unit sums its inputs
        m.fc1.bias.zero_()
        m.fc2.weight.mul_(1e-3)  # outputs of a few units, not thousands
    return m.eval()
