"""TFLite with dynamic-range quantisation (int8 weights, float activations), from the SavedModel.
Needs no calibration data. On x86 it is often slower than fp32 (weights are dequantized at run
time); it halves or quarters the size."""
from deploytool.formats import Format, _tflite

FORMAT = Format(
    name="tflite_dynamic",
    description="TFLite dynamic-range quantisation (int8 weights, float activations; no calibration data)",
    suffix="_dynamic_int8.tflite",
    parent="savedmodel",
    precision="int8-weights",
    tier="int8",
    runtimes=("litert",),
    stage="tensorflow",
    exporter="tf.lite.TFLiteConverter",
    requires=("tensorflow",),
    convert=lambda ctx: _tflite.convert(ctx, "dynamic"),
    explain=_tflite.explain,
    compare_to="tflite_fp32",
)
