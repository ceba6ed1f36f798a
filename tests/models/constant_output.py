"""Test model: its head's weights are zero (as when a checkpoint's head did not load), so its output
is the head's bias for every input. Any artifact that outputs that constant would match the
reference: the check is vacuous, and deploytool must say so instead of PASS."""
import torch
from torch import nn

INPUTS = [{"name": "x", "shape": ["batch", 8], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}


class HeadNotLoaded(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(8, 16), nn.Linear(16, 4)
        nn.init.zeros_(self.head.weight)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def build():
    torch.manual_seed(0)
    return HeadNotLoaded().eval()
