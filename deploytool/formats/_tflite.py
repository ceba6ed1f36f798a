"""Shared by the TFLite formats: TFLiteConverter from the SavedModel artifact (float32, float16
weights, dynamic-range int8 weights, or full integer from calibration data).

Built-in ops only (no SELECT_TF_OPS): a model needing the Flex delegate would not run on the
LiteRT interpreter a device ships, so that fails the export with the op named instead.
"""
from __future__ import annotations

import re

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ExportContext, ExportResult


def convert(ctx: ExportContext, precision: str) -> ExportResult:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(ctx.parent_path), signature_keys=["serving_default"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options: dict = {"from": "saved_model", "signature": "serving_default", "ops": "TFLITE_BUILTINS"}
    parent_contract = ctx.parent()[1]
    notes: list[str] = []
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        options.update(optimizations="DEFAULT", supported_types="float16")
    elif precision == "dynamic":  # int8 weights, float activations: no calibration data
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        options.update(optimizations="DEFAULT", quantization="dynamic range (int8 weights)")
    elif precision == "int8":  # full integer: weights per channel, activations calibrated
        feeds = ctx.calibration_feeds(parent_contract)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: iter(feeds)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = ctx.options.get("int8_io", "float32")
        if io != "float32":  # what micro-controllers and NPUs take: the I/O scale/zero point go in the contract
            conv.inference_input_type = conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
        options.update(optimizations="DEFAULT", ops="TFLITE_BUILTINS_INT8", quantization="full integer",
                       representative_samples=len(feeds), io_type=io)
    ctx.out_path.write_bytes(conv.convert())
    contract = Contract.from_dict(parent_contract.to_dict())
    if precision == "int8" and options.get("io_type") != "float32":
        notes += _record_io_quantization(contract, ctx.out_path)
    _check_signature(contract, ctx.out_path)
    return ExportResult(contract=contract, exporter_version=f"tensorflow {tf.__version__} TFLiteConverter",
                        options=options, notes=notes)


def _record_io_quantization(contract: Contract, path) -> list[str]:
    """An integer-I/O model's input/output scale and zero point, into the contract (the adapters
    quantize feeds and dequantize outputs with them)."""
    import numpy as np
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    notes = []
    for specs, details in ((contract.inputs, runner.get_input_details()),
                           (contract.outputs, runner.get_output_details())):
        for spec in specs:
            d = details[spec.feed_name]
            scale, zero = d["quantization"]
            spec.artifact_dtype = np.dtype(d["dtype"]).name
            spec.quant = [float(scale), int(zero)]
            notes.append(f"{spec.name}: {spec.artifact_dtype}, scale {scale:.6g}, zero point {zero}")
    return notes


def _check_signature(contract: Contract, path) -> None:
    """The .tflite signature must expose every contract tensor under its artifact name."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    sig = interp.get_signature_list().get("serving_default")
    if sig is None:
        raise RuntimeError(f"converted .tflite has no serving_default signature ({interp.get_signature_list()})")
    for group, names in ((contract.inputs, sig["inputs"]), (contract.outputs, sig["outputs"])):
        missing = [s.feed_name for s in group if s.feed_name not in names]
        if missing:
            raise RuntimeError(f".tflite signature lacks {missing} (has {names})")


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    text = str(exc) + "\n" + log[-4000:]
    ops = re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text)
    if ops:
        why = f"TFLiteConverter: ops not supported by TFLite built-ins: {', '.join(sorted(set(ops)))[:250]}"
        if "tf.Erf" in ops:  # exact GELU (erf); the tanh approximation is built-in ops only
            why += " (tf.Erf is exact GELU: a model using the tanh-approximate GELU converts)"
        return why
    return f"TFLiteConverter: {short_error(exc)}"
