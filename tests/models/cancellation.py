"""Test model: outputs that are differences of large intermediates (catastrophic cancellation), the case the
fixed fp32 tier gets wrong (docs/oracle.md). Two branches each add OFFSET (~1e4) to the input and go through a
Linear layer of their own (same seeded weights in both, so the ~1e4 parts cancel): ``y = fc_a(x + OFFSET) -
fc_b(OFFSET - x) = 2 W x``, O(1), while each branch is ~1e4, where one float32 ulp is ~1e-3. Each runtime
rounds the large dot products in its own order, so two correct fp32 implementations differ by ~1e-3: far
above the fixed tier's 1e-4 + 1e-4 |y|, and of the order of the fp32 reference's own error against the
float64 result. A weight of one branch scaled by 1 + 1e-3 (``PLANTED``) is not cancelled by the other: an
error of ~OFFSET * 1e-3 * |w|."""
import numpy as np
import torch
from torch import nn

OFFSET = 1e4
WIDTH, OUT = 64, 16
INPUTS = [{"name": "x", "shape": ["batch", WIDTH], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "y", "shape": ["batch", OUT], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}
PLANTED = 1e-3  # the relative weight change a test plants in one branch (build(planted=True))


class Cancellation(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_a, self.fc_b = nn.Linear(WIDTH, OUT), nn.Linear(WIDTH, OUT)

    def forward(self, x):
        return self.fc_a(x + OFFSET) - self.fc_b(OFFSET - x)


def build(planted: bool = False):
    torch.manual_seed(0)
    model = Cancellation().eval()
    with torch.no_grad():
        model.fc_a.weight.copy_(torch.randn(OUT, WIDTH) * 0.2)
        model.fc_a.bias.copy_(torch.randn(OUT) * 0.1)
        model.fc_b.weight.copy_(model.fc_a.weight)
        model.fc_b.bias.copy_(model.fc_a.bias)
        if planted:
            model.fc_a.weight[0, 0] *= 1 + PLANTED
    return model


def calibration_inputs(n, seed):
    return {"x": np.random.default_rng(seed).uniform(-1, 1, (n, 1, WIDTH)).astype(np.float32)}
