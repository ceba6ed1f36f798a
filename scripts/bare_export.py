"""The same converter calls deploytool export makes for a zoo model, written as a plain script.

    python scripts/bare_export.py OUT_DIR [MODEL]      (MODEL: digits_cnn (default) or mobilenet_v2)

One process, no subprocesses, no golden data, no checks: the floor deploytool's overhead is
measured against (scripts/bench_export.py).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch


def main(out: Path, name: str = "digits_cnn") -> None:
    out.mkdir(parents=True, exist_ok=True)
    zoo = importlib.import_module(f"deploytool.models.{name}")  # image -> logits, dynamic batch
    model = zoo.build()
    example = zoo.example_inputs()
    with torch.no_grad():
        torch.jit.freeze(torch.jit.trace(model, example).eval()).save(str(out / "model.torchscript.pt"))
    batch = torch.export.Dim("batch", min=1, max=zoo.DIMS["batch"]["max"])
    torch.onnx.export(model, example, str(out / "model.onnx"), input_names=["image"], output_names=["logits"],
                      dynamic_shapes={"image": {0: batch}}, external_data=False, dynamo=True)
    import onnx

    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    import onnx2tf
    import tensorflow as tf

    # onnx2tf's calibration images, provided locally so the conversion stays offline.
    os.chdir(out)
    np.save("calibration_image_sample_data_20x128x128x3_float32.npy",
            np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    onnx2tf.convert(input_onnx_file_path="model.onnx", output_folder_path="saved_model", output_signaturedefs=True,
                    non_verbose=True, not_use_onnxsim=True)
    for precision in ("fp32", "fp16"):
        conv = tf.lite.TFLiteConverter.from_saved_model("saved_model")
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        Path(f"model_{precision}.tflite").write_bytes(conv.convert())


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), *sys.argv[2:3])
