"""The recipe's sanity checks. Each returns a verdict with its numbers (verdicts.py): ok True, False or None.

ok is None when a check does not apply (the prior baseline has no inputs, trees have no loss at init) or cannot
decide (a capacity ladder that learned nothing: "inconclusive").
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from recipe_core.training import features, verdicts
from recipe_core.training.loop import flush_denormals, loss_fn, mean_loss, predict, train_mlp

LOSS_AT_INIT_TOL = 0.02  # relative: the measured step-0 loss must be within 2% of the formula
OVERFIT_N = 8  # examples in the batch to overfit
OVERFIT_MAX_STEPS = 3000
OVERFIT_CLASS_LOSS = 0.05  # "near zero" for cross-entropy: every example right, with confidence
OVERFIT_REG_FRACTION = 0.01  # "near zero" for squared error: under 1% of the batch's variance
INPUT_MARGIN = 0.02  # the real model's validation loss must be at least 2% under its zero-input twin's
CAPACITY_TOL = 0.02  # a wider net may end at most 2% above the narrower one (noise), not more
CAPACITY_STEPS = 300
# A capacity verdict needs a ladder that learned: the best width must end at least 20% under its loss at init.
# Rises are judged at 2% (CAPACITY_TOL), so a ladder that fell less than ten times that cannot tell a bigger
# model fitting worse from no model fitting at all. Measured with the default config: the regression ladder
# fell 5% (1.59e7 -> 1.506e7); on the sample datasets the best width fell 52% (diabetes) to 99% (wine, digits).
CAPACITY_MIN_FALL = 0.20
CAPACITY_ROWS = 512


def expected_loss_at_init(task: str, y_train: np.ndarray, n_classes: int, bias_init: bool) -> float:
    """The formula: entropy of the class prior (prior-bias init) or ln C (uniform logits); for regression the
    target's variance around its mean (mean-bias init) or its mean square (zero output)."""
    if task == "classification":
        if not bias_init:
            return math.log(n_classes)
        prior = np.bincount(y_train.astype(int), minlength=n_classes) / len(y_train)
        prior = prior[prior > 0]
        return float(-(prior * np.log(prior)).sum())
    y = y_train.astype(float)
    return float(np.var(y)) if bias_init else float(np.mean(y ** 2))


def loss_at_init(expected: float, measured: float, bias_init: bool,
                 tol: float = LOSS_AT_INIT_TOL) -> verdicts.LossAtInit:
    ok = abs(measured - expected) <= tol * abs(expected) + 1e-6
    how = "with the last-layer bias initialized" if bias_init else "without bias init"
    message = (f"step-0 loss {measured:.4g} matches the formula {expected:.4g} ({how})" if ok else
               f"step-0 loss {measured:.4g} is far from the formula {expected:.4g} ({how}): "
               "check the last layer's init")
    return verdicts.LossAtInit(bool(ok), message, expected=expected, measured=measured, tolerance=tol)


def irreducible_loss(X: torch.Tensor, y: torch.Tensor, task: str) -> dict:
    """The lowest loss any model can reach on a batch: identical inputs get one prediction, so where their labels
    differ the best it can do is their label distribution (cross-entropy: the entropy of the labels within each
    group of identical inputs) or their mean (squared error: the variance within each group), averaged over all
    the examples. Zero when every input is distinct or its copies agree."""
    groups = features.input_groups(X.numpy())
    labels = y.numpy().astype(np.int64 if task == "classification" else np.float64)
    n = len(labels)
    size = np.bincount(groups)
    # examples whose input recurs with another label
    ambiguous = int(size[features.labels_per_group(groups, labels) > 1].sum())
    if n == 0 or ambiguous == 0:
        floor = 0.0
    elif task == "classification":
        pairs, count = np.unique(np.stack([groups, labels], axis=1), axis=0, return_counts=True)
        floor = float(-(count * np.log(count / size[pairs[:, 0]])).sum() / n)  # n_g * entropy, summed over groups
    else:
        group_mean = np.bincount(groups, weights=labels) / size
        floor = float(np.mean((labels - group_mean[groups]) ** 2))
    return {"floor": floor, "n_ambiguous": ambiguous, "n_distinct": int(len(size))}


def overfit_one_batch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, lr: float,
                      max_steps: int = OVERFIT_MAX_STEPS) -> verdicts.OverfitOneBatch:
    """Train a fresh model on a few examples, full batch, until the loss is near its floor (or give up).

    The floor is the batch's irreducible loss (zero unless identical inputs carry different labels); near it is
    the floor plus the usual "near zero" margin."""
    flush_denormals()
    fn = loss_fn(task)
    if task == "classification":
        near_zero = OVERFIT_CLASS_LOSS
    else:
        near_zero = OVERFIT_REG_FRACTION * max(float(y.var(unbiased=False)), 1e-12)
    reachable = irreducible_loss(X, y, task)
    floor = reachable["floor"]
    threshold = floor + near_zero
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    model.train()
    curve, loss, step = [], math.inf, 0
    for step in range(1, max_steps + 1):
        out = fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        out.backward()
        optimizer.step()
        loss = float(out.detach())
        if step == 1 or step % 25 == 0:
            curve.append([step, loss])
        if loss <= threshold:
            break
    final = mean_loss(model, X, y, task)
    curve.append([step, final])
    pred = predict(model, X, task)
    labels = y.numpy().tolist()
    shown = pred.argmax(axis=1).tolist() if task == "classification" else pred.tolist()
    ok = final <= threshold
    target = (f"floor {floor:.3g} from {reachable['n_ambiguous']} identical inputs with different labels, "
              f"+ {near_zero:.3g} = {threshold:.3g}" if floor > 0 else f"near zero is {threshold:.3g}")
    message = (f"{len(X)} examples trained to loss {final:.3g} in {step} steps ({target})" if ok else
               f"{len(X)} examples still at loss {final:.3g} after {step} steps ({target}): "
               "the model cannot fit even one batch; look for a bug, a zero learning rate or too little capacity")
    return verdicts.OverfitOneBatch(bool(ok), message, n=len(X), steps=step, final_loss=final, threshold=threshold,
                                    floor=floor, n_ambiguous=reachable["n_ambiguous"],
                                    n_distinct=reachable["n_distinct"], labels=labels, predictions=shown, curve=curve)


def input_independent(real_val_loss: float, twin_val_loss: float, real_train_loss: float | None = None,
                      twin_train_loss: float | None = None,
                      margin: float = INPUT_MARGIN) -> verdicts.InputIndependent:
    """The real model must beat its twin trained on zeroed inputs by a margin, on the validation split."""
    ok = real_val_loss <= twin_val_loss * (1 - margin)
    gain = 1 - real_val_loss / twin_val_loss if twin_val_loss > 0 else math.nan
    if ok:
        message = f"validation loss {real_val_loss:.4g} vs {twin_val_loss:.4g} with zeroed inputs ({gain:.1%} better)"
    else:
        message = (f"the model does not use its input: validation loss {real_val_loss:.4g} vs {twin_val_loss:.4g} "
                   f"with zeroed inputs (needs {margin:.0%} better)")
        if real_train_loss is not None and twin_train_loss is not None and real_train_loss < 0.9 * twin_train_loss:
            message += (f"; its training loss is lower ({real_train_loss:.4g} vs {twin_train_loss:.4g}), so what it "
                        "learned from the input does not generalize: it overfits, or the input holds no signal")
    return verdicts.InputIndependent(bool(ok), message, real_val_loss=real_val_loss, twin_val_loss=twin_val_loss,
                                     real_train_loss=real_train_loss, twin_train_loss=twin_train_loss, margin=margin)


def batch_independence(model: nn.Module, X: torch.Tensor) -> verdicts.BatchIndependence:
    """Backprop from one example's output: the gradient must reach that example's input and no other."""
    was_training = model.training
    model.train()  # in train mode, where batch-mixing layers (batch norm, a wrong view/transpose) do mix
    try:
        for i in range(len(X)):
            x = X.clone().requires_grad_(True)
            model(x)[i].sum().backward()
            reach = x.grad.abs().sum(dim=1)
            if reach[i] > 0:
                break
        else:
            return verdicts.BatchIndependence(False, "no example's output has any gradient to its input")
    finally:
        model.train(was_training)
    others = torch.cat([reach[:i], reach[i + 1:]])
    leaked = int((others > 0).sum())
    ok = leaked == 0
    message = (f"the gradient of example {i}'s output reaches only input {i} (of {len(X)})" if ok else
               f"the gradient of example {i}'s output reaches {leaked} other examples of the batch: "
               "something mixes information across the batch")
    return verdicts.BatchIndependence(ok, message, example=i, batch=len(X), other_inputs_reached=leaked,
                                      max_other_gradient=float(others.max()) if len(others) else 0.0,
                                      own_gradient=float(reach[i]))


def capacity(make_model: Callable[[int], nn.Module], X: torch.Tensor, y: torch.Tensor, task: str, lr: float,
             widths: list[int], steps: int = CAPACITY_STEPS, tol: float = CAPACITY_TOL,
             min_fall: float = CAPACITY_MIN_FALL) -> verdicts.Capacity:
    """Train each width on the same rows for the same steps: training loss must not rise as capacity grows.

    The ladder says something only if it learned: when no width ended at least min_fall below its own loss at
    init, a flat ladder shows nothing about capacity and the verdict is inconclusive (ok None), not a pass."""
    starts, losses = [], []
    for width in widths:  # the app's own loop, one full batch per epoch
        model = make_model(width)
        starts.append(mean_loss(model, X, y, task))
        model = train_mlp(model, X, y, task, epochs=steps, batch_size=len(X), lr=lr)
        losses.append(mean_loss(model, X, y, task))
    rises = [i for i in range(1, len(losses)) if losses[i] > losses[i - 1] * (1 + tol) + 1e-9]
    falls = [1 - end / start if start > 0 else 0.0 for start, end in zip(starts, losses, strict=True)]
    best = int(np.argmax(falls))
    learned = falls[best] >= min_fall
    ladder = ", ".join(f"{w}: {loss:.4g}" for w, loss in zip(widths, losses, strict=True))
    if rises:
        ok = False
        message = (f"training loss rises with capacity at width {widths[rises[0]]} ({ladder}): "
                   "a bigger model should fit the training data at least as well")
    elif not learned:
        ok = None
        message = (f"inconclusive: in {steps} steps no width learned enough to judge (the best, width "
                   f"{widths[best]}, went from {starts[best]:.4g} at init to {losses[best]:.4g}, {falls[best]:.1%} "
                   f"lower; a verdict needs {min_fall:.0%}) ({ladder}): try a larger learning rate, or a target "
                   "on a smaller scale")
    else:
        ok = True
        message = (f"training loss falls (or holds) as width grows ({ladder}), from {starts[best]:.4g} at init "
                   f"({falls[best]:.0%} lower at width {widths[best]})")
    return verdicts.Capacity(ok, message, widths=list(widths), train_losses=losses, init_losses=starts,
                             best_fall=falls[best], min_fall=min_fall, steps=steps, rows=len(X))


def reproducibility(metrics: dict, earlier: dict | None, earlier_id: str | None = None) -> verdicts.Verdict:
    """Same data, split, config, seed and code: the metrics must be identical to an earlier run's."""
    if earlier is None:
        return verdicts.Verdict(None, "no earlier run with this data, config, seed and code; run it again to check")
    differ = {k: [earlier.get(k), v] for k, v in metrics.items() if earlier.get(k) != v}
    ok = not differ
    message = (f"identical metrics to run {earlier_id} (same seed and config)" if ok else
               f"metrics differ from run {earlier_id} with the same seed and config: "
               + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in list(differ.items())[:3]))
    return verdicts.Reproducibility(ok, message, earlier_run=earlier_id, differences=differ)
