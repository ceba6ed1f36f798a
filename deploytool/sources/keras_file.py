"""A Keras model file (``.keras``): TensorFlow is the source, Keras computes the reference."""
from deploytool.sources import SourceKind, _tf

SOURCE = SourceKind(name="keras", framework="tensorflow", description="a .keras file (TensorFlow is the source)",
                    order=40, claim=_tf.claim_keras, load=_tf.load, reference_runtime="keras")
