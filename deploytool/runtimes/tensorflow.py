"""TensorFlow SavedModels, called through their ``serving_default`` signature."""
from __future__ import annotations

from deploytool import tf_io
from deploytool.install import hint
from deploytool.runtimes import Runtime


def load(path, settings):
    import tensorflow as tf

    tf_io.set_threads(settings)
    model = tf.saved_model.load(str(path))
    return model, model.signatures[tf_io.SIGNATURE]


def run(session, feeds):
    _, fn = session
    return tf_io.signature_call(fn, feeds)


def describe(session):
    _, fn = session
    return tf_io.signature_io(fn)


RUNTIME = Runtime("tensorflow", "TensorFlow (SavedModel serving signature)", ("tensorflow",),
                  hint("tensorflow"), load, run, tf_io.version, tf_io.thread_settings,
                  describe)
