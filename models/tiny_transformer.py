"""tiny_transformer: a 2-layer transformer encoder classifier over int64 token ids.

Integer inputs with a dynamic sequence length, multi-head self-attention, LayerNorm and GELU:
where converters break. Input ``ids`` int64 [batch, seq] in [0, VOCAB); output ``logits``
float32 [batch, 4] (mean-pooled encoder states). Seeded random weights.
"""
from __future__ import annotations

import math

import torch
from torch import nn

DESCRIPTION = "2-layer transformer encoder: int64 ids, dynamic seq, MHA, LayerNorm, GELU"
VOCAB, D_MODEL, HEADS, FFN, LAYERS, MAX_LEN, CLASSES = 1000, 64, 4, 128, 2, 128, 4
INPUTS = [{"name": "ids", "shape": ["batch", "seq"], "dtype": "int64", "range": [0, VOCAB]}]
OUTPUTS = [{"name": "logits", "shape": ["batch", CLASSES], "dtype": "float32", "kind": "classifier"}]
DIMS = {
    "batch": {"example": 2, "alt": 3, "min": 1, "max": 64},
    "seq": {"example": 16, "alt": 24, "min": 2, "max": MAX_LEN},
}
SEED = 0


class Block(nn.Module):
    """Pre-norm encoder block with attention written out (no fused SDPA kernel to hide ops).

    Heads are folded into the batch ([b*h, t, dh], 3-D batched matmuls). The common 4-D form
    ([b, h, t, dh] then transpose + reshape back) converts through onnx2tf 1.28.8 without any
    error but computes wrong values (max abs error ~0.1 on the logits; onnx2tf's own per-op check
    puts the first mismatch at the reshape after attention): deploytool's check catches that at
    the onnx -> savedmodel hop. This layout is the one the whole chain converts exactly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.ffn = nn.Sequential(nn.Linear(D_MODEL, FFN), nn.GELU(), nn.Linear(FFN, D_MODEL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, dh = HEADS, D_MODEL // HEADS
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        # Heads folded into the batch: [b*h, t, dh] (3-D batched matmuls).
        q, k, v = (z.reshape(b, t, h, dh).permute(0, 2, 1, 3).reshape(b * h, t, dh) for z in (q, k, v))
        att = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(dh), dim=-1)
        ctx = torch.bmm(att, v).reshape(b, h, t, dh).permute(0, 2, 1, 3).reshape(b, t, D_MODEL)
        x = x + self.proj(ctx)
        return x + self.ffn(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D_MODEL)
        self.pos = nn.Embedding(MAX_LEN, D_MODEL)  # learned positions looked up by index, as BERT does
        self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.tok(ids) + self.pos(positions)
        x = self.ln(self.blocks(x))
        return self.head(x.mean(dim=1))


def build() -> nn.Module:
    torch.manual_seed(SEED)
    return TinyTransformer().eval()


def example_inputs(batch: int = 2, seq: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(SEED)
    return (torch.randint(0, VOCAB, (batch, seq), generator=g),)
