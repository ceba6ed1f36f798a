"""TensorFlow SavedModels, called through their ``serving_default`` signature.

Feeds reach TensorFlow through DLPack (``tf_io.Feeder``: an aligned array as it is, any other
copied into a buffer the session keeps) rather than a fresh ``tf.constant`` per call. TensorFlow's inference conversion
(variables folded into constants, ``convert_variables_to_constants_v2``) was measured and not
adopted: no faster here (docs/benchmarks.md, "Best configuration per runtime").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploytool import tf_io
from deploytool.runtimes import Runtime, Settings


@dataclass
class Session:
    model: Any  # kept referenced: the signature uses its variables
    fn: Any
    feeder: tf_io.Feeder


def load(path, settings):
    import tensorflow as tf

    tf_io.set_threads(settings)
    model = tf.saved_model.load(str(path))
    return Session(model, model.signatures[tf_io.SIGNATURE], tf_io.Feeder())


def run(session, feeds):
    return tf_io.signature_call(session.fn, feeds, session.feeder)


def describe(session):
    return tf_io.signature_io(session.fn)


def settings(_session=None) -> Settings:
    import tensorflow as tf

    # 0: TensorFlow's default (chosen by the runtime, not readable here).
    return Settings(tf.config.threading.get_intra_op_parallelism_threads() or None,
                    tf.config.threading.get_inter_op_parallelism_threads() or None)


RUNTIME = Runtime("tensorflow", "TensorFlow (SavedModel serving signature)", ("tensorflow",),
                  "tensorflow", load, run, tf_io.version, settings, describe)
