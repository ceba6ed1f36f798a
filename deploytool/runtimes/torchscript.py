"""TorchScript files on libtorch (torch.jit.load), optimized for inference at load.

``settings["optimize_for_inference"]`` (from the artifact's ``load_settings`` in the manifest,
which export sets once it has checked that optimizing works and keeps parity) applies
``torch.jit.optimize_for_inference`` after loading: it cannot be done before saving
(pytorch/pytorch#69608). What a serving process should do is these two lines::

    module = torch.jit.load(path, map_location="cpu").eval()
    module = torch.jit.optimize_for_inference(module)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploytool.core.errors import short_error
from deploytool.runtimes import Runtime, Settings


@dataclass
class Session:
    module: Any
    info: dict = field(default_factory=dict)  # how it was loaded (reported in settings)


def set_threads(settings: dict) -> None:
    import torch

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    # Settable once per process, before any parallel work (torch raises on a second call, even with the
    # same value): a second artifact loaded in the same worker keeps what the first set.
    if settings.get("inter_op_threads") and torch.get_num_interop_threads() != int(settings["inter_op_threads"]):
        torch.set_num_interop_threads(int(settings["inter_op_threads"]))


def load(path, settings):
    import torch

    set_threads(settings)
    module = torch.jit.load(str(path), map_location="cpu").eval()
    info: dict = {"optimize_for_inference": False}
    if settings.get("optimize_for_inference"):
        try:
            module = torch.jit.optimize_for_inference(module)
            info["optimize_for_inference"] = True
        except Exception as e:  # noqa: BLE001 - the plain module still runs: fall back and say so
            info["optimize_for_inference_error"] = short_error(e, 200)
    return Session(module, info)


def run(session, feeds):
    import torch

    with torch.inference_mode():
        out = session.module(*[torch.from_numpy(v) for v in feeds.values()])
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {f"output_{i}": t.numpy() for i, t in enumerate(out)}


def version():
    import torch

    return torch.__version__


def settings(session):
    import torch

    return Settings(torch.get_num_threads(), torch.get_num_interop_threads(), extras=dict(session.info))


RUNTIME = Runtime("torchscript", "libtorch TorchScript interpreter", ("torch",),
                  "torch", load, run, version, settings)
