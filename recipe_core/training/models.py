"""The baselines, simple to complex: prior (Dummy*), linear (logistic / ridge), gbm (histogram boosting), mlp (torch).

Every model predicts class probabilities (classification) or the target in its own units (regression).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from torch import nn

from recipe_core.config import TrainConfig

HEAD_INIT_SCALE = 0.01  # small last-layer weights: the step-0 output is the bias, so the loss at init is predictable


def estimator(config: TrainConfig, task: str):
    """The scikit-learn estimator for prior, linear and gbm."""
    classify = task == "classification"
    if config.model == "prior":
        return DummyClassifier(strategy="prior") if classify else DummyRegressor(strategy="mean")
    if config.model == "linear":
        if classify:
            return LogisticRegression(C=1.0 / config.l2, max_iter=2000, random_state=config.seed)
        return Ridge(alpha=config.l2, random_state=config.seed)
    if config.model == "gbm":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        # warm_start: the training loop grows the trees in chunks, to log curves, report progress and cancel.
        return cls(max_iter=config.gbm_iterations, learning_rate=config.gbm_learning_rate,
                   max_leaf_nodes=config.gbm_max_leaf_nodes, early_stopping=False, warm_start=True,
                   random_state=config.seed)
    raise ValueError(f"no scikit-learn estimator for model {config.model!r}")


def predict(est, X: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """Probabilities over all n_classes classes (columns 0..n_classes-1), or values. predict_proba has a column only
    per class seen in training (est.classes_): a class absent from the training split gets probability 0."""
    if task != "classification":
        return est.predict(X).astype(float)
    seen = est.predict_proba(X)
    if seen.shape[1] == n_classes:
        return seen
    out = np.zeros((len(X), n_classes))
    out[:, est.classes_] = seen
    return out


class MLP(nn.Module):
    """A small multi-layer perceptron: depth x (Linear, ReLU, Dropout), then a linear head."""

    def __init__(self, n_in: int, n_out: int, width: int = 64, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        layers, d = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout)]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def head_bias(task: str, y_train: np.ndarray, n_classes: int) -> np.ndarray:
    """The well-initialized last-layer bias: log class prior, or the training mean in the target's units."""
    if task == "classification":
        prior = np.bincount(y_train.astype(int), minlength=n_classes) / len(y_train)
        return np.log(np.clip(prior, 1e-12, None))
    return np.array([float(np.mean(y_train))])


def make_mlp(config: TrainConfig, n_in: int, task: str, y_train: np.ndarray, n_classes: int,
             width: int | None = None) -> MLP:
    """An MLP seeded by the config, with the last layer initialized as the recipe says."""
    torch.manual_seed(config.seed)
    n_out = n_classes if task == "classification" else 1
    model = MLP(n_in, n_out, width or config.width, config.depth, config.dropout)
    with torch.no_grad():
        model.head.weight.mul_(HEAD_INIT_SCALE)
        model.head.bias.zero_()
        if config.bias_init:
            model.head.bias.copy_(torch.as_tensor(head_bias(task, y_train, n_classes), dtype=torch.float32))
    return model


def n_parameters(model) -> int:
    if isinstance(model, nn.Module):
        return int(sum(p.numel() for p in model.parameters()))
    coef = getattr(model, "coef_", None)
    if coef is not None:
        return int(np.size(coef) + np.size(getattr(model, "intercept_", 0)))
    predictors = getattr(model, "_predictors", None)
    if predictors is not None:  # boosting: one node table per tree
        return int(sum(len(tree.nodes) for stage in predictors for tree in stage))
    return int(np.size(getattr(model, "class_prior_", getattr(model, "constant_", 0))))
