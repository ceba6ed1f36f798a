"""A Keras model file (.keras) called in Keras (``training=False``): the source of a Keras model.

Outputs are keyed by the names the source contract gives them (``tf_model.keras_output_names``).
"""
from __future__ import annotations

from deploytool.runtimes import Runtime
from deploytool.runtimes.tensorflow import set_threads, settings, version  # Keras runs on TensorFlow here


def load(path, settings):
    from deploytool.sources import tf_model

    set_threads(settings)
    model = tf_model.load_keras(path)
    return model, tf_model.keras_output_names(model)


def run(session, feeds):
    from deploytool.sources import tf_model

    model, names = session
    return tf_model.keras_outputs(model, names, model(feeds, training=False))


RUNTIME = Runtime("keras", "the source Keras model, called in Keras on TensorFlow", ("tensorflow", "keras"),
                  "pip install deploytool (tensorflow)", load, run, version, settings)
