"""TFLite that computes in fp16 (fp16 weights *and* fp16 accumulation), converted from the SavedModel artifact.

``tflite_fp16`` stores fp16 weights and computes in fp32 everywhere (its metadata says ``fp16accfp32``). This one is
converted with fp16 accumulation (``fp16accfp16``): on a CPU with fp16 arithmetic (ARMv8.2 FEAT_FP16: phones' cores,
``validate --emulate aarch64`` on cortex-a55 / neoverse-v1) XNNPACK runs it in fp16; on x86 and older ARM cores it
computes in fp32, which the report says (``platforms.executed_precision``). Judged in its own tier, ``fp16_arith``.
"""
from deploytool.formats import Format, _tflite

FORMAT = Format(
    name="tflite_fp16_arith",
    description="TFLite computing in fp16 (fp16 weights and accumulation; fp16 arithmetic on ARM CPUs that have it)",
    suffix="_float16_arith.tflite",
    parent="savedmodel",
    precision="fp16",
    tier="fp16_arith",
    runtimes=("litert",),
    stage="tensorflow",
    exporter="tf.lite.TFLiteConverter",
    requires=("tensorflow",),
    convert=lambda ctx: _tflite.convert(ctx, "fp16_arith"),
    compare_to="tflite_fp32",
    explain=_tflite.explain,
    compute="fp16",
)
