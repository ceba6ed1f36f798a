"""TensorFlow SavedModels, called through their ``serving_default`` signature."""
from __future__ import annotations

from deploytool.runtimes import Runtime


def set_threads(settings):
    import tensorflow as tf

    if settings.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(int(settings["threads"]))
    if settings.get("inter_op_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(int(settings["inter_op_threads"]))


def load(path, settings):
    import tensorflow as tf

    set_threads(settings)
    model = tf.saved_model.load(str(path))
    return model, model.signatures["serving_default"]


def run(session, feeds):
    import tensorflow as tf

    _, fn = session
    out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}


def version():
    import tensorflow as tf

    return tf.__version__


def settings(_session):
    import tensorflow as tf

    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


RUNTIME = Runtime("tensorflow", "TensorFlow (SavedModel serving signature)", ("tensorflow",),
                  "pip install 'deploytool[tensorflow]'", load, run, version, settings)
