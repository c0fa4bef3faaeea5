"""What the checks on a user's own model take in, and refuse before any check runs: the arrays as tensors, the
targets in the loss's dtype, a fresh model from the factory (seeded), and a first forward on two examples whose
output the loss can take. Each refusal is one line; whatever the user's code raises becomes one line too (guarded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from recipe_core.errors import BadInput, RecipeError, first_line
from recipe_core.training import model_losses as losses
from recipe_core.training.model_losses import align, infer_loss
from recipe_core.training.probes import forward, mode


# -- arrays -----------------------------------------------------------------------------------------------------
def as_tensor(value, what: str) -> torch.Tensor:
    t = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if t.dtype == torch.bool:
        return t.float()
    if t.is_floating_point():
        return t.float()
    if t.is_complex():
        raise BadInput(f"{what} is {t.dtype}: use real numbers")
    return t.long()


def as_tensors(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy arrays or tensors; floats become float32, integers int64, bools float32 (0/1)."""
    try:
        xt, yt = as_tensor(x, "x"), as_tensor(y, "y")
    except (TypeError, ValueError) as e:
        raise BadInput(f"x and y must be numeric arrays: {first_line(e)}") from None
    if xt.dim() == 0 or yt.dim() == 0:
        raise BadInput("x and y need the examples first: arrays with at least one dimension")
    if len(xt) != len(yt):
        raise BadInput(f"x has {len(xt)} examples and y has {len(yt)}: they must match")
    if len(xt) == 0:
        raise BadInput("no examples")
    return xt, yt


def target_for(loss: str, y: torch.Tensor) -> torch.Tensor:
    """The target in the dtype its loss takes, or one line saying why it cannot be."""
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise BadInput("y holds NaN or inf values")
    if loss == "cross_entropy":
        if y.is_floating_point():
            if not bool((y == y.round()).all()):
                raise BadInput("cross-entropy needs integer class labels; y holds fractions")
            y = y.long()
        if int(y.min()) < 0:
            raise BadInput(f"cross-entropy needs class labels from 0; y holds {int(y.min())}")
        return y
    y = y.float()
    if loss == "bce" and not bool(((y >= 0) & (y <= 1)).all()):
        raise BadInput("bce needs targets between 0 and 1")
    return y


def fresh(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    try:
        model = factory()
    except RecipeError:
        raise
    except Exception as e:  # noqa: BLE001 - anything the user's factory raises
        raise BadInput(f"the factory raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise BadInput(f"the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def n_classes_of(loss: str, out: torch.Tensor, y: torch.Tensor, every: torch.Tensor | None = None) -> int | None:
    """Cross-entropy: the classes the model's logits out (for the labels y) have, once the shapes agree and every
    label (every, default y: all the rows, not only those out was computed on) is one of them; else one line."""
    if loss != "cross_entropy":
        return None
    align(loss, out, y)  # the shapes, or one line
    c = int(out.shape[-1])
    top = int((y if every is None else every).max())
    if top >= c:
        raise BadInput(f"y holds class {top}, but the model returns logits for {c} classes (0 to {c - 1})")
    return c


# -- before the checks --------------------------------------------------------------------------------------
def guarded(name: str, run: Callable[[], object]):
    """One check; an exception from the user's model or factory becomes one line naming the check."""
    try:
        return run()
    except RecipeError:
        raise
    except Exception as e:  # noqa: BLE001 - anything the user's code raises
        raise BadInput(f"the model raised {type(e).__name__}: {first_line(e)} (during {name})") from None


@dataclass(frozen=True)
class Prepared:
    """The data as the checks use it (a seeded subset of at most `rows`) and what the factory builds."""
    x: torch.Tensor
    y: torch.Tensor
    loss: str
    model_name: str


def prepare(factory: Callable[[], nn.Module], x, y, loss: str | None = None, causal: bool = False,
            rows: int = 4096, seed: int = 0) -> Prepared:
    """Everything that can be refused before a check runs, each in one line: the arrays, the targets for the loss,
    a factory that is a model, a model that raises on two examples or returns a shape the loss cannot take."""
    if isinstance(factory, nn.Module):
        raise BadInput(f"pass a factory that builds a fresh model (the class, or `lambda: {type(factory).__name__}"
                       "(...)`), not a model: the twins each need a new one")
    xt, yt = as_tensors(x, y)
    inferred = loss is None
    loss = losses.check_name(loss or infer_loss(yt.numpy(), causal))
    yt = target_for(loss, yt)
    kept = torch.from_numpy(np.random.default_rng(seed).permutation(len(xt))[:rows])  # a seeded subset
    xt, yt = xt[kept], yt[kept]
    model = fresh(factory, seed)
    try:
        with torch.no_grad(), mode(model, False):
            out = guarded("a first forward", lambda: forward(model, xt[:2]))
        align(loss, out, yt[:2])
        n_classes_of(loss, out, yt[:2], every=yt)  # before any check trains on a label the model cannot give
    except BadInput as e:
        if inferred and loss == "mse" and bool((yt == yt.round()).all()):
            raise BadInput(f"{e} (the loss defaulted to mse because y is float; for class labels pass "
                           "loss='cross_entropy', --loss cross_entropy, or save y as integers)") from None
        raise
    return Prepared(xt, yt, loss, type(model).__name__[:64])


def looks_like_sequences(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Token ids [N, T] with targets [N, T]: a sequence model, whose causality is worth a check."""
    return not x.is_floating_point() and x.dim() == 2 and tuple(y.shape) == tuple(x.shape) and x.shape[1] > 1
