"""Test model: fails only on edge-value inputs, in int8 (input families, docs/families.md).

An "energy detector": 64 inputs in [-8, 8), a first layer whose weights are all positive (each hidden unit sums
its inputs), ReLU, a small head. Its int8 artifacts are calibrated on typical inputs (uniform in the range,
``calibration_inputs``), where the 64 terms of a hidden unit's sum mostly cancel; with every input at the range's
high end they add up to about 4x the largest hidden activation calibration saw, so the int8 activations saturate
there, while every seeded input in the range is reproduced well. The fp32 artifacts pass every family.
"""
import numpy as np
import torch
from torch import nn

N, HIDDEN, OUT, LOW, HIGH = 64, 32, 4, -8.0, 8.0
INPUTS = [{"name": "x", "shape": ["batch", N], "dtype": "float32", "range": [LOW, HIGH]}]
OUTPUTS = [{"name": "y", "shape": ["batch", OUT], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 8}}


class EnergyDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(N, HIDDEN), nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def build():
    torch.manual_seed(0)
    m = EnergyDetector()
    with torch.no_grad():
        m.fc1.weight.copy_(torch.rand(HIDDEN, N) * 0.25)  # all positive: each hidden unit sums its inputs
        m.fc1.bias.zero_()
    return m.eval()


def calibration_inputs(n, seed):
    """Typical inputs: uniform in the declared range, as the seeded golden sets are."""
    return {"x": np.random.default_rng(seed).uniform(LOW, HIGH, (n, 1, N)).astype(np.float32)}
