"""TFLite fp32, converted from the SavedModel artifact; run with the LiteRT interpreter."""
from deploytool.formats import Format, _tflite

FORMAT = Format(
    name="tflite_fp32",
    description="TFLite fp32 (TFLiteConverter from the SavedModel), for LiteRT on edge devices",
    suffix="_float32.tflite",
    parent="savedmodel",
    precision="fp32",
    tier="fp32",
    runtimes=("litert",),
    stage="tensorflow",
    exporter="tf.lite.TFLiteConverter",
    requires=("tensorflow",),
    convert=lambda ctx: _tflite.convert(ctx, "fp32"),
    explain=_tflite.explain,
)
