"""ONNX files and OpenVINO IR on OpenVINO's CPU plugin.

``Core.read_model`` reads the ``.onnx`` and ``onnx_int8`` artifacts (dynamic dims kept; QDQ int8 runs on
its integer kernels, so its verdict can differ from onnxruntime's) and the IR of the
``openvino`` format (a directory holding one ``*.xml`` and its ``.bin``; an ``.xml`` path works
too). Compiled for latency: one stream, ``INFERENCE_NUM_THREADS`` from ``threads``, and always
``INFERENCE_PRECISION_HINT=f32``: on CPUs with native bf16 OpenVINO otherwise runs an fp32 model in
bf16 (DESIGN.md's stack facts), and the fp32 tier must run in fp32. The precision it reports back is
the one it compiled with. Outputs are copies (``share_outputs=False``): shared buffers are
overwritten by the next call. Tensor names come from the model as read, not from the compiled
model, whose ports may carry the names of tensors folded into them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploytool.runtimes import Runtime, Settings

DEVICE = "CPU"


@dataclass
class Session:
    compiled: Any  # openvino.CompiledModel
    request: Any  # its one InferRequest, reused
    inputs: list[dict]  # describe()'s specs, names as the model was read
    outputs: list[dict]


def model_file(path: Path) -> Path:
    """An .onnx or .xml file as it is; an IR directory: the one ``*.xml`` inside."""
    if not path.is_dir():
        return path
    xmls = sorted(path.glob("*.xml"))
    if len(xmls) != 1:
        raise RuntimeError(f"{path}: expected one OpenVINO IR .xml file, found {len(xmls)}")
    return xmls[0]


def read_failure(message: str) -> str:
    """OpenVINO's read error as one line naming the cause (``OpenVINO cannot read this model: no conversion
    rule for ONNX op(s) Det-20``) instead of its first line, a C++ source location."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    missing = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("-- No conversion rule")), None)
    if missing:
        return f"OpenVINO cannot read this model: no conversion rule for ONNX op(s) {missing}"
    cause = [ln for ln in lines if not ln.startswith(("Exception from src/", "Check '")) and " at src/" not in ln]
    return f"OpenVINO cannot read this model: {' '.join(cause)[:300] or lines[0] if lines else 'no reason given'}"


def _spec(port) -> dict:
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
    try:
        dtype = port.get_element_type().to_dtype().name
    except Exception:  # noqa: BLE001 - a type numpy has no dtype for (bf16, u4): OpenVINO's own name
        dtype = port.get_element_type().get_type_name()
    return {"name": port.get_any_name(), "dtype": dtype, "shape": dims}


def load(path, settings):
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(str(model_file(Path(path))))
    except RuntimeError as e:  # its message opens with "Exception from src/...cpp:84:": the cause comes later
        raise RuntimeError(read_failure(str(e))) from None
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if settings.get("threads"):
        config["INFERENCE_NUM_THREADS"] = int(settings["threads"])
    compiled = core.compile_model(model, DEVICE, config)
    return Session(compiled, compiled.create_infer_request(),
                   [_spec(p) for p in model.inputs], [_spec(p) for p in model.outputs])


def run(session, feeds):
    # Inputs are only read during this synchronous call: shared, not copied. Outputs are copied.
    results = session.request.infer(feeds, share_inputs=True, share_outputs=False).to_tuple()
    return {spec["name"]: value for spec, value in zip(session.outputs, results)}


def describe(session):
    return {"inputs": session.inputs, "outputs": session.outputs, "ordered": True}


def version():
    from importlib.metadata import version as v

    return v("openvino")  # ov.__version__ carries the build tag: "2026.4.1-22982-..."


def settings(session):
    get = session.compiled.get_property
    # OpenVINO has no inter-op pool or spinning knob; the threads are what it compiled with.
    return Settings(int(get("INFERENCE_NUM_THREADS")), extras={
        "device": DEVICE, "inference_precision": get("INFERENCE_PRECISION_HINT").get_type_name(),
        "performance_hint": str(get("PERFORMANCE_HINT")), "num_streams": int(get("NUM_STREAMS"))})


RUNTIME = Runtime("openvino", "OpenVINO CPU plugin (ONNX or OpenVINO IR), f32 inference precision", ("openvino",),
                  "openvino", load, run, version, settings, describe, runs=("onnx", "onnx_int8"))
