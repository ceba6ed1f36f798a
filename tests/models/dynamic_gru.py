"""Test model: a GRU over a dynamic-length sequence, written to ONNX by the TorchScript-based exporter at opset 14
(batch 1, ``seq`` dynamic). onnx2tf converts its GRU to a TensorFlow loop over TensorLists, which TFLite built-ins
take only with static shapes. ``write(path)`` writes the ``.onnx`` file that tests export as an ONNX-file source."""
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.head = nn.GRU(4, 6, batch_first=True), nn.Linear(6, 3)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[0])


def write(path) -> None:
    torch.manual_seed(0)
    torch.onnx.export(M().eval(), (torch.randn(1, 5, 4),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {1: "seq"}}, opset_version=14, dynamo=False)
