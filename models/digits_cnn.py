"""digits_cnn: the default reference model.

A small CNN trained on scikit-learn's bundled 8x8 handwritten digits (no download).
Input: ``image`` float32 [batch, 1, 8, 8], pixel values scaled to [0, 1] (raw 0..16 / 16).
Output: ``logits`` float32 [batch, 10].

Weights: ``digits_cnn.pt`` beside this file, a state dict written by
``python scripts/train_digits_cnn.py`` (deterministic: same torch version, same weights).
Held-out accuracy is recorded in ``digits_cnn.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "digits_cnn.pt"
METRICS = HERE / "digits_cnn.json"

DESCRIPTION = "small CNN trained on scikit-learn's 8x8 digits (default model)"
INPUTS = [
    {"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"},
]
OUTPUTS = [
    {"name": "logits", "shape": ["batch", 10], "dtype": "float32", "kind": "classifier"},
]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 1024}}

SPLIT_SEED = 0
TEST_FRACTION = 0.25


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed train/held-out split of sklearn's digits: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(round(len(x) * TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def build() -> nn.Module:
    model = DigitsCNN()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def example_inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    _, _, x_test, _ = load_split()
    return (torch.from_numpy(x_test[:batch].copy()),)


def golden_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Real held-out digits (not noise): ``n`` samples of batch 1, chosen by ``seed``."""
    _, _, x_test, y_test = load_split()
    idx = np.random.default_rng(seed).choice(len(x_test), size=min(n, len(x_test)), replace=False)
    return {"image": x_test[idx][:, None]}


def calibration_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Training digits for int8 calibration: never the held-out digits used for golden data and accuracy."""
    x_train, _, _, _ = load_split()
    idx = np.random.default_rng(seed).choice(len(x_train), size=min(n, len(x_train)), replace=False)
    return {"image": x_train[idx][:, None]}


def labelled_data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All held-out digits with their labels (samples of batch 1): task accuracy per artifact."""
    _, _, x_test, y_test = load_split()
    return {"image": x_test[:, None]}, y_test


def recorded_accuracy() -> dict:
    return json.loads(METRICS.read_text())
