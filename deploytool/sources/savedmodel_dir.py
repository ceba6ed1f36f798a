"""A TensorFlow SavedModel directory: its ``serving_default`` signature is the source, and the
directory itself is the ``savedmodel`` artifact."""
from deploytool.sources import SourceKind, _tf

SOURCE = SourceKind(name="savedmodel", framework="tensorflow", order=50, claim=_tf.claim_savedmodel, load=_tf.load,
                    description="a SavedModel directory (TensorFlow is the source)", reference_runtime="tensorflow",
                    is_format="savedmodel")
