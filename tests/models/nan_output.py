"""A model whose output is NaN (log of a negative number): the golden reference
would hold NaN there, and every comparison against it would be vacuous."""
import torch
from torch import nn

INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}


class LogOf(nn.Module):
    def forward(self, x):
        return torch.log(x - 2.0)  # x < 1: NaN everywhere


def build():
    return LogOf()
