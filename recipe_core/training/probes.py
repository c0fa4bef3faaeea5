"""Autograd probes of a user's model: which parameters get a gradient, which outputs depend on which inputs (the
exact batch matrix, and the T x T causality matrix of a sequence model), and the batch as it enters forward.

The dependency matrices come from ONE backward pass vectorized over its grad_outputs
(torch.autograd.grad(..., is_grads_batched=True)): row i backpropagates from output i only, weighted by a fixed
random vector (a plain ones vector can cancel: softmax outputs sum to 1, so their summed gradient is zero).
Token ids have no gradient, so the probes differentiate with respect to the first embedding's output instead.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from recipe_core.training import verdicts
from recipe_core.training.model_losses import loss_value

# Inputs whose features sit this far from mean 0, std 1 make the first layer's output (and so the logits) large at
# init: iris in centimetres starts 21% above ln 3 with PyTorch's default init.
UNSTANDARDIZED = 3.0
SHOWN_PAIRS = 10
SHOWN_NORMS = 64
IMAGE_COUNT = 16
IMAGE_SIDE = 64
CHANNELS_SHOWN = 64
RANDOM_SEED = 1234


def output_tensor(out) -> torch.Tensor:
    """The tensor a model returns, also from a tuple (first item), a dict or an object with .logits."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}, not a tensor")
    return out


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output tensor; float inputs in the dtype of its parameters (a float64 or bfloat16 model)."""
    if x.is_floating_point():
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), x.dtype)
        x = x.to(dtype)
    return output_tensor(model(x))


@contextmanager
def mode(model: nn.Module, training: bool):
    was = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was)


# -- gradients -----------------------------------------------------------------------------------------------
def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> verdicts.Gradients:
    """One forward and backward on a real batch (train mode): every parameter that requires grad must get a
    gradient that is not None, not all zeros, and finite."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        return verdicts.Gradients(None, "the model has no parameter that requires grad")
    model.zero_grad(set_to_none=True)
    with mode(model, True):
        loss_value(loss, forward(model, x), y).backward()
    without, non_finite, norms = [], [], {}
    for name, p in named:
        g = p.grad
        if g is None or not bool(g.ne(0).any()):
            without.append(name)
        elif not bool(torch.isfinite(g).all()):
            non_finite.append(name)
        if len(norms) < SHOWN_NORMS:
            norms[name] = float(g.norm()) if g is not None else 0.0
    model.zero_grad(set_to_none=True)
    ok = not without and not non_finite
    if ok:
        message = f"all {len(named)} parameters that require grad get a non-zero, finite gradient"
    else:
        parts = []
        if without:
            parts.append(f"{len(without)} {'gets' if len(without) == 1 else 'get'} no gradient: {', '.join(without)} "
                         "(unused or detached, or frozen "
                         "by mistake? set requires_grad=False on what should not train)")
        if non_finite:
            parts.append(f"{len(non_finite)} {'gets' if len(non_finite) == 1 else 'get'} a NaN/inf gradient: "
                         f"{', '.join(non_finite)}")
        message = f"of {len(named)} parameters that require grad, " + "; ".join(parts)
    return verdicts.Gradients(ok, message, checked=len(named), without=without, non_finite=non_finite, norms=norms)


# -- dependency matrices ------------------------------------------------------------------------------------
def is_tokens(x: torch.Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex())


@contextmanager
def embedding_capture(model: nn.Module, x: torch.Tensor):
    """Records the output of the first embedding call that takes the model's token ids (shape of x): the probes
    differentiate with respect to it. A list holding it once forward ran (empty: no such embedding)."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        if not seen and args and isinstance(args[0], torch.Tensor) and tuple(args[0].shape) == tuple(x.shape):
            seen.append(output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Embedding)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def differentiable_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(output, the tensor to differentiate by: x itself, or the token embeddings; None when there is none)."""
    if not is_tokens(x):
        x = x.detach().clone().requires_grad_(True)
        return forward(model, x), x
    with embedding_capture(model, x) as seen:
        out = forward(model, x)
    return out, (seen[0] if seen and seen[0].requires_grad else None)


def dependency(out: torch.Tensor, wrt: torch.Tensor, rows: int, row_of) -> tuple[torch.Tensor, bool]:
    """matrix[i][j] = sum |d (output row i . r) / d wrt[j]|, in one vectorized backward (batched=True) or, when
    an op has no batching rule, one backward per row (batched=False). row_of(i, out) selects output row i."""
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(RANDOM_SEED), dtype=out.dtype)
    grad_outputs = torch.zeros((rows, *out.shape), dtype=out.dtype)
    for i in range(rows):
        row_of(i, grad_outputs[i])[...] = row_of(i, r)
    try:
        g = torch.autograd.grad(out, wrt, grad_outputs=grad_outputs, is_grads_batched=True, retain_graph=True,
                                allow_unused=True)[0]
        batched = True
    except Exception:  # noqa: BLE001 - an op without a vmap rule: the per-row loop gives the same matrix
        g = torch.stack([torch.autograd.grad(out, wrt, grad_outputs=grad_outputs[i], retain_graph=True,
                                             allow_unused=True, materialize_grads=True)[0]
                         for i in range(rows)])
        batched = False
    if g is None:  # the output does not depend on wrt at all
        g = torch.zeros((rows, *wrt.shape), dtype=wrt.dtype)
    return g, batched


def scaled(matrix: torch.Tensor) -> np.ndarray:
    m = matrix.detach().double().numpy()
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else m


def batch_matrix(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray | None, bool]:
    """The B x B matrix of the batch x (row = output i, column = input j, largest 1), in the model's current mode."""
    out, wrt = differentiable_forward(model, x)
    if wrt is None:
        return None, True
    b = len(x)
    g, batched = dependency(out, wrt, b, lambda i, t: t[i])
    return scaled(g.abs().reshape(b, b, -1).sum(dim=2)), batched


def batch_norms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batch_independence(model: nn.Module, x: torch.Tensor, examples: int = 16) -> verdicts.BatchIndependence:
    """Exact: output i may depend on input i only. Train mode, where mixing layers mix; BatchNorm layers mix
    there by design (batch statistics), so when they do, eval mode must be free of mixing."""
    x = x[:examples]
    b = len(x)
    if b < 2:
        return verdicts.BatchIndependence(None, "needs at least 2 examples", batch=b)
    with mode(model, True):
        matrix, batched = batch_matrix(model, x)
    if matrix is None:
        return verdicts.BatchIndependence(None, "integer inputs and no nn.Embedding that takes them: no gradient "
                                          "to follow from the outputs back to the inputs", batch=b)
    how = "" if batched else " (one backward per example: an op of the model cannot be vectorized)"
    if not np.isfinite(matrix).all():
        return verdicts.BatchIndependence(None, f"the gradients hold NaN/inf: nothing to judge; see "
                                          f"just_before_the_net and loss_at_init{how}", batch=b)
    if matrix.max() <= 0:
        return verdicts.BatchIndependence(None, "no output depends on any input (all gradients are zero): "
                                          f"nothing to judge; see input_independent{how}", batch=b,
                                          matrix=matrix.tolist())
    pairs = verdicts.dependent_cells(matrix, future_only=False)
    norms = batch_norms(model)
    common = dict(batch=b, matrix=matrix.tolist(), pairs=pairs[:SHOWN_PAIRS], batch_norm=norms,
                  other_inputs_reached=len(pairs), own_gradient=float(np.diag(matrix).min()),
                  max_other_gradient=float(max((matrix[i][j] for i, j in pairs), default=0.0)))
    if not pairs:
        return verdicts.BatchIndependence(True, f"each of {b} outputs depends on its own input only{how}", **common)
    shown = ", ".join(f"{i}<-{j}" for i, j in pairs[:5])
    if norms:
        with mode(model, False):
            eval_matrix, _ = batch_matrix(model, x)
        eval_pairs = verdicts.dependent_cells(eval_matrix, future_only=False)
        if not eval_pairs:
            return verdicts.BatchIndependence(
                True, f"{len(pairs)} pairs of examples mix in train mode only, through BatchNorm "
                f"({', '.join(norms[:3])}): batch statistics mix the batch by design; none mix in eval mode{how}",
                **common)
        pairs = eval_pairs
        shown = ", ".join(f"{i}<-{j}" for i, j in pairs[:5])
        common |= dict(matrix=eval_matrix.tolist(), pairs=pairs[:SHOWN_PAIRS], other_inputs_reached=len(pairs))
        return verdicts.BatchIndependence(
            False, f"{len(pairs)} pairs (output<-input) mix even in eval mode, where BatchNorm does not: {shown}: "
            f"something else mixes the batch (a mean over dim 0, a wrong view or transpose){how}", **common)
    return verdicts.BatchIndependence(
        False, f"{len(pairs)} pairs of examples mix (output<-input): {shown}: the output of one example depends "
        f"on other examples of the batch (a mean over dim 0, a wrong view or transpose){how}", **common)


def causality(model: nn.Module, x: torch.Tensor) -> verdicts.Causality:
    """For one sequence, matrix[t][s] = |d output_t / d input_s|: output t may depend on inputs s <= t only."""
    x = x[:1]
    if x.dim() < 2:
        return verdicts.Causality(None, f"a sequence model takes [N, T, ...]; the input is {list(x.shape)}")
    t_len = x.shape[1]
    with mode(model, False):  # the architecture's dependence, without dropout's noise
        out, wrt = differentiable_forward(model, x)
        if wrt is None:
            return verdicts.Causality(None, "integer inputs and no nn.Embedding that takes them: no gradient to "
                                      "follow", length=t_len)
        if out.dim() < 2 or out.shape[1] != t_len:
            return verdicts.Causality(None, f"a sequence model returns [N, T, ...] for [N, T] inputs; it returned "
                                      f"{list(out.shape)}", length=t_len)
        g, batched = dependency(out, wrt, t_len, lambda t, tensor: tensor[:, t])
    matrix = scaled(g.abs().reshape(t_len, 1, t_len, -1)[:, 0].sum(dim=2))
    how = "" if batched else " (one backward per position: an op of the model cannot be vectorized)"
    if not np.isfinite(matrix).all():
        return verdicts.Causality(None, f"the gradients hold NaN/inf: nothing to judge{how}", length=t_len)
    leaks = verdicts.dependent_cells(matrix, future_only=True)
    common = dict(length=t_len, matrix=matrix.tolist())
    if not leaks:
        return verdicts.Causality(True, f"each of {t_len} positions depends only on itself and earlier ones{how}",
                                  **common)
    t, s = leaks[0]
    return verdicts.Causality(False, f"output at position {t} depends on input at position {s} > {t} "
                              f"({len(leaks)} future dependencies): a missing or wrong causal mask{how}",
                              first_leak=[t, s], **common)


# -- the batch as it enters forward ----------------------------------------------------------------------------
def first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


@contextmanager
def capture_batch(model: nn.Module):
    """A forward pre-hook: the first batch exactly as it enters model.forward (a list holding it once seen)."""
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        if not seen:
            found = first_tensor(args, kwargs)
            if found is not None:
                seen.append(found.detach().clone())

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def images_of(batch: torch.Tensor, labels) -> dict | None:
    """Up to 16 images of an N x C x H x W batch (C 1 or 3), strided to at most 64 a side, scaled to 0..255
    over the shown images together (their relative brightness kept); NaN and inf show as 0."""
    if batch.dim() != 4 or batch.shape[1] not in (1, 3) or not len(batch):
        return None
    shown = batch[:IMAGE_COUNT].double()
    step = max(1, math.ceil(max(shown.shape[2:]) / IMAGE_SIDE))  # one stride for both sides: the aspect kept
    shown = shown[:, :, ::step, ::step]
    finite = torch.isfinite(shown)
    values = shown[finite]
    lo, hi = (float(values.min()), float(values.max())) if values.numel() else (0.0, 0.0)
    scaled_images = torch.where(finite, (shown - lo) / (hi - lo) if hi > lo else shown * 0, torch.zeros_like(shown))
    pixels = (scaled_images * 255).round().clamp(0, 255).to(torch.int64)
    names = [str(v) for v in (labels[:len(pixels)] if labels is not None else [])]
    return {"images": pixels.tolist(), "labels": names, "shape": list(batch.shape)}


def describe_batch(batch: torch.Tensor, labels=None) -> tuple[verdicts.BatchSeen, dict | None]:
    values = batch.detach().double()
    finite = torch.isfinite(values)
    bad = int((~finite).sum())
    kept = values[finite]
    lo, hi = (float(kept.min()), float(kept.max())) if kept.numel() else (None, None)
    channels = []
    if values.dim() >= 2 and len(values):
        per = values.transpose(0, 1).reshape(values.shape[1], -1)[:CHANNELS_SHOWN]
        for c, row in enumerate(per):
            row = row[torch.isfinite(row)]
            channels.append({"channel": c, "mean": float(row.mean()) if row.numel() else None,
                             "std": float(row.std(unbiased=False)) if row.numel() else None})
    artifact = images_of(batch, labels)
    n_images = len(artifact["images"]) if artifact else 0
    dtype = str(batch.dtype).removeprefix("torch.")
    span = f"range [{lo:.4g}, {hi:.4g}]" if lo is not None else "no finite value"
    shape = "x".join(str(s) for s in batch.shape)
    picture = f", {n_images} images stored" if n_images else ""
    if bad:
        message = (f"the batch entering the model holds {bad} NaN/inf values (of {batch.numel()}): {shape} "
                   f"{dtype}, {span}; look at the data loading and the transforms")
    else:
        message = f"{shape} {dtype}, {span}{picture}{input_scale(batch)}"
    verdict = verdicts.BatchSeen(not bad, message, shape=list(batch.shape), dtype=dtype, min=lo, max=hi, nan=bad,
                                 channels=channels, images=n_images)
    return verdict, artifact


def input_scale(x: torch.Tensor) -> str:
    """A hint when float inputs are far from standardized (the usual cause of large logits at init), else ""."""
    if not x.is_floating_point() or x.ndim < 2 or len(x) < 2:
        return ""
    flat = x.detach().reshape(len(x), -1).double()
    flat = flat[:, torch.isfinite(flat).all(dim=0)]
    if flat.shape[1] == 0:
        return ""
    mean, std = flat.mean(dim=0).abs().max().item(), flat.std(dim=0).max().item()
    if mean <= UNSTANDARDIZED and std <= UNSTANDARDIZED:
        return ""
    return (f"; the inputs are not standardized (a feature's mean reaches {mean:.3g}, its std {std:.3g}): "
            "standardize them with the training rows' mean and std")


def batch_seen(model: nn.Module, x: torch.Tensor, y=None) -> tuple[verdicts.BatchSeen, dict | None]:
    """Run one forward on x with the pre-hook on: what forward received (args[0], else the first tensor kwarg)."""
    with capture_batch(model) as seen, torch.no_grad(), mode(model, False):
        forward(model, x)
    if not seen:
        return verdicts.BatchSeen(None, "the model's forward received no tensor"), None
    labels = y.tolist() if isinstance(y, torch.Tensor) else (list(y) if y is not None else None)
    return describe_batch(seen[0], labels)
