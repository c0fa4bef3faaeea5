"""A small CNN on scikit-learn's 8x8 digits, as 1 x 8 x 8 images, checked by the recipe.

    python examples/digits_cnn.py                      # the checks through the API; prints the report
    python -m recipe_core check examples/digits_cnn.py:make_model --data digits.npz   # save_data() writes it

make_model is the zero-argument factory the checks call (again for the zero-input twin); data() returns (x, y):
x float32 [N, 1, 8, 8] scaled to about mean 0, std 1 (the pixels are 0..16), y int64 class ids 0..9.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: recipe_core beside examples/


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool, one linear head: ~10k parameters, no BatchNorm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 16 x 4 x 4
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def make_model() -> nn.Module:
    return DigitsCNN()


def data() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()  # ships with scikit-learn: no download
    x = digits.images.astype(np.float32)[:, None]  # N x 1 x 8 x 8
    x = (x - x.mean()) / x.std()  # the net sees inputs near mean 0, std 1, as just_before_the_net shows
    return x, digits.target.astype(np.int64)


def save_data(path: str = "digits.npz") -> str:
    x, y = data()
    np.savez(path, x=x, y=y)
    return path


if __name__ == "__main__":
    import recipe_core as rc

    torch.set_num_threads(1)
    x, y = data()
    report = rc.check_model(make_model, x, y, loss="cross_entropy", name="digits CNN")
    print(report)
    print(f"run {report.run_id} in the store: open it on the Compare page")
    sys.exit(0 if report.ok else 1)
