"""A Keras model file (.keras) called in Keras (``training=False``): the source of a Keras model.

Outputs are keyed by the names the source contract gives them (``tf_io.keras_output_names``).
"""
from __future__ import annotations

from deploytool import tf_io
from deploytool.runtimes import Runtime
from deploytool.runtimes.tensorflow import settings as tf_settings  # Keras runs on TensorFlow here


def load(path, settings):
    tf_io.set_threads(settings)  # Keras runs on TensorFlow here
    model = tf_io.load_keras(path)
    return model, tf_io.keras_output_names(model)


def run(session, feeds):
    model, names = session
    return tf_io.keras_call(model, names, feeds)


RUNTIME = Runtime("keras", "the source Keras model, called in Keras on TensorFlow", ("tensorflow", "keras"),
                  "tensorflow", load, run, tf_io.version, tf_settings)
