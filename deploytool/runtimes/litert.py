"""TFLite files on the LiteRT interpreter (ai-edge-litert): what an edge device runs.

Imports no TensorFlow. Tensors are found by name through the ``serving_default`` signature; calls
then go through ``set_tensor`` / ``invoke`` / ``get_tensor``, resizing dynamic inputs only when a
shape changes. The signature runner's own call re-checks and re-resizes every input each time:
~4 us per call, 9 % of tiny_transformer's 47 us (scripts/bench_best_config.py). The runner is
dropped once its tensor indices are read: while it holds the interpreter's tensors, LiteRT refuses
to resize them ("There is at least 1 reference to internal data"). A signature that is not the
interpreter's primary subgraph keeps the runner's own call.
"""
from __future__ import annotations

import gc

from deploytool.runtimes import Runtime, Settings


def load(path, settings):
    from ai_edge_litert.interpreter import Interpreter

    threads = int(settings["threads"]) if settings.get("threads") else None
    interp = Interpreter(model_path=str(path), num_threads=threads)
    runner = interp.get_signature_runner("serving_default")
    session = {"interpreter": interp, "threads": threads, "shapes": {}, "path": str(path),
               "input_details": runner.get_input_details(), "output_details": runner.get_output_details()}
    if getattr(runner, "_subgraph_index", 0) != 0:
        session["runner"] = runner
        return session
    del runner
    gc.collect()  # its references to the interpreter's tensors must be gone before the first resize
    return session


def run(session, feeds):
    try:
        return _invoke(session, feeds)
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
        raise RuntimeError(_xnnpack_refused(session, feeds, e)) from None


def _invoke(session, feeds):
    if "runner" in session:
        return session["runner"](**feeds)
    interp, shapes, inputs = session["interpreter"], session["shapes"], session["input_details"]
    if any(shapes.get(k) != v.shape for k, v in feeds.items()):
        for k, v in feeds.items():
            interp.resize_tensor_input(inputs[k]["index"], v.shape)
            shapes[k] = v.shape
        interp.allocate_tensors()
    for k, v in feeds.items():
        interp.set_tensor(inputs[k]["index"], v)
    interp.invoke()
    return {k: interp.get_tensor(d["index"]) for k, d in session["output_details"].items()}


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

    def specs(details: dict) -> list[dict]:
        return [{"name": name, "dtype": np.dtype(d["dtype"]).name,
                 "shape": [int(x) if x >= 0 else None for x in d.get("shape_signature", d["shape"])]}
                for name, d in details.items()]

    # A signature maps tensors by name; it has no order to honour.
    return {"inputs": specs(session["input_details"]), "outputs": specs(session["output_details"]),
            "ordered": False}


def version():
    from importlib.metadata import version as v

    return v("ai-edge-litert")


def settings(session):
    # XNNPACK is LiteRT's default CPU delegate for float models; num_threads is its only knob here.
    return Settings(session["threads"], extras={"xnnpack": True})


RUNTIME = Runtime("litert", "LiteRT interpreter (ai-edge-litert), no TensorFlow", ("ai_edge_litert.interpreter",),
                  "litert", load, run, version, settings, describe)
