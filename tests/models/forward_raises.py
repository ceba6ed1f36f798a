"""Test model whose forward() raises on the golden inputs (batch 1)."""
from torch import nn
INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}
class M(nn.Module):
    def forward(self, x):
        if x.shape[0] == 1:
            raise RuntimeError("batch of one not supported")
        return x
def build():
    return M()
