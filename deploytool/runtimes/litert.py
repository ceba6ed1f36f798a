"""TFLite files on the LiteRT interpreter (ai-edge-litert): what an edge device runs.

Imports no TensorFlow. Calls go through the ``serving_default`` signature runner, which feeds
and returns tensors by name and resizes dynamic inputs itself.
"""
from __future__ import annotations

from deploytool.install import hint
from deploytool.runtimes import Runtime


def load(path, settings):
    from ai_edge_litert.interpreter import Interpreter

    threads = int(settings["threads"]) if settings.get("threads") else None
    interp = Interpreter(model_path=str(path), num_threads=threads)
    runner = interp.get_signature_runner("serving_default")
    return {"interpreter": interp, "runner": runner, "threads": threads}


def run(session, feeds):
    return session["runner"](**feeds)


def describe(session):
    import numpy as np

    runner = session["runner"]

    def specs(details: dict) -> list[dict]:
        return [{"name": name, "dtype": np.dtype(d["dtype"]).name,
                 "shape": [int(x) if x >= 0 else None for x in d.get("shape_signature", d["shape"])]}
                for name, d in details.items()]

    # A signature maps tensors by name; it has no order to honour.
    return {"inputs": specs(runner.get_input_details()), "outputs": specs(runner.get_output_details()),
            "ordered": False}


def version():
    from importlib.metadata import version as v

    return v("ai-edge-litert")


def settings(session):
    # XNNPACK is LiteRT's default CPU delegate for float models; num_threads is its only knob here.
    return {"num_threads": session["threads"] if session["threads"] else "default", "xnnpack": True}


RUNTIME = Runtime("litert", "LiteRT interpreter (ai-edge-litert), no TensorFlow", ("ai_edge_litert.interpreter",),
                  hint("litert"), load, run, version, settings, describe)
