"""An MLP whose second output is the argmax class id (int64), as classifiers exported with their decision do."""
import torch
from torch import nn

INPUTS = [{"name": "x", "shape": ["batch", 8], "dtype": "float32", "range": [-1.0, 1.0]}]
OUTPUTS = [{"name": "logits", "shape": ["batch", 6], "dtype": "float32"},
           {"name": "label", "shape": ["batch"], "dtype": "int64"}]
DIMS = {"batch": {"example": 4}}


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 6)

    def forward(self, x):
        logits = self.fc2(torch.relu(self.fc1(x)))
        return logits, logits.argmax(dim=1)


def build():
    torch.manual_seed(0)
    return Head().eval()
