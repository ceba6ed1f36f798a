"""TorchScript files on libtorch (torch.jit.load)."""
from __future__ import annotations

from deploytool.install import hint
from deploytool.runtimes import Runtime


def load(path, settings):
    import torch

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    if settings.get("inter_op_threads"):
        torch.set_num_interop_threads(int(settings["inter_op_threads"]))
    return torch.jit.load(str(path), map_location="cpu").eval()


def run(module, feeds):
    import torch

    with torch.inference_mode():
        out = module(*[torch.from_numpy(v) for v in feeds.values()])
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {f"output_{i}": t.numpy() for i, t in enumerate(out)}


def version():
    import torch

    return torch.__version__


def settings(_module):
    import torch

    return {"intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads()}


RUNTIME = Runtime("torchscript", "libtorch TorchScript interpreter", ("torch",),
                  hint("torch"), load, run, version, settings)
