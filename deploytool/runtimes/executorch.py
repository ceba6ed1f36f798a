"""ExecuTorch ``.pte`` programs on ExecuTorch's runtime (its Python bindings), XNNPACK-delegated.

A serving process does what ``load`` does: ``Runtime.get().load_program(path).load_method("forward")``,
then ``method.execute([tensors])``. Its thread pool (shared by the whole process) starts with one thread
per core; ``threads`` resets it (``_unsafe_reset_threadpool``: unsafe only while a method is running), and
the count is read back. Outputs are copied: they live in the program's planned memory, which the next call
overwrites.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploytool.runtimes import Runtime, Settings


@dataclass
class Session:
    program: Any  # holds the memory the method runs in
    method: Any


def load(path, settings):
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime as EtRuntime

    if settings.get("threads"):
        portable_lib._unsafe_reset_threadpool(int(settings["threads"]))
    program = EtRuntime.get().load_program(str(path))
    return Session(program, program.load_method("forward"))


def run(session, feeds):
    import numpy as np
    import torch

    out = session.method.execute([torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
    return {f"output_{i}": t.detach().numpy().copy() for i, t in enumerate(out)}


def version():
    from importlib.metadata import version as v

    return v("executorch")


def settings(session):
    from executorch.extension.pybindings import portable_lib

    return Settings(portable_lib._threadpool_get_thread_count())


# Its Python runtime links against torch's libraries: the extra pins it together with torch.
RUNTIME = Runtime("executorch", "ExecuTorch runtime (XNNPACK delegate)", ("executorch.runtime",),
                  "executorch", load, run, version, settings)
