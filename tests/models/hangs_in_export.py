"""A model whose forward blocks only while torch.export traces it (the ONNX exporter): a hung
converter. The export's time limit must kill that step and carry on with the other formats."""
import time

import torch
from torch import nn

INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch", 3], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3}}


class HangsInExport(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if torch.compiler.is_exporting():
            time.sleep(3600)
        return self.fc(x)


def build():
    torch.manual_seed(0)
    return HangsInExport()
