"""TensorFlow and Keras I/O helpers shared by the TF source loader, the savedmodel format and the
keras/tensorflow runtimes, so that none of those plug-in layers imports another. TensorFlow and
Keras are imported inside the functions only (the coordinator imports this module's users).

A SavedModel is called through its ``serving_default`` signature; a Keras model with
``training=False``. The source's reference outputs and the runtimes' outputs go through these
same calls.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.errors import ModelError, short_error

SIGNATURE = "serving_default"


def signature_output_keys(keys) -> list[str]:
    """A signature's output keys in output order: output_0, output_1, ... by number, other names
    alphabetically (a loaded signature's dict order is not the order the model wrote them in)."""
    def number(key: str) -> int:
        m = re.fullmatch(r"output_(\d+)", key)
        return int(m.group(1)) if m else -1

    keys = list(keys)
    return sorted(keys, key=number) if all(number(k) >= 0 for k in keys) else sorted(keys)


def keras_output_tensors(model) -> list[tuple[str, Any]]:
    """(name, symbolic tensor) per output of a Keras model: the keys of a dict of outputs (in the
    dict's order; ``model.outputs`` is flattened in sorted-key order, so it cannot be zipped with
    them), else the output layers' names."""
    struct = model.output
    if isinstance(struct, dict):
        return list(struct.items())
    tensors = list(struct) if isinstance(struct, (list, tuple)) else [struct]
    return list(zip(model.output_names, tensors))


def keras_output_names(model) -> list[str]:
    """Names for a Keras model's outputs, in the order ``keras_call`` returns them."""
    return [name for name, _ in keras_output_tensors(model)]


def keras_call(model, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call a Keras model (``training=False``); its result (tensor, list or dict) -> {output name: array}."""
    out = model(feeds, training=False)
    if isinstance(out, dict):
        return {n: np.asarray(out[n]) for n in names}
    if not isinstance(out, (list, tuple)):
        out = [out]
    return {n: np.asarray(o) for n, o in zip(names, out)}


def signature_call(fn, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call a SavedModel signature with numpy feeds keyed by its input names."""
    import tensorflow as tf

    out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}


def signature_io(fn) -> dict:
    """A signature's declared I/O (names, dtypes, shapes; a signature maps by name, no order)."""
    def spec(name, t) -> dict:
        return {"name": name, "dtype": t.dtype.name, "shape": [d if d is not None else None for d in t.shape.as_list()]}

    ins = fn.structured_input_signature[1]
    outs = fn.structured_outputs
    return {"inputs": [spec(k, t) for k, t in ins.items()], "outputs": [spec(k, t) for k, t in outs.items()],
            "ordered": False}


def load_keras(path: Path):
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # noqa: BLE001 - any failure to deserialise is a broken or foreign model file
        raise ModelError(f"model file {path}: not a loadable Keras model ({short_error(e)})") from None


def set_threads(settings: dict) -> None:
    import tensorflow as tf

    if settings.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(int(settings["threads"]))
    if settings.get("inter_op_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(int(settings["inter_op_threads"]))


def thread_settings(_session=None) -> dict:
    import tensorflow as tf

    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def version() -> str:
    import tensorflow as tf

    return tf.__version__
