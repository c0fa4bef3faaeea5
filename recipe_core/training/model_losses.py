"""The losses the checks on a user's own model know, and their formulas at init.

Two reference values per loss, computed from the targets alone (numpy, float64):
- uninformed: what a model that ignores its input and predicts "nothing" scores: even logits (ln C; ln 2 per
  binary output), or a zero output (mean square, mean |y|, mean Huber of y). A sound init starts near it.
- best constant: the best any input-blind model can do: the entropy of the class prior (of each label's rate for
  binary cross-entropy), the variance (squared error), the mean distance to the median (L1), the Huber loss at its
  minimizing constant. The last layer's bias set to that constant ("init well") starts training there.

Shapes: cross-entropy takes logits [N, C] for labels [N], or [N, T, C] for [N, T] (classes last); the other losses
take an output with as many values per example as the target ([N] and [N, 1] are the same thing).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from recipe_core.errors import BadInput

LOSSES = ("cross_entropy", "bce", "mse", "l1", "huber")
HUBER_DELTA = 1.0
IMBALANCE_RATIO = 1.5  # "init well" advice when the most common class is this many times as common as the rarest
MEAN_FAR = 0.5  # ... or when a regression target's mean is more than this many standard deviations from 0
ABSENT_CLASS_PROB = 1e-6  # the prior given to a class the labels never show (its log is the bias advised)
# "Near zero" when overfitting one batch: cross-entropy as the app's own check (checks.OVERFIT_CLASS_LOSS); for
# the regression losses a fraction of the batch's best-constant loss: 1% of the variance for squared error, and for
# L1 10% of the mean distance to the median (the same 10%-of-the-spread residual as 1% of a variance).
NEAR_ZERO_CLASS = 0.05
SCALE_FAR = 10.0  # a regression target whose mean or std passes this is worth standardizing (the hint of a red)
NEAR_ZERO_FRACTION = {"mse": 0.01, "huber": 0.01, "l1": 0.10}


def infer_loss(y: np.ndarray, causal: bool = False) -> str:
    """Integer labels: cross-entropy (classes, or next tokens when causal); anything else: MSE."""
    y = np.asarray(y)
    return "cross_entropy" if np.issubdtype(y.dtype, np.integer) else "mse"


def check_name(loss: str) -> str:
    if loss not in LOSSES:
        raise BadInput(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
    return loss


def align(loss: str, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output and the target in the shapes the loss function takes, or one line saying why not."""
    if loss == "cross_entropy":
        if out.dim() == y.dim() + 1 and tuple(out.shape[:-1]) == tuple(y.shape):
            return out.reshape(-1, out.shape[-1]), y.reshape(-1).long()
        raise BadInput(f"cross-entropy needs logits [N, C] for labels [N] (or [N, T, C] for [N, T]); the model "
                       f"returned {list(out.shape)} for labels {list(y.shape)}")
    if out.shape[:1] == y.shape[:1] and out.numel() == y.numel():
        return out.reshape(y.shape), y.to(out.dtype if out.is_floating_point() else torch.float32)
    raise BadInput(f"{loss} needs one output per target value; the model returned {list(out.shape)} "
                   f"for targets {list(y.shape)}")


def loss_value(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean loss over every target value (PyTorch's default reduction)."""
    out, y = align(loss, out, y)
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(out, y)
    if loss == "mse":
        return F.mse_loss(out, y)
    if loss == "l1":
        return F.l1_loss(out, y)
    return F.huber_loss(out, y, delta=HUBER_DELTA)


# -- formulas (numpy) --------------------------------------------------------------------------------------
def columns(y: np.ndarray) -> np.ndarray:
    """Targets as [N, K]: one column per output value."""
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(len(y), -1)


def huber(r: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    return np.where(a < HUBER_DELTA, 0.5 * r ** 2, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


def huber_center(y: np.ndarray, iterations: int = 100) -> np.ndarray:
    """The constant per column that minimizes the mean Huber loss: its derivative, mean(clip(c - y)), rises
    monotonically with c, so bisection between the column's min and max finds the root to float precision."""
    lo, hi = y.min(axis=0), y.max(axis=0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        rising = np.clip(mid - y, -HUBER_DELTA, HUBER_DELTA).mean(axis=0) > 0
        hi, lo = np.where(rising, mid, hi), np.where(rising, lo, mid)
    return (lo + hi) / 2


def class_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(y).reshape(-1).astype(np.int64)
    return np.bincount(labels, minlength=n_classes)[:n_classes] / max(len(labels), 1)


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def binary_entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return np.where((p <= 0) | (p >= 1), 0.0, -(q * np.log(q) + (1 - q) * np.log(1 - q)))


def uninformed(loss: str, y: np.ndarray, n_classes: int | None = None) -> float:
    """The loss of even logits (classification) or a zero output (regression)."""
    if loss == "cross_entropy":
        return math.log(n_classes)
    if loss == "bce":
        return math.log(2)
    y = columns(y)
    if loss == "mse":
        return float(np.mean(y ** 2))
    if loss == "l1":
        return float(np.mean(np.abs(y)))
    return float(np.mean(huber(y)))


def best_constant(loss: str, y: np.ndarray, n_classes: int | None = None) -> tuple[float, list[float]]:
    """The lowest loss an input-blind model reaches, and the last-layer bias that gives it (log-probabilities of
    the prior for cross-entropy, each label's logit for bce, each column's mean / median / Huber centre)."""
    if loss == "cross_entropy":
        prior = class_prior(y, n_classes)
        return entropy(prior), np.log(np.maximum(prior, ABSENT_CLASS_PROB)).tolist()
    y = columns(y)
    if loss == "bce":
        rate = np.clip(y.mean(axis=0), ABSENT_CLASS_PROB, 1 - ABSENT_CLASS_PROB)
        return float(binary_entropy(y.mean(axis=0)).mean()), np.log(rate / (1 - rate)).tolist()
    if loss == "mse":
        center = y.mean(axis=0)
        return float(np.mean((y - center) ** 2)), center.tolist()
    if loss == "l1":
        center = np.median(y, axis=0)
        return float(np.mean(np.abs(y - center))), center.tolist()
    center = huber_center(y)
    return float(np.mean(huber(y - center))), center.tolist()


def imbalanced(loss: str, y: np.ndarray, n_classes: int | None = None) -> bool:
    """Whether starting from the best constant instead of the uninformed output is worth advising."""
    if loss == "cross_entropy":
        prior = class_prior(y, n_classes)
        return bool(prior.min() <= 0 or prior.max() / prior.min() > IMBALANCE_RATIO)
    y = columns(y)
    if loss == "bce":
        rate = y.mean(axis=0)
        both = np.stack([rate, 1 - rate])
        return bool(((both.min(axis=0) <= 0) | (both.max(axis=0) / np.maximum(both.min(axis=0), 1e-300)
                                                 > IMBALANCE_RATIO)).any())
    return bool((np.abs(y.mean(axis=0)) > MEAN_FAR * y.std(axis=0)).any())


def describe(loss: str) -> tuple[str, str]:
    """How the message names the uninformed value and the best constant of a loss."""
    return {"cross_entropy": ("ln C, even logits", "the class prior's entropy"),
            "bce": ("ln 2, even logits", "each label's binary entropy"),
            "mse": ("the mean square of the target, a zero output", "the target's variance"),
            "l1": ("the mean |target|, a zero output", "the mean distance to the median"),
            "huber": ("the mean Huber loss of the target, a zero output", "the Huber loss at its best constant"),
            }[loss]


def bias_name(loss: str) -> str:
    return {"cross_entropy": "the log of the class prior", "bce": "the logit of each label's rate",
            "mse": "the target's mean", "l1": "the target's median", "huber": "the target's Huber centre"}[loss]


# -- overfitting one batch ---------------------------------------------------------------------------------
def near_zero(loss: str, y: np.ndarray, n_classes: int | None = None) -> float:
    if loss in ("cross_entropy", "bce"):
        return NEAR_ZERO_CLASS
    return NEAR_ZERO_FRACTION[loss] * max(best_constant(loss, y)[0], 1e-12)


def irreducible(loss: str, groups: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> tuple[float, int]:
    """The lowest loss any model reaches on a batch: identical inputs (one group id each) get one prediction, so
    the best it can do is each group's best constant, position by position (a sequence's position t is its own
    prediction). Returns the floor averaged over every target value, and the examples whose input recurs with
    another target."""
    y = np.asarray(y)
    n = len(y)
    flat = y.reshape(n, -1)
    total, ambiguous = 0.0, 0
    for g in np.unique(groups):
        rows = flat[groups == g]
        if len(rows) < 2 or (rows == rows[0]).all():
            continue
        ambiguous += len(rows)
        if loss == "cross_entropy":  # entropy of the labels at each position, over the group's copies
            value = np.mean([entropy(class_prior(rows[:, t], n_classes)) for t in range(rows.shape[1])])
        else:
            value = best_constant(loss, rows)[0]
        total += value * len(rows)
    return (total / n if n else 0.0), ambiguous
