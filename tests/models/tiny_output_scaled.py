"""Test model: tiny_output.py's MLP at a normal magnitude (SCALE 1): the twin that shows a check of its output
is informative (an artifact returning zeros, the mean or another sample's output fails it), so every format
PASSES where the tiny one is VACUOUS."""
import numpy as np
import torch
from torch import nn

SCALE = 1.0
INPUTS = [{"name": "x", "shape": ["batch", 8], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) * SCALE


def build():
    torch.manual_seed(0)
    return Scaled().eval()


def calibration_inputs(n, seed):
    return {"x": np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8)).astype(np.float32)}
