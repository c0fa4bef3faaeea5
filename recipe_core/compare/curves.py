"""Array math for loss curves: smoothing, spike-keeping downsampling, best points, seed bands and seed groups.

Pure numpy on 1-D arrays (no plotly, no store); chart.py turns the results into a figure.
"""
from __future__ import annotations

import functools
import json
import operator
import re

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

from recipe_core.errors import BadInput
from recipe_core.units import ceil_div

# Words that mark a metric where higher is better; every other metric is minimised, like a loss.
MAX_WORDS = frozenset({"accuracy", "acc", "f1", "auc", "r2", "precision", "recall", "kappa", "iou", "bleu", "score"})
# ...unless the name also says it is a loss or an error of one ("accuracy_loss", "f1_error").
MIN_WORDS = frozenset({"loss", "error", "err"})
MIN_POINTS = 3  # LTTB keeps the first and last point and needs at least one bucket between them

_EMA_BLOCK = 64  # points per matrix block of ema(): large enough for BLAS to pay, small enough for w**64 to stay exact
_LTTB = MinMaxLTTBDownsampler()


def _curve(y, name: str = "y") -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise BadInput(f"{name} must be one curve (a 1-D array), not an array of shape {y.shape}")
    return y


# ---- smoothing ---------------------------------------------------------------------------------------------------


def ema(y, weight: float) -> np.ndarray:
    """TensorBoard's scalar smoothing: an exponential moving average started at 0 and debiased by 1 - weight**n.

    Non-finite values pass through unchanged and are skipped by the average, so one NaN does not blank the rest
    of the curve. weight is in [0, 1); 0 returns the curve as is.
    """
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise BadInput(f"smoothing weight must be a number from 0 to just under 1, not {weight!r}") from None
    if not 0.0 <= w < 1.0:  # also refuses NaN
        raise BadInput(f"smoothing weight must be from 0 to just under 1, not {weight!r}")
    y = _curve(y)
    out = y.copy()
    finite = np.isfinite(y)
    values = y[finite]
    if w == 0.0 or len(values) == 0:
        return out
    n = np.arange(1, len(values) + 1, dtype=np.float64)
    out[finite] = _ema_from_zero(values, w) / (1.0 - w**n)
    return out


def _ema_from_zero(v: np.ndarray, w: float) -> np.ndarray:
    """last_i = w * last_(i-1) + (1 - w) * v_i with last_(-1) = 0, without a Python loop over points.

    Within a block of B points the recurrence is a fixed lower-triangular matrix (weights w**(i - j)), so all
    blocks go through one matrix product; only the value carried from block to block is a loop, over n / B blocks.
    """
    m, b = len(v), _EMA_BLOCK
    n_blocks = ceil_div(m, b)
    blocks = np.zeros(n_blocks * b)
    blocks[:m] = v
    blocks = blocks.reshape(n_blocks, b)
    kernel, decay = _ema_block_weights(w)
    local = blocks @ kernel.T  # each block as if the average started from 0 at its first point
    carried = np.empty(n_blocks)
    c = 0.0
    for k in range(n_blocks):
        carried[k] = c
        c = local[k, -1] + decay[-1] * c
    return (local + carried[:, None] * decay[None, :]).ravel()[:m]


@functools.lru_cache(maxsize=16)  # a page redraws many curves with the same weight
def _ema_block_weights(w: float) -> tuple[np.ndarray, np.ndarray]:
    """The block matrix (1 - w) * w**(i - j) for j <= i, and w**(i + 1): what a value carried in weighs at i."""
    lag = np.arange(_EMA_BLOCK)[:, None] - np.arange(_EMA_BLOCK)[None, :]
    kernel = np.where(lag >= 0, w ** np.maximum(lag, 0), 0.0) * (1.0 - w)
    decay = w ** np.arange(1, _EMA_BLOCK + 1, dtype=np.float64)
    kernel.flags.writeable = decay.flags.writeable = False  # shared by every later call: nobody may change them
    return kernel, decay


def moving_average(y, window: int) -> np.ndarray:
    """Trailing mean over the last `window` positions, of the finite values among them.

    Positions, not finite points: a NaN inside the window shrinks the count instead of reaching further back, as
    pandas' Series.rolling(window, min_periods=1).mean() does. Non-finite values pass through unchanged.
    Each window is summed directly (np.convolve) rather than as a difference of running sums, so a huge spike
    does not wipe out the precision of the small values after it; the cost is len(y) * window.
    """
    try:
        window = operator.index(window)
    except TypeError:
        raise BadInput(f"window must be a whole number of points, not {window!r}") from None
    if window < 1:
        raise BadInput(f"window must be at least 1 point, not {window}")
    y = _curve(y)
    if len(y) == 0:
        return y.copy()
    finite = np.isfinite(y)
    sums = np.convolve(np.where(finite, y, 0.0), np.ones(min(window, len(y))))[: len(y)]
    seen = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(y) + 1)
    counts = seen[ends] - seen[np.maximum(ends - window, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):  # count 0 only where y itself is not finite
        return np.where(finite, sums / counts, y)


# ---- what to draw ------------------------------------------------------------------------------------------------


def downsample(x, y, n_out: int) -> np.ndarray:
    """Sorted, unique indices of at most about n_out points that keep the curve's shape and every extreme.

    MinMaxLTTB (tsdownsample) on the finite points, plus, always: the first and last point, the finite minimum
    and maximum (a single spike among 100k points survives), and the first point of each run of non-finite values
    (so the line breaks where the run logged NaN; at most n_out // 4 such breaks, evenly picked). The result has
    at most n_out + 4 indices. x must be ascending for LTTB; otherwise positions stand in for x.
    """
    try:
        n_out = operator.index(n_out)
    except TypeError:
        raise BadInput(f"n_out must be a whole number of points, not {n_out!r}") from None
    if n_out < MIN_POINTS:
        raise BadInput(f"a curve needs at least {MIN_POINTS} points to keep its shape, not {n_out}")
    x, y = np.asarray(x), _curve(y)
    if x.shape != y.shape:
        raise BadInput(f"x and y must have the same length, not {x.shape} and {y.shape}")
    n = len(y)
    if n <= n_out:
        return np.arange(n, dtype=np.int64)

    finite = np.isfinite(y)
    if finite.all():  # the usual case: no copies
        kept, breaks = np.arange(n), np.empty(0, dtype=np.int64)
    else:
        breaks = np.flatnonzero(~finite & np.concatenate([[True], finite[:-1]]))
        if len(breaks) > n_out // 4:
            breaks = breaks[np.linspace(0, len(breaks) - 1, n_out // 4).round().astype(np.int64)]
        kept = np.flatnonzero(finite)
    budget = n_out - len(breaks)
    if len(kept) > budget:
        xf = x[kept] if len(kept) < n else x
        yf = y[kept] if len(kept) < n else y
        if xf.dtype.kind not in "iuf":
            xf = xf.astype(np.float64)
        ascending = bool(np.all(xf[1:] >= xf[:-1]))  # False for NaN too
        picked = _LTTB.downsample(xf, yf, n_out=budget) if ascending else _LTTB.downsample(yf, n_out=budget)
        picked = np.concatenate([picked.astype(np.int64), [np.argmin(yf), np.argmax(yf)]])
        kept = kept[picked]
    return _sorted_unique(np.concatenate([kept, breaks, [0, n - 1]]).astype(np.int64))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    a = np.sort(a)  # np.unique is ten times slower on these few thousand ints (numpy 2 hashes first)
    return a[np.concatenate([[True], a[1:] != a[:-1]])]


def visible(x, lo: float, hi: float) -> slice:
    """Positions of ascending x within [lo, hi], plus the point just outside on each side so lines reach the edges.

    Empty when the range misses the data altogether; the two neighbours when it falls between two points.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise BadInput(f"a visible range needs two finite ends, not {lo!r} and {hi!r}")
    lo, hi = min(lo, hi), max(lo, hi)
    x = np.asarray(x)
    n = len(x)
    start = int(np.searchsorted(x, lo, side="left"))
    stop = int(np.searchsorted(x, hi, side="right"))
    if start == stop and start in (0, n):
        return slice(start, start)
    return slice(max(start - 1, 0), min(stop + 1, n))


def direction(metric: str) -> str:
    """'max' when higher is better (accuracy, f1, auc, r2, ...), judged on the words of the name; else 'min'."""
    # camelCase words apart (valAccuracy -> val Accuracy), acronyms kept whole (IoU, mAP)
    spaced = re.sub(r"([a-z])([A-Z][a-z])", r"\1 \2", str(metric))
    words = set(re.split(r"[^0-9a-z]+", spaced.lower()))
    return "max" if words & MAX_WORDS and not words & MIN_WORDS else "min"


def best_index(y, direction: str) -> int | None:
    """Position of the best finite value (the first one on ties), or None when the curve has no finite value."""
    if direction not in ("min", "max"):
        raise BadInput(f"direction must be 'min' or 'max', not {direction!r}")
    y = _curve(y)
    finite = np.isfinite(y)
    if not finite.any():
        return None
    if direction == "min":
        return int(np.argmin(np.where(finite, y, np.inf)))
    return int(np.argmax(np.where(finite, y, -np.inf)))


# ---- several runs ------------------------------------------------------------------------------------------------


def band(xs: list, ys: list, kind: str = "minmax") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Several curves (one config, several seeds) on one grid: (x, mean, lo, hi).

    The grid is the sorted union of the curves' x values inside the range every curve covers; each curve is
    linearly interpolated onto it from its finite points. lo/hi are the min/max across curves ("minmax") or the
    mean -/+ the population standard deviation ("std").
    """
    if kind not in ("minmax", "std"):
        raise BadInput(f"band must be 'minmax' or 'std', not {kind!r}")
    if len(xs) != len(ys) or not xs:
        raise BadInput(f"a band needs one y per x and at least one curve, not {len(xs)} x and {len(ys)} y")
    curves = []
    for x, y in zip(xs, ys):
        x, y = np.asarray(x), _curve(y)  # integer steps stay integers on the grid
        if x.dtype.kind not in "iuf":
            x = x.astype(np.float64)
        if x.shape != y.shape:
            raise BadInput(f"x and y must have the same length, not {x.shape} and {y.shape}")
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            raise BadInput("a curve of the band has no finite point")
        x, y = (x, y) if ok.all() else (x[ok], y[ok])
        if not np.all(x[1:] >= x[:-1]):  # np.interp needs ascending x
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
        curves.append((x, y))
    start = max(x[0] for x, _ in curves)
    end = min(x[-1] for x, _ in curves)
    if start > end:
        raise BadInput("the curves do not overlap: no x is covered by all of them")
    first = curves[0][0]
    if all(len(x) == len(first) and np.array_equal(x, first) for x, _ in curves[1:]) and np.all(first[1:] > first[:-1]):
        grid, stack = first, np.stack([y for _, y in curves])  # seeds logged at the same steps: nothing to align
    else:
        grid = np.unique(np.concatenate([x[(x >= start) & (x <= end)] for x, _ in curves]))
        stack = np.stack([np.interp(grid, x, y) for x, y in curves])
    mean = stack.mean(axis=0)
    if kind == "minmax":
        return grid, mean, stack.min(axis=0), stack.max(axis=0)
    std = stack.std(axis=0)  # ddof=0: the spread of these seeds, not an estimate for all seeds
    return grid, mean, mean - std, mean + std


def seed_groups(runs) -> list[list]:
    """Runs whose configs are equal apart from "seed", in groups of first-seen order (singletons included)."""
    groups: dict[str, list] = {}
    for run in runs:
        rest = {k: v for k, v in (run.config or {}).items() if k != "seed"}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(run)
    return list(groups.values())
