"""One readable training loop for the MLP (with an on_step hook), boosting grown in chunks, and the losses.

Batches are whole-tensor index slices of a random permutation, not a DataLoader: on these CPUs the default
DataLoader (one __getitem__ per example, then collate) costs about a third of the throughput.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

EVAL_BATCH = 65_536


def flush_denormals() -> None:
    """Near zero loss, Adam's moments underflow into denormal floats, which x86 CPUs compute ~100x slower:
    overfitting one batch took 30 s instead of 1 s. Flushing them to zero changes nothing a loss can see."""
    torch.set_flush_denormal(True)


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out.squeeze(-1), y)


def target_tensor(y: np.ndarray, task: str) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.long if task == "classification" else torch.float32)


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """The shuffled positions of one epoch: batches are consecutive slices of it."""
    return torch.randperm(n, generator=generator)


def first_batch(n: int, batch_size: int, seed: int) -> np.ndarray:
    """Positions of the first batch train_mlp trains on with this seed (the Train page shows that very batch)."""
    return epoch_order(n, torch.Generator().manual_seed(seed))[:batch_size].numpy()


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, task: str) -> np.ndarray:
    """Probabilities (classification) or values, in eval mode, in large chunks."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(X[i:i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)]) if len(X) else None
    model.train(was_training)
    if out is None:
        return np.zeros((0,))
    return torch.softmax(out, dim=1).numpy() if task == "classification" else out.squeeze(-1).numpy().astype(float)


@torch.no_grad()
def mean_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str) -> float:
    """The loss over all of X (eval mode): never an average of per-batch numbers."""
    was_training = model.training
    model.eval()
    fn = loss_fn(task)
    total = sum(float(fn(model(X[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH])) * len(X[i:i + EVAL_BATCH])
                for i in range(0, len(X), EVAL_BATCH))
    model.train(was_training)
    return total / max(len(X), 1)


@dataclass(frozen=True)
class StepInfo:
    step: int  # optimizer steps taken so far
    epoch: int  # 0-based epoch of this step
    loss: torch.Tensor  # the batch's training loss, detached


def train_mlp(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, *, epochs: int, batch_size: int,
              lr: float, weight_decay: float = 0.0, seed: int = 0,
              on_step: Callable[[StepInfo], None] | None = None,
              on_epoch: Callable[[int, int], bool | None] | None = None) -> nn.Module:
    """Adam at a constant learning rate over shuffled mini-batches; on_epoch(epoch, step) after each epoch, which
    stops the training by returning True."""
    # -- setup
    flush_denormals()
    fn = loss_fn(task)
    # fused: one kernel for all parameters; on these CPUs a small net's step is mostly per-tensor overhead
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    generator = torch.Generator().manual_seed(seed)
    n, step = len(X), 0
    model.train()
    # -- loop
    for epoch in range(epochs):
        order = epoch_order(n, generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = fn(model(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(StepInfo(step, epoch, loss.detach()))
        if on_epoch is not None and on_epoch(epoch, step):  # True: stop here (early stopping)
            break
    return model


class EarlyStopping:
    """Patience on the validation loss: remembers the best epoch's weights, and says when to stop."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0  # 1-based; 0: the weights at initialization
        self.best_state: dict | None = None
        self.last_epoch = 0

    def update(self, epoch: int, val_loss: float, model: nn.Module) -> bool:
        """Record epoch (1-based) and its validation loss; True once patience epochs passed without a better one."""
        self.last_epoch = epoch
        if val_loss < self.best_loss:  # NaN never improves
            self.best_loss, self.best_epoch = val_loss, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Put the best epoch's weights back (a no-op when no epoch was recorded)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def grow_boosting(est, X: np.ndarray, y: np.ndarray, chunk: int,
                  on_chunk: Callable[[int], None] | None = None):
    """Fit a warm-started boosting model chunk trees at a time (same trees as one fit), calling on_chunk(n_trees)."""
    total = est.max_iter
    for n_trees in range(min(chunk, total), total + chunk, chunk):
        est.set_params(max_iter=min(n_trees, total))
        est.fit(X, y)
        if on_chunk is not None:
            on_chunk(est.n_iter_)
        if n_trees >= total:
            break
    return est

