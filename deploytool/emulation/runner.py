"""Runs INSIDE the emulated aarch64 Python: a runtime's aarch64 build, driven from the host over stdin/stdout.

The emulated Python cannot start subprocesses (no binfmt registration), so one long-lived process serves every call
of a session, one command a line, one answer a line (the shape of the libtorch runner's protocol):

- ``load RUNTIME JSON`` -> ``ok JSON``: loads ``JSON["path"]`` on ``RUNTIME``, as ``deploytool/runtimes`` loads it:

  - ``litert`` (``{"path", "threads"}``, threads 0: LiteRT's default): the serving_default signature's input and
    output details (name -> index, dtype, shape, shape_signature, quantization).
  - ``onnxruntime`` (``{"path", "options": {SessionOptions attribute: value}, "config": {session config entry:
    value}}``), on the CPU execution provider; external data is read from beside the file: the inputs' and outputs'
    ``name``, ``type`` and ``shape`` (as its NodeArgs say them), the providers and the threads it was set to.
- ``run REQUEST`` (a JSON file: ``{"feeds": {name: .npy path}, "out": folder}``) -> ``ok JSON``: {output name: .npy
  path}, in the artifact's output order (LiteRT: an input whose shape changed is resized first).
- a command that fails -> ``error MESSAGE`` (one line; the traceback goes to stderr, the worker's log).

It ends when its stdin closes, on SIGTERM (Python's default), and with the host process that started it
(PR_SET_PDEATHSIG, set by the host before the emulator starts). Imports nothing of deploytool: only numpy and the
runtimes' wheels are on its path.
"""
from __future__ import annotations

import gc
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np


class _State:
    call: Callable[[dict], dict] | None = None  # the loaded artifact: {input name: array} -> {output name: array}


def _details(details: dict) -> dict:
    return {name: {"index": int(d["index"]), "dtype": np.dtype(d["dtype"]).name, "shape": [int(x) for x in d["shape"]],
                   "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
                   "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
            for name, d in details.items()}


def _litert(spec: dict) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=spec["path"], num_threads=int(spec["threads"]) or None)
    runner = interp.get_signature_runner("serving_default")
    inputs, outputs = _details(runner.get_input_details()), _details(runner.get_output_details())
    if getattr(runner, "_subgraph_index", 0) != 0:
        _State.call = lambda feeds: runner(**feeds)
    else:
        del runner
        gc.collect()  # its references to the interpreter's tensors must be gone before the first resize
        shapes: dict = {}

        def call(feeds: dict) -> dict:
            if any(shapes.get(k) != v.shape for k, v in feeds.items()):
                for k, v in feeds.items():
                    interp.resize_tensor_input(inputs[k]["index"], v.shape)
                    shapes[k] = v.shape
                interp.allocate_tensors()
            for k, v in feeds.items():
                interp.set_tensor(inputs[k]["index"], v)
            interp.invoke()
            return {k: interp.get_tensor(d["index"]) for k, d in outputs.items()}

        _State.call = call
    return {"inputs": inputs, "outputs": outputs}


def _onnxruntime(spec: dict) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for name, value in spec["options"].items():
        setattr(opts, name, value)
    for name, value in spec["config"].items():
        opts.add_session_config_entry(name, value)
    sess = ort.InferenceSession(spec["path"], sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]  # asked once: get_outputs() builds its NodeArgs anew on every call
    _State.call = lambda feeds: dict(zip(names, sess.run(names, feeds)))

    def args(values: list) -> list[dict]:
        return [{"name": v.name, "type": v.type, "shape": list(v.shape)} for v in values]

    return {"inputs": args(sess.get_inputs()), "outputs": args(sess.get_outputs()), "providers": sess.get_providers(),
            "intra_op_num_threads": opts.intra_op_num_threads, "inter_op_num_threads": opts.inter_op_num_threads}


RUNTIMES = {"litert": _litert, "onnxruntime": _onnxruntime}


def load(args: str) -> dict:
    runtime, _, spec = args.partition(" ")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    _State.call = None
    return RUNTIMES[runtime](json.loads(spec))


def run(request: str) -> dict:
    if _State.call is None:
        raise ValueError("nothing is loaded")
    spec = json.loads(Path(request).read_text())
    feeds = {name: np.load(path, allow_pickle=False) for name, path in spec["feeds"].items()}
    written = {}
    for i, (name, value) in enumerate(_State.call(feeds).items()):
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
