"""Train models/digits_cnn.pt deterministically on scikit-learn's bundled digits (no download).

    python scripts/train_digits_cnn.py          # writes models/digits_cnn.pt and models/digits_cnn.json

Same torch version + same seed -> the same weights (CPU, deterministic algorithms, one thread).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import digits_cnn  # noqa: E402

SEED = 0
EPOCHS = 30
BATCH = 64
LR = 2e-3


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits_cnn.load_split()
    model = digits_cnn.DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(SEED)
    for _epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
        train_pred = model(xt).argmax(1).numpy()
    acc = float((pred == y_test).mean())
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, digits_cnn.WEIGHTS)
    sha = hashlib.sha256(digits_cnn.WEIGHTS.read_bytes()).hexdigest()
    metrics = {
        "held_out_accuracy": round(acc, 4),
        "train_accuracy": round(float((train_pred == y_train).mean()), 4),
        "held_out_samples": int(len(y_test)),
        "train_samples": int(len(y_train)),
        "epochs": EPOCHS, "seed": SEED, "torch": torch.__version__,
        "weights_sha256": sha,
    }
    digits_cnn.METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
