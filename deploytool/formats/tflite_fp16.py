"""TFLite with fp16 weights (float16 quantisation), converted from the SavedModel artifact: fp16 storage, computed in
fp32 everywhere (``tflite_fp16_arith`` computes in fp16 where the CPU can)."""
from deploytool.formats import Format, _tflite

FORMAT = Format(
    name="tflite_fp16",
    description="TFLite fp16 weights (TFLiteConverter float16 quantisation), for LiteRT / GPU delegates",
    suffix="_float16.tflite",
    parent="savedmodel",
    precision="fp16",
    tier="fp16",
    runtimes=("litert",),
    stage="tensorflow",
    exporter="tf.lite.TFLiteConverter",
    requires=("tensorflow",),
    convert=lambda ctx: _tflite.convert(ctx, "fp16"),
    compare_to="tflite_fp32",
    explain=_tflite.explain,
    compute="fp32",  # fp16 storage: its metadata says fp16accfp32, every CPU computes it in fp32
)
