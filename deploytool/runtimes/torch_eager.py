"""The source model itself in PyTorch eager mode: the reference, and the benchmark baseline.

Its "artifact" is a JSON file holding the manifest's source reference (a zoo name or a model
file), since the source is code, not a file in the bundle.
"""
from __future__ import annotations

import json

from deploytool.runtimes import Runtime, Settings
from deploytool.runtimes.torchscript import Session, run, set_threads, version  # same calling convention


def load(path, settings):
    from deploytool.sources import load_source  # the registry's door, not a loader file

    set_threads(settings)
    return Session(load_source(json.loads(open(path).read())).module.eval())


def settings(session):
    import torch

    return Settings(torch.get_num_threads(), torch.get_num_interop_threads())


RUNTIME = Runtime("torch_eager", "the source model in PyTorch eager mode", ("torch",),
                  "torch", load, run, version, settings)
