"""Metrics on the whole validation split, each with a 95% interval.

Means of per-example losses (log loss, squared and absolute error) get a seeded percentile bootstrap, which stays
in [0, inf) like the loss itself; accuracy a Wilson interval; balanced accuracy, macro F1 and R2 a seeded bootstrap.
"""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP = 200  # resamples; enough for a 95% percentile interval to two digits
# Resamples of a mean loss, vectorised: 1000 of 20k validation rows took 0.45 s on this (busy, 2-core) machine;
# past MEAN_BOOTSTRAP_WORK resampled values in all, fewer resamples (never under BOOTSTRAP) keep a large
# validation split from costing seconds.
MEAN_BOOTSTRAP = 1000
MEAN_BOOTSTRAP_WORK = 20_000_000
BOOTSTRAP_CHUNK = 4_000_000  # resampled values drawn at once: 16 MB of int32 indices
PROB_FLOOR = 1e-15  # a probability of exactly 0 on the true class would make the log loss infinite


def per_example_loss(task: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Cross-entropy of each example's true class, or its squared error: the loss the models are trained on."""
    if task == "classification":
        return -np.log(np.clip(pred[np.arange(len(y)), y.astype(int)], PROB_FLOOR, None))
    return (pred - y) ** 2


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: sensible at 0%, 100% and small n, unlike the normal one."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, center - half), min(1.0, center + half))


def mean_interval(values: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap of a mean over the validation rows. The normal interval (mean +- 1.96 sd/sqrt n)
    of a skewed loss, mostly near 0 with a few huge values, reaches below 0; a mean of resampled non-negative
    values cannot."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    resamples = max(BOOTSTRAP, min(MEAN_BOOTSTRAP, MEAN_BOOTSTRAP_WORK // n))
    per_chunk = max(1, BOOTSTRAP_CHUNK // n)
    rng = np.random.default_rng(seed)
    means = np.concatenate([
        values[rng.integers(0, n, (min(per_chunk, resamples - done), n), dtype=np.int32)].mean(axis=1)
        for done in range(0, resamples, per_chunk)])
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def confusion(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    return np.bincount(y.astype(int) * n_classes + predicted.astype(int),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _balanced_accuracy(cm: np.ndarray) -> float:
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _macro_f1(cm: np.ndarray) -> float:
    # Over the classes present in the truth or the predictions, as scikit-learn's f1_score(average="macro").
    tp = np.diag(cm).astype(float)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present]))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total > 0 else math.nan


def _bootstrap(stat, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)]
    values = [v for v in values if math.isfinite(v)]
    if len(values) < BOOTSTRAP // 2:
        return (math.nan, math.nan)
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def evaluate(task: str, y: np.ndarray, pred: np.ndarray, n_classes: int = 0, seed: int = 0) -> dict:
    """{"metrics": {"val_loss", ...}, "intervals": {name: [low, high]}, "confusion": [[...]] (classification)}."""
    losses = per_example_loss(task, y, pred)
    n = len(y)
    metrics = {"val_loss": float(losses.mean())}
    intervals = {"val_loss": mean_interval(losses, seed + 2)}
    out = {"n": n}
    if task == "classification":
        predicted = pred.argmax(axis=1)
        correct = int((predicted == y).sum())
        cm = confusion(y, predicted, n_classes)
        metrics |= {"val_accuracy": correct / n, "val_balanced_accuracy": _balanced_accuracy(cm),
                    "val_macro_f1": _macro_f1(cm)}
        intervals["val_accuracy"] = wilson(correct, n)
        codes = y.astype(int) * n_classes + predicted

        def resampled(name):
            fn = _balanced_accuracy if name == "ba" else _macro_f1
            return lambda idx: fn(np.bincount(codes[idx], minlength=n_classes * n_classes).reshape(n_classes, -1))

        intervals["val_balanced_accuracy"] = _bootstrap(resampled("ba"), n, seed)
        intervals["val_macro_f1"] = _bootstrap(resampled("f1"), n, seed + 1)
        out["confusion"] = cm.tolist()
    else:
        errors = np.abs(pred - y)
        metrics |= {"val_mse": metrics["val_loss"], "val_mae": float(errors.mean()), "val_r2": _r2(y, pred)}
        intervals |= {"val_mse": intervals["val_loss"], "val_mae": mean_interval(errors, seed + 3),
                      "val_r2": _bootstrap(lambda idx: _r2(y[idx], pred[idx]), n, seed)}
    out["metrics"] = metrics
    out["intervals"] = {k: [float(a), float(b)] for k, (a, b) in intervals.items()}
    return out


def sig4(x) -> str:
    """Four significant digits, the recipe's rule for reporting a metric."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.4g}"
