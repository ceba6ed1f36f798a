"""Test model: torch.linalg.det converts to ONNX Det and tf.MatrixDeterminant, which TFLite built-ins lack."""
import torch
from torch import nn
INPUTS = [{"name": "x", "shape": ["batch", 3, 3], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch"], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}
class M(nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)
def build():
    return M().eval()
