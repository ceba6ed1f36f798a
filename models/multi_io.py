"""multi_io: two inputs of different rank and dtype, two outputs — the name/order contract.

Inputs: ``image`` float32 [batch, 3, 16, 16] and ``meta`` int64 [batch, 4] (category ids in
[0, 8)). Outputs: ``score`` float32 [batch, 5] and ``embedding`` float32 [batch, 16], in that
order. The outputs have different sizes so a swapped order cannot pass unnoticed.
"""
from __future__ import annotations

import torch
from torch import nn

DESCRIPTION = "two inputs (float32 rank 4, int64 rank 2), two outputs: the I/O name/order contract"
INPUTS = [
    {"name": "image", "shape": ["batch", 3, 16, 16], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"},
    {"name": "meta", "shape": ["batch", 4], "dtype": "int64", "range": [0, 8]},
]
OUTPUTS = [
    {"name": "score", "shape": ["batch", 5], "dtype": "float32", "kind": "classifier"},
    {"name": "embedding", "shape": ["batch", 16], "dtype": "float32"},
]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 256}}
SEED = 0


class MultiIO(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.meta_emb = nn.Embedding(8, 8)
        self.embed = nn.Linear(16, 16)
        self.score = nn.Linear(16, 5)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.conv(image).flatten(1)
        m = self.meta_emb(meta).mean(dim=1)
        emb = torch.tanh(self.embed(torch.cat([img, m], dim=1)))
        return self.score(emb), emb


def build() -> nn.Module:
    torch.manual_seed(SEED)
    return MultiIO().eval()


def example_inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(SEED)
    return (torch.rand(batch, 3, 16, 16, generator=g), torch.randint(0, 8, (batch, 4), generator=g))
