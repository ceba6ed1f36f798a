"""Test model: shifted-window attention written as transformers' Swin writes it, which torch.export cannot
export and the TorchScript-based ONNX exporter (``torch.onnx.export(dynamo=False)``) can.

The window attention's output is reshaped back (``transpose(1, 2).contiguous().reshape(...)``) after
``scaled_dot_product_attention`` with a mask expanded over the batch. In eager mode the attention's result has
strides for which that is a view; torch.export records it as one and then, decomposing the attention into
matmuls with other strides, fails: "Cannot view a tensor with shape torch.Size([4*s, 16, 2, 8]) and strides
(256, 8, 128, 1) as a tensor with shape (4*s, 16, 16)!" (the same message as for transformers' SwinModel).
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

INPUTS = [{"name": "image", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
OUTPUTS = [{"name": "logits", "shape": ["batch", 5], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}
WINDOW, HEADS, CH = 4, 2, 16
T = WINDOW * WINDOW


class ShiftedWindowAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, CH, 1)
        self.q, self.k, self.v = nn.Linear(CH, CH), nn.Linear(CH, CH), nn.Linear(CH, CH)
        self.proj = nn.Linear(CH, CH)
        self.head = nn.Linear(CH, 5)
        self.bias = nn.Parameter(torch.randn(1, HEADS, T, T) * 0.1)  # the relative position bias
        self.register_buffer("mask", torch.randn(4, T, T) * 0.1)  # the shifted windows' mask, per window

    def forward(self, image):
        x = self.embed(image).permute(0, 2, 3, 1)  # [B, H, W, C]
        b, h, w, c = x.shape
        x = torch.roll(x, shifts=(-WINDOW // 2, -WINDOW // 2), dims=(1, 2))  # the shift
        x = x.view(b, h // WINDOW, WINDOW, w // WINDOW, WINDOW, c).permute(0, 1, 3, 2, 4, 5)
        windows = x.contiguous().view(-1, T, c)  # [B * windows, T, C]
        n = windows.shape[0]
        mask = self.mask.unsqueeze(1).unsqueeze(0).expand(n // self.mask.shape[0], -1, -1, -1, -1).reshape(-1, 1, T, T)
        q, k, v = (p(windows).view(n, T, -1, c // HEADS).transpose(1, 2) for p in (self.q, self.k, self.v))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias + mask)  # [n, heads, T, d]
        context = context.reshape(context.shape[0], -1, T, v.shape[-1]).transpose(1, 2).contiguous()
        context = context.reshape(n, T, -1)  # the reshape torch.export cannot make
        return self.head(self.proj(context).view(b, -1, c).mean(1))


def build():
    torch.manual_seed(0)
    return ShiftedWindowAttention().eval()


def calibration_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Images like the golden ones (standard normal), ``n`` samples of batch 1, for the int8 formats."""
    return {"image": np.random.default_rng(seed).standard_normal((n, 1, 3, 8, 8)).astype(np.float32)}
