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


# TensorFlow's CPU allocator aligns every buffer to 64 bytes (Allocator::kAllocatorAlignment, the
# largest EIGEN_MAX_ALIGN_BYTES); its kernels CHECK that alignment and abort the whole process on a
# tensor that lacks it ("Check failed: IsAligned()"), which a DLPack import of an arbitrary numpy
# array would hand them.
_ALIGN = 64


def _aligned_empty(shape: tuple, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    raw = np.empty(dtype.itemsize * int(np.prod(shape, dtype=np.int64)) + _ALIGN, np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset:offset + raw.size - _ALIGN].view(dtype).reshape(shape)


class Feeder:
    """Numpy feeds -> eager tensors, through buffers kept from call to call.

    ``tf.constant`` allocates and copies on every call; right after a model call, with the caches
    cold and the allocation fresh, that costs far more than the copy (measured in one process on
    this project's machine: ~100 us for tiny_transformer's 16 int64 ids, ~560 us for
    mobilenet_v2's 224x224x3 image, 6-10 % of a call; scripts/bench_best_config.py --paired
    compares the configurations). A Feeder copies each input into its own 64-byte-aligned buffer,
    allocated once per input name, shape and dtype, and hands it to TensorFlow through DLPack
    (``tf.experimental.dlpack.from_dlpack``), which takes the buffer as it is. Dtypes DLPack cannot
    carry (strings, objects) go through ``tf.constant``. One call at a time: the buffers are reused.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def tensors(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        import tensorflow as tf

        out = {}
        for k, v in feeds.items():
            v = np.asarray(v)
            if v.dtype.kind not in "biufc":
                out[k] = tf.constant(v)
                continue
            dtype = v.dtype.newbyteorder("=")
            buf = self._buffers.get(k)
            if buf is None or buf.shape != v.shape or buf.dtype != dtype:
                buf = self._buffers[k] = _aligned_empty(v.shape, dtype)
            np.copyto(buf, v, casting="equiv")
            out[k] = tf.experimental.dlpack.from_dlpack(buf.__dlpack__())
        return out

    def detach(self, array: np.ndarray) -> np.ndarray:
        """``array`` itself, or a copy where it may share memory with an input buffer (a signature that
        returns an input unchanged hands back the buffer, which the next call overwrites)."""
        if any(np.may_share_memory(array, b) for b in self._buffers.values()):
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


def thread_settings(_session=None) -> dict:
    import tensorflow as tf

    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def version() -> str:
    import tensorflow as tf

    return tf.__version__
