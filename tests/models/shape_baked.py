"""Test model: float() of a size is frozen by tracing and specialised by torch.export."""
import torch
from torch import nn
INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}
class M(nn.Module):
    def __init__(self):
        super().__init__(); self.fc = nn.Linear(4, 4)
    def forward(self, x):
        # float() of a size: tracing freezes it to the example batch; torch.export keeps it symbolic
        return self.fc(x) / float(x.shape[0])
def build():
    torch.manual_seed(0); return M().eval()
