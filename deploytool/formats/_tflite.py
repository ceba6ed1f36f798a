"""Shared by the TFLite formats: TFLiteConverter from the SavedModel artifact.

Built-in ops only (no SELECT_TF_OPS): a model needing the Flex delegate would not run on the
LiteRT interpreter a device ships, so that fails the export with the op named instead.
"""
from __future__ import annotations

import re

from deploytool.contract import Contract
from deploytool.errors import short_error
from deploytool.formats import ExportContext, ExportResult


def convert(ctx: ExportContext, precision: str) -> ExportResult:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(ctx.parent_path), signature_keys=["serving_default"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options = {"from": "saved_model", "signature": "serving_default", "ops": "TFLITE_BUILTINS"}
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        options.update(optimizations="DEFAULT", supported_types="float16")
    ctx.out_path.write_bytes(conv.convert())
    contract = Contract.from_dict(ctx.parent()[1].to_dict())
    _check_signature(contract, ctx.out_path)
    return ExportResult(contract=contract, exporter_version=f"tensorflow {tf.__version__} TFLiteConverter",
                        options=options)


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
        return f"TFLiteConverter: ops not supported by TFLite built-ins: {', '.join(sorted(set(ops)))[:250]}"
    return f"TFLiteConverter: {short_error(exc)}"
