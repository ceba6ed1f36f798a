"""Test model: a small transformer block with exact GELU, written to ONNX at opset 14 by the TorchScript-based
exporter (as older exporters write it): exact GELU below opset 20 is ``Erf``, which TFLite built-ins lack.
``write(path)`` writes the ``.onnx`` file that tests export as an ONNX-file source."""
import torch
from torch import nn

WIDTH, SEQ = 8, 6


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / WIDTH ** 0.5, dim=-1)
        x = x + self.proj(attn @ v)
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(dim=1))


def write(path) -> None:
    torch.manual_seed(0)
    model = Block().eval()
    torch.onnx.export(model, (torch.randn(2, SEQ, WIDTH),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=14, dynamo=False)
