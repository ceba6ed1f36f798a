"""Builders of TensorFlow source models for the tests (written to disk by the test that needs them).

Random weights, seeded: nothing is downloaded. Keras applications built with ``weights=None``
start with kernels and BatchNorm statistics that make every output nearly the same whatever
the input (the logits differ across inputs by ~1e-8), which would make a parity check
meaningless; ``_randomize`` gives kernels He-scaled random values and BatchNorm random
statistics so outputs depend on the input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _randomize(model, seed: int = 0) -> None:
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            weights = layer.get_weights()
            k = weights[0]
            fan_in = int(np.prod(k.shape[:2] if isinstance(layer, keras.layers.DepthwiseConv2D) else k.shape[:-1]))
            weights[0] = rng.normal(0, np.sqrt(2.0 / fan_in), k.shape).astype("float32")
            layer.set_weights(weights)


def keras_mobilenet_v2(path: Path) -> Path:
    """keras.applications.MobileNetV2 (alpha 0.35, 96x96, 10 classes, logits), saved as .keras."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None, classes=10,
                                           classifier_activation=None)
    _randomize(model)
    model.save(path)
    return path


def savedmodel_text_classifier(path: Path) -> Path:
    """A tf.Module text classifier (int32 token ids, dynamic batch and length; two named outputs),
    saved as a SavedModel directory with a serving_default signature."""
    import tensorflow as tf

    class TextClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.embedding = tf.Variable(rng.normal(0, 1, (100, 16)).astype("float32"))
            self.hidden = tf.Variable(rng.normal(0, 0.25, (16, 16)).astype("float32"))
            self.head = tf.Variable(rng.normal(0, 0.25, (16, 3)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
        def serve(self, ids):
            x = tf.gather(self.embedding, ids)  # [batch, seq, 16]
            # approximate: the exact gelu lowers to Erfc, which tf2onnx 1.17 cannot map
            x = tf.nn.gelu(tf.einsum("bsd,de->bse", x, self.hidden), approximate=True)
            pooled = tf.reduce_mean(x, axis=1)
            return {"logits": tf.matmul(pooled, self.head), "pooled": pooled}

    module = TextClassifier()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def savedmodel_unconvertible(path: Path) -> Path:
    """A SavedModel using tf.linalg.inv (MatrixInverse): no tf2onnx mapping, no TFLite built-in."""
    import tensorflow as tf

    class Inverse(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.linalg.inv(x + 3.0 * tf.eye(3))}

    module = Inverse()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def keras_multi_io(path: Path) -> Path:
    """A functional Keras model with two inputs (NHWC image, int32 ids of dynamic length) and a
    dict of two outputs, declared in non-alphabetical order (Keras flattens dicts by sorted key)."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(image))
    e = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 8)(ids))
    h = keras.layers.Concatenate()([x, e])
    model = keras.Model([image, ids], {"score": keras.layers.Dense(1, name="score")(h),
                                       "logits": keras.layers.Dense(5, name="logits")(h)})
    model.save(path)
    return path


def savedmodel_without_signature(path: Path) -> Path:
    """A SavedModel whose tf.function is saved without any serving signature."""
    import tensorflow as tf

    class Bare(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def double(self, x):
            return 2.0 * x

    tf.saved_model.save(Bare(), str(path), signatures={})
    return path
