"""Small user-style models for the checks on a user's own model: one deliberately broken model per check, and
correct ones that must stay green. A plain module (no fixtures), imported by several test files: keep names stable.

Every class takes its sizes in __init__; a factory is then `lambda: BatchMeanMLP(d, c)`, or `make_mlp(d, c)` itself.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def make_mlp(d: int, c: int, hidden: int = 32) -> nn.Module:
    """A correct MLP: d features in, c outputs (class logits, or c regression targets)."""
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, c))


class BatchMeanMLP(nn.Module):
    """Broken (batch_independence): subtracts the batch's mean from the hidden layer, so example i's output
    depends on every other example of the batch."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.first, self.last = nn.Linear(d, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        h = torch.relu(self.first(x))
        return self.last(h - h.mean(dim=0, keepdim=True))


class LogitsTimes50(nn.Module):
    """Broken (loss_at_init): the logits are scaled x50, so the step-0 loss is far above ln C."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.net = make_mlp(d, c, hidden)

    def forward(self, x):
        return 50.0 * self.net(x)


class UnusedLayer(nn.Module):
    """Broken (gradients): `extra` is built but never called in forward, so its weight and bias get no gradient."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.net = make_mlp(d, c, hidden)
        self.extra = nn.Linear(hidden, hidden)

    def forward(self, x):
        return self.net(x)


class IgnoresInput(nn.Module):
    """Broken (input_independent): computes its output from a constant, not from x (every parameter still gets a
    gradient, so only the zero-input twin shows it)."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.net = make_mlp(d, c, hidden)

    def forward(self, x):
        return self.net(torch.ones_like(x))


class CannotFit(nn.Module):
    """Broken (overfit_one_batch): squeezes each example into one number (the mean of its features), then a
    linear layer: each class owns one interval of that number, so 8 points with alternating labels cannot be fit."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.last = nn.Linear(1, c)

    def forward(self, x):
        return self.last(x.mean(dim=1, keepdim=True))


class BatchNormMLP(nn.Module):
    """Correct: BatchNorm mixes the batch in train mode by design (batch statistics); not a bug."""

    def __init__(self, d: int, c: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, c))

    def forward(self, x):
        return self.net(x)


class SmallCNN(nn.Module):
    """Correct: a small CNN for N x C x H x W images (8x8 digits: C=1)."""

    def __init__(self, channels: int = 1, c: int = 10, size: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * (size // 2) ** 2, c)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """A one-block decoder over token ids [N, T] returning logits [N, T, vocab]. causal=False is the broken one
    (causality): without its mask, position t attends to the future."""

    def __init__(self, vocab: int = 16, d: int = 16, heads: int = 2, max_len: int = 32, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(max_len, d)
        self.block = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, vocab)
        nn.init.normal_(self.head.weight, std=0.02)  # as GPT-2: logits near even at init, the loss near ln V
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        t = x.shape[1]
        h = self.tokens(x) + self.positions(torch.arange(t, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t) if self.causal else None
        return self.head(self.block(h, src_mask=mask, is_causal=self.causal))


# -- data ---------------------------------------------------------------------------------------------------
def blobs(n: int = 200, c: int = 3, d: int = 6, seed: int = 0, weights=None, noise: float = 0.0):
    """Classes around separated centres (learnable); weights: the class prior (imbalanced); noise: the fraction
    of labels replaced by a random class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=weights)
    x = rng.normal(size=(n, d)).astype(np.float32) + 3.0 * np.eye(c, d, dtype=np.float32)[y]
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, c, int(flip.sum()))
    return x, y.astype(np.int64)


def regression(n: int = 200, d: int = 6, seed: int = 0, offset: float = 0.0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = offset + scale * (x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=n))
    return x, y.astype(np.float32)


def next_token_text(n: int = 64, t: int = 12, vocab: int = 16, seed: int = 0):
    """Token sequences that count up modulo vocab from a random start: x [N, T] ids, y [N, T] the next ids."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, vocab, size=(n, 1))
    seq = (start + np.arange(t + 1)) % vocab
    return seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)


def log_prior(y: np.ndarray, c: int) -> list[float]:
    counts = np.bincount(y, minlength=c)
    return [math.log(k / len(y)) for k in counts]
