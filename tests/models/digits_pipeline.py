"""A pipeline for digits_cnn (``validate --pipeline``): raw samples are scikit-learn's 8x8 digits as uint8 0..16,
[N, 8, 8]; the model takes float32 [N, 1, 8, 8] scaled to [0, 1]. No postprocess: THRESHOLD selects the built-in
softmax + threshold on the logits."""
import numpy as np

THRESHOLD = 0.5


def preprocess(raw):
    return {"image": (np.asarray(raw, dtype=np.float32) / 16.0)[:, None]}
