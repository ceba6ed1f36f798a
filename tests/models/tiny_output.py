"""Test model: a small MLP whose output varies with its input but is tiny in magnitude (scaled by
SCALE), far below every tier's absolute tolerance and below what fp16 represents as a normal number.
An artifact returning zeros would pass any check of it, so no format may PASS: every target is
VACUOUS (tiny_output_scaled.py is the same model at normal magnitude, which passes)."""
import numpy as np
import torch
from torch import nn

SCALE = 1e-30
INPUTS = [{"name": "x", "shape": ["batch", 8], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) * SCALE


def build():
    torch.manual_seed(0)
    return Tiny().eval()


def calibration_inputs(n, seed):
    return {"x": np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8)).astype(np.float32)}
