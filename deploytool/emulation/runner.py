"""Runs INSIDE the emulated aarch64 Python: LiteRT's aarch64 build, driven from the host over stdin/stdout.

The emulated Python cannot start subprocesses (no binfmt registration), so one long-lived process serves every call
of a session, one command a line, one answer a line (the shape of the libtorch runner's protocol):

- ``load PATH THREADS`` (THREADS 0: LiteRT's default) -> ``ok JSON``: the serving_default signature's input and
  output details (name -> index, dtype, shape, shape_signature, quantization), as ``runtimes/litert.py`` loads it.
- ``run REQUEST`` (a JSON file: ``{"feeds": {name: .npy path}, "out": folder}``) -> ``ok JSON``: {output name: .npy
  path}, in the signature's output order; an input whose shape changed is resized first.
- a command that fails -> ``error MESSAGE`` (one line; the traceback goes to stderr, the worker's log).

It ends when its stdin closes, on SIGTERM (Python's default), and with the host process that started it
(PR_SET_PDEATHSIG, set by the host before the emulator starts). Imports nothing of deploytool: only numpy and
ai_edge_litert are on its path.
"""
from __future__ import annotations

import gc
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np


class _State:
    interpreter: Any = None
    runner: Any = None  # kept only when the signature is not the primary subgraph (then its own call is used)
    inputs: dict = {}
    outputs: dict = {}
    shapes: dict = {}


def _details(details: dict) -> dict:
    return {name: {"index": int(d["index"]), "dtype": np.dtype(d["dtype"]).name, "shape": [int(x) for x in d["shape"]],
                   "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
                   "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
            for name, d in details.items()}


def load(args: str) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    path, threads = args.rsplit(" ", 1)  # the path may hold spaces

    interp = Interpreter(model_path=path, num_threads=int(threads) or None)
    runner = interp.get_signature_runner("serving_default")
    _State.interpreter, _State.shapes = interp, {}
    _State.inputs, _State.outputs = _details(runner.get_input_details()), _details(runner.get_output_details())
    if getattr(runner, "_subgraph_index", 0) != 0:
        _State.runner = runner
    else:
        del runner
        gc.collect()  # its references to the interpreter's tensors must be gone before the first resize
    return {"inputs": _State.inputs, "outputs": _State.outputs}


def run(request: str) -> dict:
    spec = json.loads(Path(request).read_text())
    feeds = {name: np.load(path, allow_pickle=False) for name, path in spec["feeds"].items()}
    if _State.runner is not None:
        got = _State.runner(**feeds)
    else:
        interp = _State.interpreter
        if any(_State.shapes.get(k) != v.shape for k, v in feeds.items()):
            for k, v in feeds.items():
                interp.resize_tensor_input(_State.inputs[k]["index"], v.shape)
                _State.shapes[k] = v.shape
            interp.allocate_tensors()
        for k, v in feeds.items():
            interp.set_tensor(_State.inputs[k]["index"], v)
        interp.invoke()
        got = {k: interp.get_tensor(d["index"]) for k, d in _State.outputs.items()}
    written = {}
    for i, (name, value) in enumerate(got.items()):
        written[name] = str(Path(spec["out"]) / f"out{i}.npy")
        np.save(written[name], np.asarray(value), allow_pickle=False)
    return written


def serve() -> None:
    commands = {"load": load, "run": run}
    for line in sys.stdin:
        command, _, args = line.rstrip("\n").partition(" ")
        try:
            if command not in commands:
                raise ValueError(f"unknown command {command!r}")
            answer = "ok " + json.dumps(commands[command](args))
        except Exception as e:  # noqa: BLE001 - every failure is answered on the protocol; the traceback is logged
            traceback.print_exc(file=sys.stderr)
            answer = "error " + " ".join(f"{type(e).__name__}: {e}".split())
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
