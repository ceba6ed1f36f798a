"""Shared by the TFLite formats: TFLiteConverter from the SavedModel artifact (float32, float16
weights, dynamic-range int8 weights, or full integer from calibration data).

Built-in ops only (no SELECT_TF_OPS): a model needing the Flex delegate would not run on the
LiteRT interpreter a device ships, so that fails the export with the op named instead.

Routes, where the SavedModel was made from the ONNX artifact by onnx2tf: ``direct`` (the SavedModel
artifact); where TFLite built-ins lack an op onnx2tf can replace by a composition of built-ins (exact
GELU's ``tf.Erf``), ``pseudo-ops``: onnx2tf again on the ONNX artifact with those ops replaced, into
scratch, then the converter; where a dim that is not static stops it (a dynamic-length RNN's TensorList
loop), ``fixed-dims``: the same with the dynamic dims fixed to the golden sizes (recorded in the
contract, so the golden sets that do not fit are skipped, saying why). Each is judged like any artifact.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ConversionRoute, ExportContext, ExportResult, convert_by_routes, plan

# TensorFlow ops TFLite built-ins lack -> (the ONNX op, onnx2tf's ``replace_to_pseudo_operators`` name). onnx2tf
# 1.28.8 replaces these by compositions of built-ins (ops/Erf.py: Abramowitz-Stegun 7.1.26, |error| < 1.5e-7).
# It also replaces ops TFLite has (Abs, Neg, PReLU, LeakyReLU, HardSwish, Pow, GatherND: for accelerators) and
# GELU by its tanh approximation (not exact: left out).
PSEUDO_OPS = {"tf.Erf": ("Erf", "erf"), "tf.Asin": ("Asin", "asin"), "tf.Acos": ("Acos", "acos"),
              "tf.Atan": ("Atan", "atan")}
# TFLiteConverter legalises a TensorFlow while loop's TensorList ops (Keras RNNs: onnx2tf's GRU/LSTM/RNN) only
# where their element shape is static: "'tf.TensorListReserve' op requires element_shape to be static".
NOT_STATIC = re.compile(r"'tf\.TensorList[A-Za-z]+'")


def convert(ctx: ExportContext, precision: str) -> ExportResult:
    """The ``direct`` route, then (where the SavedModel came from the ONNX artifact) the rebuilt ones."""
    parent_path, parent_contract = ctx.parent()
    routes = [ConversionRoute("direct", "TFLiteConverter on the SavedModel artifact",
                              lambda: _from_saved_model(ctx, precision, parent_path, parent_contract))]
    onnx_path = _onnx_ancestor(ctx)
    if onnx_path is not None:
        routes += [ConversionRoute("pseudo-ops", "onnx2tf again on the ONNX artifact with the ops TFLite lacks "
                                   "replaced by compositions of built-ins",
                                   lambda: _rebuilt(ctx, precision, onnx_path, fix_dims=False),
                                   ruled_out=_no_replaceable_op),
                   ConversionRoute("fixed-dims", "onnx2tf again on the ONNX artifact with its dynamic dims fixed",
                                   lambda: _rebuilt(ctx, precision, onnx_path, fix_dims=True),
                                   ruled_out=lambda e: _dims_not_the_cause(e, parent_contract))]
    result, route = convert_by_routes(routes, lambda e, log: explain(e, log, ctx),
                                      before_retry=lambda: ctx.out_path.unlink(missing_ok=True))
    result.route = route if len(routes) > 1 else None
    return result


def _onnx_ancestor(ctx: ExportContext) -> Path | None:
    """The ONNX artifact the SavedModel was made from (beside it: every artifact is in the bundle's artifacts
    folder); None where this source's chain makes the SavedModel otherwise (a TensorFlow source)."""
    formats = plan(ctx.framework)
    if formats["savedmodel"].parent != "onnx" or ctx.parent_path is None:
        return None
    path = ctx.parent_path.parent / formats["onnx"].artifact_name(ctx.model_name)
    return path if path.is_file() else None


def _no_replaceable_op(exc: BaseException) -> str | None:
    if set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", str(exc))) & PSEUDO_OPS.keys():
        return None
    return "onnx2tf has no built-in composition for the ops TFLite lacked"


def _dims_not_the_cause(exc: BaseException, contract: Contract) -> str | None:
    if not contract.dynamic_dims():
        return "the SavedModel has no dynamic dim"
    return None if NOT_STATIC.search(str(exc)) else "no dynamic dim was the cause"


def _rebuilt(ctx: ExportContext, precision: str, onnx_path: Path, fix_dims: bool) -> ExportResult:
    """onnx2tf on the ONNX artifact into a scratch SavedModel, with the ops TFLite lacks replaced by compositions
    of built-ins and the SavedModel's fixed dims kept (``fix_dims``: every dynamic dim fixed too), converted."""
    import onnx
    import onnx2tf

    from deploytool.formats.savedmodel import fixed_dims_note

    parent_contract = ctx.parent()[1]
    in_graph = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    replaced = {op: name for op, name in PSEUDO_OPS.values() if op in in_graph}
    sizes = parent_contract.dim_sizes("example", batch_one=True)
    newly = {d: sizes[d] for d in parent_contract.dynamic_dims()} if fix_dims else {}
    contract = Contract.from_dict(parent_contract.to_dict())
    contract.fixed_dims = {**parent_contract.fixed_dims, **newly}
    scratch, notes, onnx2tf_options = _rebuilt_saved_model(ctx, onnx_path, contract.fixed_dims, replaced)
    result = _from_saved_model(ctx, precision, scratch, contract)
    what = f"with {', '.join(replaced)} replaced by compositions of TFLite built-ins" if replaced else "again"
    notes.append(f"converted from a SavedModel onnx2tf made from the ONNX artifact {what}, not from the "
                 "SavedModel artifact")
    if newly:
        notes.append(fixed_dims_note(newly, "TFLite built-ins need the static shapes a dynamic-length loop lacks"))
    result.notes = notes + result.notes
    result.options = {**result.options, "from": "onnx (onnx2tf, then saved_model)", "onnx2tf": onnx2tf_options,
                      **({"fixed_dims": newly} if newly else {})}
    result.exporter = "onnx2tf + tf.lite.TFLiteConverter"
    result.exporter_version = f"onnx2tf {onnx2tf.__version__}, {result.exporter_version}"
    return result


def _rebuilt_saved_model(ctx: ExportContext, onnx_path: Path, fixed: dict[str, int], replaced: dict[str, str]
                         ) -> tuple[Path, list[str], dict]:
    """The scratch SavedModel (the ONNX artifact as it is, or folded with ``fixed`` dims, and the ``replaced``
    ONNX ops -> onnx2tf pseudo-op names), onnx2tf's notes, and how it was called."""
    from deploytool.formats import onnx as onnx_format
    from deploytool.formats.savedmodel import Onnx2tf

    tool = Onnx2tf(onnx_path, onnx_format.onnx_contract(ctx, onnx_path), ctx.workdir,
                   bool(ctx.options.get("keep_layout")), tuple(replaced.values()))
    scratch = ctx.workdir / f"{ctx.out_path.stem}-rebuilt_saved_model"
    shutil.rmtree(scratch, ignore_errors=True)
    notes = tool.convert(scratch, f"{ctx.out_path.stem}-rebuilt", fixed or None)
    return scratch, notes, tool.options()


def _from_saved_model(ctx: ExportContext, precision: str, saved_model: Path, parent_contract: Contract
                      ) -> ExportResult:
    """TFLiteConverter on ``saved_model`` (the artifact's contract is ``parent_contract``'s)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options: dict = {"from": "saved_model", "signature": "serving_default", "ops": "TFLITE_BUILTINS"}
    notes: list[str] = []
    if precision in ("fp16", "fp16_arith"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        options.update(optimizations="DEFAULT", supported_types="float16")
        if precision == "fp16_arith":  # metadata fp16accfp16: XNNPACK computes in fp16 where the CPU has fp16
            # arithmetic (ARMv8.2 FEAT_FP16), in fp32 elsewhere. A private TensorFlow 2.21 attribute (TFLiteConverter
            # has no public one): checked to exist, so a TensorFlow without it fails the export, saying so.
            if not hasattr(conv.target_spec, "_experimental_supported_accumulation_type"):
                raise RuntimeError(f"TensorFlow {tf.__version__}'s TFLiteConverter has no fp16 accumulation setting "
                                   "(target_spec._experimental_supported_accumulation_type)")
            conv.target_spec._experimental_supported_accumulation_type = tf.float16
            options.update(accumulation="float16")
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
    if "onnx_op_name" in log:  # a rebuilt route's onnx2tf failed
        from deploytool.formats import savedmodel

        return savedmodel.explain(exc, log, ctx)
    text = str(exc) + "\n" + log[-4000:]
    ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text)))
    if ops and NOT_STATIC.search(text):
        return _not_static(ops, getattr(ctx, "parent_contract", None))
    if ops:
        why = f"TFLiteConverter: ops not supported by TFLite built-ins: {', '.join(ops)[:250]}"
        if "tf.Erf" in ops:  # exact GELU (erf); the tanh approximation is built-in ops only
            why += " (tf.Erf is exact GELU: a model using the tanh-approximate GELU converts)"
        return why
    return f"TFLiteConverter: {short_error(exc)}"


def _not_static(ops: list[str], contract: Contract | None) -> str:
    """A TensorList op refused: the cause is a dynamic dim (a dynamic-length RNN), not a missing op."""
    dims = contract.dynamic_dims() if contract is not None else []
    named = f"dynamic dim {', '.join(dims)}" if dims else "a dim that is not static"
    lacking = [op for op in ops if not NOT_STATIC.fullmatch(f"'{op}'")]
    also = f"; ops not supported by TFLite built-ins besides: {', '.join(lacking)[:200]}" if lacking else ""
    return (f"TFLiteConverter: the {named} is the cause: a loop over it (a dynamic-length RNN) needs static shapes "
            f"in TFLite built-ins ({', '.join(op for op in ops if op not in lacking)}); declare that dim with a "
            f"fixed size{also}")
