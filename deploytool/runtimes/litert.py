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
    return {"interpreter": interp, "runner": runner, "threads": threads, "path": str(path)}


def run(session, feeds):
    try:
        return session["runner"](**feeds)
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
        raise RuntimeError(_xnnpack_refused(session, feeds, e)) from None


def _xnnpack_refused(session, feeds, error: RuntimeError) -> str:
    """XNNPACK, LiteRT's default CPU delegate, can fail to prepare a model it accepted (e.g. ai-edge-litert 2.3 on
    some full-integer ResNets: "failed to create XNNPACK runtime ... (TfLiteXNNPackDelegate) failed to prepare"),
    naming no op. Say so, whether the model runs without the delegate, and its op types."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    first = " ".join(str(error).split())[:160]
    try:
        probe = Interpreter(model_path=session["path"],
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        ops = ", ".join(sorted({d["op_name"] for d in probe._get_ops_details()}))
        probe.get_signature_runner("serving_default")(**feeds)
        without = f"without the delegate it runs (ops {ops})"
    except Exception as e:  # noqa: BLE001 - the probe only adds detail to the delegate's failure
        without = f"without the delegate it fails too ({' '.join(str(e).split())[:120]})"
    return (f"LiteRT's default XNNPACK delegate failed to prepare this model, so LiteRT with its defaults cannot run "
            f"it; {without}: {first}")


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
