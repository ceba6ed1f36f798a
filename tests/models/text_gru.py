"""Test models for golden coverage and example-inferred dims (tests/test_coverage.py): a GRU text classifier over
an embedding of 1,000 rows (``gru``: no example inputs, declared with --input; ``gru_example``: with example token
ids 0..500 at batch 2, sequence 10), and a model whose integer input indexes no embedding (``counts``: only its
declared --input tells its shape, nothing its range)."""
import torch
from torch import nn

VOCAB = 1000


class Gru(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.gru, self.head = nn.Embedding(VOCAB, 8), nn.GRU(8, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, tokens):
        _, h = self.gru(self.emb(tokens))
        return self.head(h[0])


class Counts(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, counts):
        return self.head(counts.float())


def gru():
    torch.manual_seed(0)
    return Gru()


def gru_example():
    return gru(), (torch.arange(20).reshape(2, 10) * 25 + 1,)


def counts():
    torch.manual_seed(0)
    return Counts()
