"""The recipe's checks on a user's own model: any torch.nn.Module, from a zero-argument factory, on the user's x, y.

run_all runs every check within a Budget and returns the verdicts (verdicts.py) and the artifacts to store with the
run. The autograd probes (gradients, batch and causal dependency, the batch as it enters forward) live in probes.py,
the losses and their formulas at init in model_losses.py; the checks that train live here.

Fixed choices, so that verdicts compare across runs: Adam everywhere; overfitting one batch at lr 3e-3 (fast to
near zero on 8 examples for MLPs, CNNs and small transformers alike); the zero-input twins at lr 1e-3 (Adam's
default) over minibatches of 64; the LR range from 1e-7 to 10.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from recipe_core import units
from recipe_core.errors import BadInput
from recipe_core.training import checks, features, verdicts
from recipe_core.training import model_losses as losses
from recipe_core.training.loop import flush_denormals
from recipe_core.training.model_inputs import (
    Prepared,
    as_tensors,
    fresh,
    guarded,
    looks_like_sequences,
    n_classes_of,
    prepare,
)
from recipe_core.training.model_losses import LOSSES, align, infer_loss, loss_value
from recipe_core.training.probes import (
    batch_independence,
    batch_seen,
    causality,
    forward,
    gradients,
    input_scale,
    mode,
    output_tensor,
)

__all__ = ["LOSSES", "Budget", "Prepared", "as_tensors", "batch_independence", "batch_seen", "causality",
           "gradients", "infer_loss", "input_independent", "loss_at_init", "lr_range", "output_tensor",
           "overfit_one_batch", "prepare", "run_all"]

TOLERANCE = 0.10  # loss_at_init: red above the uninformed value by more than this (relative); settings override
OVERFIT_LR = 3e-3
TWIN_LR = 1e-3
BATCH_SIZE = 64
MIN_TWIN_ROWS = 20  # fewer rows give a held-out split too small to tell two models apart
LR_START, LR_END = 1e-7, 10.0
LR_SMOOTHING = 0.98  # fastai's and Lightning's beta
LR_DIVERGED = 4.0  # stop once the smoothed loss is this many times its best (both finders' threshold)
LR_SKIP_BEGIN, LR_SKIP_END = 10, 1  # Lightning's suggestion ignores the first and last points
# A suggestion needs the smoothed loss to fall this much below where the range starts: on a flat curve (a model that
# ignores its input, dropout noise) the steepest point is noise, and the walk got 6e-07 from one.
LR_MIN_FALL = 0.10
FAR_ABOVE = {True: "the model starts confidently wrong (its logits at init are far from even); scale down the last "
                   "layer's weights (by 0.1, or zero them) so it starts at the uninformed loss",
             False: "the output at init is far larger than the target; scale down the last layer's init, or "
                    "standardize the target"}
INIT_ROWS = 512  # rows of the step-0 loss (in train mode, batches of 64 as training sees them)
GRADIENT_ROWS = 64
SEEN_ROWS = 64
EVAL_CHUNK = 256  # rows per forward when evaluating: bounded memory for large inputs


@dataclass(frozen=True)
class Budget:
    """How much work the checks may do: examples in the exact matrix, the overfit batch and its steps, the steps
    of each zero-input twin and of the LR range, and the rows used at most (the first after a seeded shuffle)."""
    matrix_examples: int = 16
    overfit_n: int = 8
    overfit_steps: int = 1000  # early stop: a model that fits takes far fewer (a small MLP on standardized data: 641)
    twin_steps: int = 300
    lr_steps: int = 100
    rows: int = 4096


# -- loss at init --------------------------------------------------------------------------------------------
BIAS_SHOWN = 10  # values of the advised bias in the message; all of them in the verdict's bias field


def fmt(values: list[float]) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:BIAS_SHOWN])
    return f"[{shown}, ... {len(values)} values]" if len(values) > BIAS_SHOWN else f"[{shown}]"


def loss_at_init(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str,
                 tolerance: float = TOLERANCE) -> verdicts.LossAtInit:
    """The step-0 loss (train mode, no update) against the formula: red when far above the uninformed value; green
    with "init well" advice (the exact last-layer bias) when the prior is imbalanced or the target's mean far from 0.
    expected is the best constant's loss (what the advised bias starts at), uninformed the even / zero output's."""
    c = None
    with torch.no_grad(), mode(model, True):
        if loss == "cross_entropy":
            c = n_classes_of(loss, forward(model, x[:BATCH_SIZE]), y[:BATCH_SIZE], every=y)
        measured = mean_loss(model, x, y, loss)
    labels = y.numpy()
    blind = losses.uninformed(loss, labels, c)
    best, bias = losses.best_constant(loss, labels, c)
    name_blind, name_best = losses.describe(loss)
    common = dict(expected=best, measured=measured, tolerance=tolerance, loss=loss, uninformed=blind)
    if not math.isfinite(measured):
        return verdicts.LossAtInit(False, f"the step-0 loss is {measured} (NaN/inf): look at the inputs "
                                   "(just_before_the_net) and the model's output", **common)
    limit = blind * (1 + tolerance)
    if measured > limit + 1e-12:
        return verdicts.LossAtInit(
            False, f"step-0 loss {measured:.4g} is far above the uninformed {blind:.4g} ({name_blind}; limit "
            f"{limit:.4g} at {tolerance:.0%}): {FAR_ABOVE[loss in ('cross_entropy', 'bce')]}{input_scale(x)}",
            **common)
    message = f"step-0 loss {measured:.4g}, not above the uninformed {blind:.4g} ({name_blind})"
    if not losses.imbalanced(loss, labels, c):
        return verdicts.LossAtInit(True, message + f"; the best constant gives {best:.4g} ({name_best})", **common)
    advice = (f"init well: set the last layer's bias to {fmt(bias)} ({losses.bias_name(loss)}): the step-0 loss "
              f"then starts at {best:.4g} ({name_best}) instead of {blind:.4g}")
    return verdicts.LossAtInit(True, message + "; " + advice, bias=bias, advice=advice, **common)


# -- training -----------------------------------------------------------------------------------------------
def batches(n: int, batch_size: int, steps: int, seed: int):
    """Row positions of each step: consecutive slices of seeded permutations, epoch after epoch."""
    generator = torch.Generator().manual_seed(seed)
    order, start = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if start >= n:
            order, start = torch.randperm(n, generator=generator), 0
        yield order[start:start + batch_size]
        start += batch_size


def adam(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Fused Adam (one kernel for all parameters: a small net's step is mostly per-tensor overhead), or the plain
    one for parameters the fused kernel does not take."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BadInput("the model has no parameter that requires grad: nothing to train")
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, steps: int, lr: float,
                seed: int, batch_size: int = BATCH_SIZE, lr_at: Callable[[int], float] | None = None,
                on_step: Callable[[int, float], bool] | None = None, no_dropout: bool = False) -> nn.Module:
    """Adam over minibatches; lr_at(step) sets the step's learning rate; on_step(step, loss) -> True stops.
    no_dropout: dropout layers stay in eval mode (overfitting one batch asks whether the model can fit, before
    any regularization; dropout at 0.5 alone keeps 8 examples off near-zero)."""
    flush_denormals()
    optimizer = adam(model, lr)
    model.train()
    if no_dropout:
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
    for step, idx in enumerate(batches(len(x), batch_size, steps, seed), start=1):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        value = loss_value(loss, forward(model, x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if on_step is not None and on_step(step, float(value.detach())):
            break
    return model


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int = BATCH_SIZE) -> float:
    """The loss over all of x in the model's current mode, a batch at a time (memory stays that of one batch),
    weighted by each batch's examples."""
    total = sum(float(loss_value(loss, forward(model, x[i:i + chunk]), y[i:i + chunk])) * len(x[i:i + chunk])
                for i in range(0, len(x), chunk))
    return total / max(len(x), 1)


def eval_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> float:
    """The loss over all of x in eval mode."""
    with mode(model, False):
        return mean_loss(model, x, y, loss, EVAL_CHUNK)


def distinct_rows(x: torch.Tensor, n: int, seed: int) -> np.ndarray:
    groups = features.input_groups(x.reshape(len(x), -1).numpy())
    return features.distinct_inputs_first(groups, np.random.default_rng(seed))[:n]


def overfit_one_batch(factory: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, loss: str,
                      n: int = 8, steps: int = 500, lr: float = OVERFIT_LR, seed: int = 0) -> verdicts.OverfitOneBatch:
    """A fresh model, full batch, on n distinct inputs (fewer when the data has fewer), until the loss is near its
    floor: zero, unless identical inputs carry different targets (then each group's best constant)."""
    rows = distinct_rows(x, n, seed)
    xb, yb = x[rows], y[rows]
    model = fresh(factory, seed)
    with torch.no_grad(), mode(model, False):
        c = n_classes_of(loss, forward(model, xb), yb)
    groups = features.input_groups(xb.reshape(len(xb), -1).numpy())
    floor, ambiguous = losses.irreducible(loss, groups, yb.numpy(), c)
    margin = losses.near_zero(loss, yb.numpy(), c)
    threshold = floor + margin
    curve: list[list[float]] = []
    taken = [0]

    def on_step(step: int, value: float) -> bool:
        # under the threshold in train mode, it must be in eval mode too (BatchNorm's running statistics lag
        # behind the batch's; dropout is off): the verdict is on the eval-mode loss, as everywhere else
        taken[0] = step
        if step == 1 or step % 10 == 0:
            curve.append([step, value])
        return not math.isfinite(value) or value <= threshold and eval_loss(model, xb, yb, loss) <= threshold

    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    train_steps(model, xb, yb, loss, steps, lr, seed, batch_size=len(xb), on_step=on_step, no_dropout=True)
    start = curve[0][1] if curve else math.nan
    final = eval_loss(model, xb, yb, loss)
    curve.append([taken[0], final])
    with torch.no_grad(), mode(model, False):
        out = align(loss, forward(model, xb), yb)[0]
    shown = (out.argmax(dim=-1).reshape(yb.shape) if loss == "cross_entropy" else out).tolist()
    ok = math.isfinite(final) and final <= threshold
    target = (f"floor {floor:.3g} from {ambiguous} identical inputs with different targets, + {margin:.3g} = "
              f"{threshold:.3g}" if floor > 0 else f"near zero is {threshold:.3g}")
    message = (f"{len(xb)} examples trained to loss {final:.3g} in {units.count(taken[0], 'step')} ({target})"
               if ok else
               f"{len(xb)} examples went from loss {start:.3g} to {final:.3g} in {units.count(taken[0], 'step')}, "
               f"not under {threshold:.3g} ({target}): the model cannot fit even one batch; look for a bug, a too "
               f"small capacity or a bottleneck{target_scale(loss, yb)}")
    if dropouts:
        message += f" (dropout off for this check: {units.count(len(dropouts), 'layer')})"
    return verdicts.OverfitOneBatch(bool(ok), message, n=len(xb), steps=taken[0], final_loss=final,
                                    threshold=threshold, floor=floor, n_ambiguous=ambiguous,
                                    n_distinct=int(groups.max()) + 1 if len(groups) else 0,
                                    labels=yb.tolist(), predictions=shown, curve=curve)


def target_scale(loss: str, y: torch.Tensor) -> str:
    """A hint when a regression target is far from standardized: Adam's steps are of a fixed size, so a target in
    the thousands takes that many more steps to reach, and "near zero" is relative to its spread."""
    if loss in ("cross_entropy", "bce") or len(y) < 2:
        return ""
    flat = y.reshape(len(y), -1).double()
    mean, std = flat.mean(dim=0).abs().max().item(), flat.std(dim=0).max().item()
    if mean <= losses.SCALE_FAR and std <= losses.SCALE_FAR:
        return ""
    return (f"; or the target's scale (a mean of {mean:.3g}, a std of {std:.3g}): standardize it, and the same "
            "steps go much further")


def zeroed(x: torch.Tensor) -> torch.Tensor:
    """The twin's input: zeros of the same shape and dtype (token id 0 for integer inputs)."""
    return torch.zeros_like(x)


def input_independent(factory: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, loss: str,
                      steps: int = 300, lr: float = TWIN_LR, seed: int = 0,
                      margin: float = checks.INPUT_MARGIN) -> verdicts.InputIndependent:
    """The model trained on the real inputs must beat its twin trained on zeroed inputs (same factory, seed,
    steps and minibatches) on held-out rows (a seeded 20%) by the margin."""
    n = len(x)
    if n < MIN_TWIN_ROWS:
        return verdicts.InputIndependent(None, f"{n} examples: too few for a held-out split (needs "
                                         f"{MIN_TWIN_ROWS})")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    cut = n - max(1, n // 5)
    train, held = order[:cut], order[cut:]
    ends = {}  # (held-out loss, training loss) of each
    for name, inputs in (("real", x), ("twin", zeroed(x))):
        model = train_steps(fresh(factory, seed), inputs[train], y[train], loss, steps, lr, seed)
        ends[name] = (eval_loss(model, inputs[held], y[held], loss), eval_loss(model, inputs[train], y[train], loss))
    verdict = checks.input_independent(ends["real"][0], ends["twin"][0], ends["real"][1], ends["twin"][1],
                                       margin=margin)
    return dataclasses.replace(verdict, message=verdict.message + f" ({steps} steps on {len(train)} rows, "
                               f"{len(held)} held out)")


def lr_range(factory: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, loss: str, steps: int = 100,
             seed: int = 0, start: float = LR_START, end: float = LR_END) -> verdicts.LrRange:
    """The learning-rate range test: one minibatch step per LR, growing exponentially from start to end; the
    loss smoothed (EMA with bias correction); stopped once it exceeds 4x its best. Suggested: the LR at the
    steepest fall of the smoothed loss (Lightning's lr_find suggestion). Informational: ok is always None."""
    ratio = end / start

    def lr_of(step: int) -> float:
        return start * ratio ** ((step - 1) / max(steps - 1, 1))

    lrs, smoothed, state = [], [], {"avg": 0.0, "best": math.inf, "nan": False}

    def on_step(step: int, value: float) -> bool:
        state["avg"] = LR_SMOOTHING * state["avg"] + (1 - LR_SMOOTHING) * value
        smooth = state["avg"] / (1 - LR_SMOOTHING ** step)
        if not math.isfinite(smooth):
            state["nan"] = True
            return True
        lrs.append(lr_of(step))
        smoothed.append(smooth)
        state["best"] = min(state["best"], smooth)
        return smooth > LR_DIVERGED * state["best"]

    train_steps(fresh(factory, seed), x, y, loss, steps, start, seed, lr_at=lr_of, on_step=on_step)
    suggested = None
    window = np.array(smoothed[LR_SKIP_BEGIN:len(smoothed) - LR_SKIP_END])
    fell = len(window) >= 2 and window.min() <= window[0] * (1 - LR_MIN_FALL)
    if fell:
        slope = np.gradient(window)
        if slope.min() < 0:
            suggested = float(lrs[LR_SKIP_BEGIN + int(np.argmin(slope))])
    if suggested is not None:
        message = f"suggested learning rate {suggested:.1g} (steepest fall of the loss)"
    elif len(window) < 2:
        why = "became NaN/inf" if state["nan"] else "diverged"
        message = f"no suggestion: the loss {why} after {len(smoothed)} steps, too early to tell"
    else:
        message = (f"no suggestion: the loss never fell {LR_MIN_FALL:.0%} below its start over the range (a "
                   "steepest point on a flat curve is noise)")
    return verdicts.LrRange(None, message, lrs=lrs, losses=smoothed, suggested=suggested, steps=len(smoothed))


# -- all checks ------------------------------------------------------------------------------------------------
def finite(value):
    """NaN and inf as None, so the verdicts store as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def strict(verdict: verdicts.Verdict) -> verdicts.Verdict:
    return dataclasses.replace(verdict, **{f.name: finite(getattr(verdict, f.name))
                                           for f in dataclasses.fields(verdict) if f.name not in ("ok", "message")})


def run_all(factory: Callable[[], nn.Module], x, y, loss: str | None = None, causal: bool = False,
            tolerance: float = TOLERANCE, budget: Budget = Budget(),
            seed: int = 0) -> tuple[dict[str, verdicts.Verdict], dict[str, object]]:
    """Every check within the budget: (verdicts by check name, artifacts to store with the run)."""
    threads = torch.get_num_threads()
    found: dict[str, verdicts.Verdict] = {}
    artifacts: dict[str, object] = {}
    try:
        data = prepare(factory, x, y, loss, causal, budget.rows, seed)
        xt, yt, loss = data.x, data.y, data.loss
        found["loss_at_init"] = guarded("loss_at_init", lambda: loss_at_init(
            fresh(factory, seed), xt[:INIT_ROWS], yt[:INIT_ROWS], loss, tolerance))
        found["gradients"] = guarded("gradients", lambda: gradients(
            fresh(factory, seed), xt[:GRADIENT_ROWS], yt[:GRADIENT_ROWS], loss))
        found["batch_independence"] = guarded("batch_independence", lambda: batch_independence(
            fresh(factory, seed), xt, budget.matrix_examples))
        if causal:
            found["causality"] = guarded("causality", lambda: causality(fresh(factory, seed), xt))
        elif looks_like_sequences(xt, yt):
            found["causality"] = verdicts.Causality(None, "not checked: x and y look like token sequences [N, T]; "
                                                    "pass causal=True (--causal) to check that no output sees a "
                                                    "future position")
        found["overfit_one_batch"] = guarded("overfit_one_batch", lambda: overfit_one_batch(
            factory, xt, yt, loss, budget.overfit_n, budget.overfit_steps, seed=seed))
        found["input_independent"] = guarded("input_independent", lambda: input_independent(
            factory, xt, yt, loss, budget.twin_steps, seed=seed))
        found["lr_range"] = guarded("lr_range", lambda: lr_range(factory, xt, yt, loss, budget.lr_steps, seed))
        seen, images = guarded("just_before_the_net", lambda: batch_seen(
            fresh(factory, seed), xt[:SEEN_ROWS], yt[:SEEN_ROWS]))
        found["just_before_the_net"] = seen
        if images:
            artifacts["batch_seen"] = images
    finally:
        if torch.get_num_threads() != threads:  # a factory that set its own
            torch.set_num_threads(threads)
    return {name: strict(v) for name, v in found.items()}, artifacts

