"""The source model itself in PyTorch eager mode: the reference, and the benchmark baseline.

Its "artifact" is a JSON file holding the manifest's source reference (a zoo name or a model
file), since the source is code, not a file in the bundle.
"""
from __future__ import annotations

import json

from deploytool.install import hint
from deploytool.runtimes import Runtime
from deploytool.runtimes.torchscript import run, settings, version  # same calling convention


def load(path, settings):
    import torch

    from deploytool.sources import load_source  # the registry's door, not a loader file

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    if settings.get("inter_op_threads"):
        torch.set_num_interop_threads(int(settings["inter_op_threads"]))
    return load_source(json.loads(open(path).read())).module


RUNTIME = Runtime("torch_eager", "the source model in PyTorch eager mode", ("torch",),
                  hint("torch"), load, run, version, settings)
