"""Loads a TensorFlow source inside a tensorflow worker (shared by the ``keras`` and
``savedmodel`` kinds): a Keras model file (``.keras``) or a SavedModel directory. The contract
comes from the model's own signature, golden inputs are seeded, and the source framework computes
the reference outputs: Keras calls the model
(``training=False``); a SavedModel runs its ``serving_default`` signature.

Shapes come from the Keras inputs / signature TensorSpecs: None dims are dynamic (a None first
dim is the batch, see ``contract.spec_from_graph``); 4-D float inputs are NHWC, TF's own layout,
so no artifact made from a TF source permutes anything. Outputs are named as the model names
them: a Keras model's output layers (or the keys of a dict of outputs), a signature's keys.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from deploytool import tf_io  # the source runs through the same calls as the keras/tensorflow runtimes
from deploytool.core.contract import generate_inputs, spec_from_graph
from deploytool.core.errors import ModelError, short_error
from deploytool.sources import LoadedModel, SourceRef, graph_contract
from deploytool.tf_io import SIGNATURE, keras_output_tensors, load_keras, signature_output_keys


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
        _embedding_ranges(model, inputs, source.get("input_ranges") or {})
        named = keras_output_tensors(model)
        names = [n for n, _ in named]
        outputs = [spec_from_graph(n, list(t.shape), _tf_dtype(t.dtype), dims) for n, t in named]
        what, versions = f"Keras model {path.name}", {"keras": keras.__version__}
        call = functools.partial(tf_io.keras_call, model, names)
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
        call = functools.partial(tf_io.signature_call, sig, feeder=tf_io.Feeder())

    contract = graph_contract(f"model {'file' if source['kind'] == 'keras' else 'directory'} {path}",
                              inputs, outputs, dims, source.get("input_ranges"))

    def golden(n: int, seed: int, dims: dict) -> dict[str, np.ndarray]:
        return generate_inputs(contract, n, seed, dims)

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        outs = [call({k: v[i] for k, v in feeds.items()}) for i in range(n)]
        return {name: np.stack([np.asarray(o[name]) for o in outs]) for name in contract.output_names}

    return LoadedModel(module=model, contract=contract, example_inputs=(), alt_inputs=(), golden=golden,
                       description=what, reference=reference, path=path,
                       versions={"tensorflow": tf.__version__, **versions})


def _embedding_ranges(model, inputs: list[dict], declared: dict) -> None:
    """An integer Keras input fed as it is to an ``Embedding`` layer takes the layer's ``input_dim`` as its range
    (the smallest where several), unless one is declared."""
    import keras

    found: dict[int, tuple[int, str]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Embedding):
            continue
        try:
            fed = layer.input
        except (AttributeError, ValueError):  # a layer called on several tensors has no single input
            continue
        for i, t in enumerate(model.inputs):
            rows = int(layer.input_dim)
            if fed is t and (i not in found or rows < found[i][0]):
                found[i] = (rows, f"embedding {layer.name!r} ({rows} rows)")
    for i, spec in enumerate(inputs):
        if i in found and spec["dtype"].startswith(("int", "uint")) and spec["name"] not in declared:
            spec["range"], spec["range_from"] = [0, found[i][0]], found[i][1]


def claim_keras(model: str) -> SourceRef | None:
    if not model.endswith(".keras"):
        return None
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {model}: no such file")
    return SourceRef(kind="keras", ref=str(path.resolve()), name=path.stem, framework="tensorflow",
                     details={"file": str(path.resolve())})


def claim_savedmodel(model: str) -> SourceRef | None:
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    if not (path / "saved_model.pb").is_file():
        raise ModelError(f"model directory {model}: not a TensorFlow SavedModel (no saved_model.pb in it)")
    return SourceRef(kind="savedmodel", ref=str(path.resolve()), name=path.resolve().name, framework="tensorflow",
                     details={"file": str(path.resolve())})
