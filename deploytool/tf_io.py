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

from deploytool.core import buffers
from deploytool.core.errors import ModelError, short_error

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


class Feeder:
    """Numpy feeds -> eager tensors without a TensorFlow allocation per call.

    ``tf.constant`` allocates and copies on every call; right after a model call, with the caches
    cold and the allocation fresh, that costs far more than the copy (measured in one process on
    this project's machine: ~100 us for tiny_transformer's 16 int64 ids, ~560 us for
    mobilenet_v2's 224x224x3 image, 5-10 % of a call; scripts/bench_best_config.py --paired
    compares the configurations). A Feeder hands TensorFlow the caller's array itself through
    DLPack (``tf.experimental.dlpack.from_dlpack``) where it is 64-byte aligned, C-contiguous,
    writeable and native-order (``buffers``: TensorFlow aborts on a misaligned tensor); any other
    array is copied into a buffer of its own, aligned, allocated once per input name, shape and
    dtype. Dtypes DLPack cannot carry (strings, objects) and empty arrays go through
    ``tf.constant``. One call at a time: the buffers are reused.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._passed: list[np.ndarray] = []  # the caller's arrays handed over as they are, this call

    def tensors(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        import tensorflow as tf

        out, self._passed = {}, []
        for k, v in feeds.items():
            v = np.asarray(v)
            if not buffers.by_address(v):
                out[k] = tf.constant(v)
                continue
            if buffers.as_is(v) and v.flags.writeable:  # numpy exports no read-only buffer to DLPack
                self._passed.append(v)
            else:
                dtype = v.dtype.newbyteorder("=")
                buf = self._buffers.get(k)
                if buf is None or buf.shape != v.shape or buf.dtype != dtype:
                    buf = self._buffers[k] = buffers.empty(v.shape, dtype)
                np.copyto(buf, v, casting="equiv")
                v = buf
            out[k] = tf.experimental.dlpack.from_dlpack(v.__dlpack__())
        return out

    def detach(self, array: np.ndarray) -> np.ndarray:
        """``array`` itself, or a copy where it may share memory with an input (TensorFlow 2.21 copies
        an output that returns an input unchanged; should a version hand back the buffer instead,
        the next call would overwrite the result, or the caller's own array would be in it)."""
        if any(np.may_share_memory(array, b) for b in [*self._buffers.values(), *self._passed]):
            return array.copy()
        return array


def signature_call(fn, feeds: dict[str, np.ndarray], feeder: Feeder | None = None) -> dict[str, np.ndarray]:
    """Call a SavedModel signature with numpy feeds keyed by its input names (a caller that calls it
    again and again keeps one ``Feeder``)."""
    feeder = feeder or Feeder()
    out = fn(**feeder.tensors(feeds))
    return {k: feeder.detach(v.numpy()) for k, v in out.items()}


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


def version() -> str:
    import tensorflow as tf

    return tf.__version__
