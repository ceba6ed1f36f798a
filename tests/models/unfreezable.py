"""Test model that torch.jit.freeze rejects: a scripted router that picks an expert from a
ModuleDict by a name computed at run time (an interface-typed lookup, ``prim::ModuleContainerIndex``).
Freezing raises "Freezing modules containing prim::ModuleContainerIndex is not supported", and so
does optimize_for_inference (it freezes first): the TorchScript artifact must fall back to the
traced module, loaded unoptimized, and still pass."""
import torch
from torch import Tensor, nn

INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}


@torch.jit.interface
class Expert(nn.Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - nn.Linear's own argument name
        pass


class Router(nn.Module):
    def __init__(self):
        super().__init__()
        self.experts = nn.ModuleDict({"pos": nn.Linear(4, 4), "neg": nn.Linear(4, 4)})

    def forward(self, x: Tensor) -> Tensor:
        key = "pos" if bool(x.sum() > 0) else "neg"
        expert: Expert = self.experts[key]
        return expert.forward(x)


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = torch.jit.script(Router())

    def forward(self, x):
        return self.router(x) * 2.0


def build():
    torch.manual_seed(0)
    return M().eval()
