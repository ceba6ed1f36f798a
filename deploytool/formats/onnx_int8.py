"""ONNX static int8 quantisation with onnxruntime.quantization: ``quant_pre_process`` (shape
inference and graph optimisation), then ``quantize_static`` in QDQ format, per-channel int8
weights, uint8 activations calibrated on the calibration data (MinMax by default; ``--calib-method
entropy|percentile``). The op types that were quantized are recorded. Inputs and outputs stay
float, so it takes the same feeds as the ``onnx`` artifact it is made from."""
from __future__ import annotations

import contextlib
import shutil

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ExportContext, ExportResult, Format, Route


def convert(ctx: ExportContext) -> ExportResult:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    parent_path, parent_contract = ctx.parent()
    feeds = ctx.calibration_feeds(parent_contract)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[ctx.options.get("calib_method", "minmax")]
    notes: list[str] = []
    pre = ctx.workdir / "onnx_int8-preprocessed.onnx"
    try:
        # onnxruntime's symbolic shape inference saves "sym_shape_infer_temp.onnx" (+ external data) into the
        # working directory when it cannot infer every shape (tools/symbolic_shape_infer.py, infer_shapes):
        # keep that in the scratch space, not wherever deploytool was started.
        src, dest = str(parent_path.resolve()), str(pre.resolve())  # before the directory changes
        with contextlib.chdir(ctx.workdir.resolve()):
            quant_pre_process(src, dest)
    except Exception as e:  # noqa: BLE001 - pre-processing is an optimisation; quantize the graph as it is
        shutil.copyfile(parent_path, pre)
        notes.append(f"quant_pre_process failed ({short_error(e, 160)}); quantized the graph without it")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    # Activations uint8, weights int8 ("U8S8"): onnxruntime's quantization guide names it the first
    # choice on x86 CPUs (its VNNI/AVX2 kernels take u8 x s8); measured on mobilenet_v2 here, S8S8 QDQ
    # ran at 0.93x the fp32 graph's p50 and U8S8 at about 0.55x (scripts/bench_int8.py).
    quantize_static(str(pre), str(ctx.out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method)
    model = onnx.load(str(ctx.out_path), load_external_data=False)
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = sorted({n.op_type for n in model.graph.node
                        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and set(n.input) & dq_outputs})
    if not quantized:
        raise RuntimeError("quantize_static quantized no op of this graph (no supported op types)")
    onnx.checker.check_model(str(ctx.out_path))
    contract = Contract.from_dict(parent_contract.to_dict())  # same float I/O as the onnx artifact
    return ExportResult(contract=contract, exporter_version=f"onnxruntime {onnxruntime.__version__} quantize_static",
                        options={"format": "QDQ", "per_channel": True, "activations": "uint8", "weights": "int8",
                                 "calibrate_method": method.name, "calibration_samples": len(feeds),
                                 "op_types_quantized": quantized},
                        notes=notes + [f"quantized op types: {', '.join(quantized)}"])


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    return f"onnxruntime quantize_static: {short_error(exc)}"



FORMAT = Format(
    name="onnx_int8",
    description="ONNX static int8 (onnxruntime.quantization, QDQ, per-channel, calibrated), for onnxruntime",
    suffix="_int8.onnx",
    parent="onnx",
    precision="int8",
    tier="int8",
    runtimes=("onnxruntime",),
    stage="torch",  # beside the onnx artifact: no TensorFlow needed
    exporter="onnxruntime.quantization.quantize_static",
    requires=("onnx", "onnxruntime"),
    convert=convert,
    explain=explain,
    needs_calibration=True,
    compare_to="onnx",
    # From an .onnx or a TensorFlow source the onnx artifact is made in that source's worker; so is this.
    routes={fw: Route(parent="onnx", stage=fw, exporter="onnxruntime.quantization.quantize_static", convert=convert,
                      requires=("onnx", "onnxruntime"), explain=explain) for fw in ("onnx", "tensorflow")},
)
