"""Loads a TensorFlow source inside a tensorflow worker: a Keras model file (``.keras``) or a
SavedModel directory. The contract comes from the model's own signature, golden inputs are
seeded, and the source framework computes the reference outputs: Keras calls the model
(``training=False``); a SavedModel runs its ``serving_default`` signature.

Shapes come from the Keras inputs / signature TensorSpecs: None dims are dynamic (a None first
dim is the batch, see ``contract.spec_from_graph``); 4-D float inputs are NHWC, TF's own layout,
so no artifact made from a TF source permutes anything. Outputs are named as the model names
them: a Keras model's output layers (or the keys of a dict of outputs), a signature's keys.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from deploytool.contract import generate_inputs, spec_from_graph
from deploytool.errors import ModelError, short_error
from deploytool.runtimes import keras as keras_runtime  # the source runs as the runtimes run it
from deploytool.runtimes import tensorflow as tensorflow_runtime
from deploytool.sources import graph_contract
from deploytool.sources.torch_module import LoadedModel

SIGNATURE = "serving_default"


def signature_output_keys(keys) -> list[str]:
    """A signature's output keys in output order: output_0, output_1, ... by number, other names
    alphabetically (a loaded signature's dict order is not the order the model wrote them in)."""
    def number(key: str) -> int:
        m = re.fullmatch(r"output_(\d+)", key)
        return int(m.group(1)) if m else -1

    keys = list(keys)
    return sorted(keys, key=number) if all(number(k) >= 0 for k in keys) else sorted(keys)


def keras_output_tensors(model) -> list[tuple[str, object]]:
    """(name, symbolic tensor) per output of a Keras model: the keys of a dict of outputs (in the
    dict's order; ``model.outputs`` is flattened in sorted-key order, so it cannot be zipped with
    them), else the output layers' names."""
    struct = model.output
    if isinstance(struct, dict):
        return list(struct.items())
    tensors = list(struct) if isinstance(struct, (list, tuple)) else [struct]
    return list(zip(model.output_names, tensors))


def keras_output_names(model) -> list[str]:
    """Names for a Keras model's outputs, in the order ``keras_outputs`` returns them."""
    return [name for name, _ in keras_output_tensors(model)]


def keras_outputs(model, names: list[str], out) -> dict[str, np.ndarray]:
    """A Keras call's result (tensor, list or dict) -> {output name: array}."""
    if isinstance(out, dict):
        return {n: np.asarray(out[n]) for n in names}
    if not isinstance(out, (list, tuple)):
        out = [out]
    return {n: np.asarray(o) for n, o in zip(names, out)}


def load_keras(path: Path):
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # noqa: BLE001 - any failure to deserialise is a broken or foreign model file
        raise ModelError(f"model file {path}: not a loadable Keras model ({short_error(e)})") from None


def _tf_dtype(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def load(source: dict) -> LoadedModel:
    import tensorflow as tf

    path = Path(source["ref"])
    dims: dict[str, dict] = {}
    if source["kind"] == "keras":
        import keras

        model = load_keras(path)
        if not getattr(model, "inputs", None):
            raise ModelError(f"model file {path}: the Keras model has no defined inputs (a subclassed model "
                             "that was never built); save a functional or built model")
        inputs = [spec_from_graph(t.name, list(t.shape), _tf_dtype(t.dtype), dims, image_layout="NHWC")
                  for t in model.inputs]
        named = keras_output_tensors(model)
        names = [n for n, _ in named]
        outputs = [spec_from_graph(n, list(t.shape), _tf_dtype(t.dtype), dims) for n, t in named]
        what, versions = f"Keras model {path.name}", {"keras": keras.__version__}
        call = functools.partial(keras_runtime.run, (model, names))
    else:
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"model directory {path}: not a loadable SavedModel ({short_error(e)})") from None
        if SIGNATURE not in loaded.signatures:
            raise ModelError(f"model directory {path}: the SavedModel has no {SIGNATURE!r} signature "
                             f"(it has {sorted(loaded.signatures) or 'none'})")
        model, sig = None, loaded.signatures[SIGNATURE]
        sig_inputs, sig_outputs = sig.structured_input_signature[1], sig.structured_outputs
        inputs = [spec_from_graph(k, t.shape.as_list(), t.dtype.name, dims, image_layout="NHWC")
                  for k, t in sig_inputs.items()]
        outputs = [spec_from_graph(k, sig_outputs[k].shape.as_list(), sig_outputs[k].dtype.name, dims)
                   for k in signature_output_keys(sig_outputs)]
        what, versions = f"SavedModel {path.name}", {}
        call = functools.partial(tensorflow_runtime.run, (loaded, sig))

    contract = graph_contract(f"model {'file' if source['kind'] == 'keras' else 'directory'} {path}",
                              inputs, outputs, dims, source.get("input_ranges"))

    def golden(n: int, seed: int) -> dict[str, np.ndarray]:
        return generate_inputs(contract, n, seed, contract.dim_sizes("example", batch_one=True))

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        outs = [call({k: v[i] for k, v in feeds.items()}) for i in range(n)]
        return {name: np.stack([np.asarray(o[name]) for o in outs]) for name in contract.output_names}

    return LoadedModel(module=model, contract=contract, example_inputs=(), alt_inputs=(), golden=golden,
                       description=what, reference=reference, path=path,
                       versions={"tensorflow": tf.__version__, **versions})
