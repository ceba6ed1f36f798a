"""A tiny seeded GRU language model for the multi-step check (tests/test_steps.py): one step takes a token id and
the hidden state and gives the next token's logits and the new state. FEEDBACK feeds them back (logits -> token by
greedy argmax, h_out -> h), STEPS runs 32 steps.

The GRU cell is written by hand (Linear + sigmoid/tanh), not nn.GRU / nn.GRUCell: onnx2tf turns an ONNX GRU into a
TensorFlow loop over TensorLists that TFLite built-ins take only with static shapes (tests/models/dynamic_gru.py).
Its candidate-state recurrence is scaled up (GAIN) with the reset gate open and the update gate nearly shut, a
near-vanilla tanh RNN past the edge of chaos, so the state is as sensitive to small changes as a trained model's
near-tied tokens are: measured in torch from 4 seeded starts, a 1e-3 change of the recurrent weight changes a greedy
token at steps 15-28, a 1e-5 change and float64 arithmetic change none in 32 steps. ``build(scale=...)`` scales the
recurrent weight by (1 + scale): the planted fault (a copy of this file with SCALE = 1e-3 exports it)."""
import torch
from torch import nn

DESCRIPTION = "tiny seeded GRU language model (hand-written cell): token, h -> logits, h_out"
V, E, H = 16, 8, 16
GAIN = 8.0
INPUTS = [
    {"name": "token", "shape": [1], "dtype": "int64", "range": [0, V]},
    {"name": "h", "shape": [1, H], "dtype": "float32", "range": [-1.0, 1.0]},
]
OUTPUTS = [
    {"name": "logits", "shape": [1, V], "dtype": "float32"},
    {"name": "h_out", "shape": [1, H], "dtype": "float32"},
]
FEEDBACK = {"logits": "token:argmax", "h_out": "h"}
STEPS = 32
SCALE = 0.0


class GruLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.x2g, self.h2g = nn.Linear(E, 3 * H), nn.Linear(H, 3 * H)
        self.head = nn.Linear(H, V)

    def forward(self, token, h):
        gx, gh = self.x2g(self.emb(token)), self.h2g(h)
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h_out = (1 - z) * n + z * h
        return self.head(h_out) * 4.0, h_out


def build(scale: float = SCALE):
    torch.manual_seed(1)
    m = GruLM()
    with torch.no_grad():
        m.h2g.weight[2 * H:].mul_(GAIN)
        m.h2g.bias[:H] += 4.0  # reset gate open
        m.h2g.bias[H:2 * H] -= 4.0  # update gate nearly shut
        if scale:
            m.h2g.weight.mul_(1 + scale)
    return m.eval()


def example_inputs():
    return torch.tensor([3]), torch.zeros(1, H)


def calibration_inputs(n, seed):
    """Seeded token ids and states for the int8 formats (never the golden seeds)."""
    g = torch.Generator().manual_seed(seed)
    return {"token": torch.randint(0, V, (n, 1), generator=g).numpy(),
            "h": (torch.rand(n, 1, H, generator=g) * 2 - 1).numpy()}
