"""Test model: the source itself gives NaN/Inf on edge values (input families, docs/families.md).

8 inputs in [0, 1); each output is log(x) + 1 / (x - 1/2) + 1 / (x - TOP) of its input, TOP being the largest
float32 below 1. Every seeded input in the range gives a finite output (a draw lands on 0, 1/2 or TOP with a
probability of about 1e-7). The edge set's three samples do not: at the range's midpoint (the edge set's first
sample: zero is the range's low end, which the next sample takes) 1 / (x - 1/2) is Inf, at the low end (0) log(0) is
-Inf, and at the high end (ranges being [LOW, HIGH), the largest float32 below 1: TOP) 1 / (x - TOP) is Inf.
Nothing can be checked against those references, so the edge set is skipped (export says why and does not fail); a
perturbed sample clipped to an end of the range is left out, and the perturbed set's note says how many were.
"""
import numpy as np
import torch
from torch import nn

N = 8
TOP = float(np.nextafter(np.float32(1), np.float32(0)))  # the edge set's high end: the largest float32 in [0, 1)
INPUTS = [{"name": "x", "shape": ["batch", N], "dtype": "float32", "range": [0.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", N], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 4}}


class LogOdd(nn.Module):
    def forward(self, x):
        return torch.log(x) + 1 / (x - 0.5) + 1 / (x - TOP)


def build():
    return LogOdd().eval()
