"""TFLite full-integer post-training quantisation from the SavedModel: int8 weights (per channel)
and activations calibrated on the calibration data, built-in int8 ops only. Float inputs and
outputs by default, so it drops into the same feeds; ``--int8-io int8|uint8`` makes them integer,
with their scale and zero point recorded in the contract (the adapters apply them)."""
from deploytool.formats import Format, _tflite

FORMAT = Format(
    name="tflite_int8",
    description="TFLite full integer (int8 weights and activations, calibrated), for edge CPUs, NPUs, MCUs",
    suffix="_int8.tflite",
    parent="savedmodel",
    precision="int8",
    tier="int8",
    runtimes=("litert",),
    stage="tensorflow",
    exporter="tf.lite.TFLiteConverter",
    requires=("tensorflow",),
    convert=lambda ctx: _tflite.convert(ctx, "int8"),
    explain=_tflite.explain,
    needs_calibration=True,
    compare_to="tflite_fp32",
)
