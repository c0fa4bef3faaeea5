"""Curve math against trusted references: TensorBoard's smoothing loop, pandas rolling, tsdownsample itself."""
import math
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from tsdownsample import MinMaxLTTBDownsampler

from recipe_core.compare import curves
from recipe_core.errors import BadInput


def tensorboard_smoothing(values, weight):
    """TensorBoard's scalar smoothing (vz_line_chart2 resmoothDataset), transcribed line by line."""
    last = 0.0
    num_accum = 0
    out = []
    for next_val in values:
        if not math.isfinite(next_val):
            out.append(next_val)
            continue
        last = last * weight + (1 - weight) * next_val
        num_accum += 1
        debias_weight = 1.0
        if weight != 1:
            debias_weight = 1.0 - weight**num_accum
        out.append(last / debias_weight)
    return np.array(out, dtype=np.float64)


# ---- ema -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 129, 1000])  # around the 64-point blocks of the fast path
@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_ema_is_tensorboards_smoothing(n, weight):
    y = np.random.default_rng(n).normal(size=n).cumsum() + 5
    np.testing.assert_allclose(curves.ema(y, weight), tensorboard_smoothing(y, weight), rtol=1e-11, atol=1e-12)


def test_ema_lets_nan_and_inf_through_without_contaminating_later_points():
    y = np.random.default_rng(1).normal(size=300)
    y[[0, 17, 18, 150]] = [np.nan, np.nan, np.inf, -np.inf]
    out = curves.ema(y, 0.8)
    np.testing.assert_allclose(out, tensorboard_smoothing(y, 0.8), rtol=1e-11, atol=1e-12)
    assert np.isnan(out[[0, 17]]).all() and out[18] == np.inf and out[150] == -np.inf
    assert np.isfinite(out[19:150]).all() and np.isfinite(out[151:]).all()


def test_ema_weight_zero_is_the_curve_itself_and_the_input_is_not_changed():
    y = np.array([3.0, np.nan, 1.0, 2.0])
    before = y.copy()
    np.testing.assert_array_equal(curves.ema(y, 0), y)
    np.testing.assert_array_equal(y, before)
    assert curves.ema(np.array([], dtype=float), 0.6).shape == (0,)
    np.testing.assert_allclose(curves.ema([1, 2, 3], 0.5), tensorboard_smoothing([1, 2, 3], 0.5))  # ints, lists


@pytest.mark.parametrize("weight", [-0.1, 1, 1.5, float("nan"), "0.5x", None])
def test_ema_refuses_a_weight_outside_0_to_1(weight):
    with pytest.raises(BadInput):
        curves.ema(np.ones(3), weight)


def test_ema_is_fast_enough_for_a_hundred_curves():
    ys = [np.random.default_rng(i).normal(size=2000) for i in range(100)]
    curves.ema(ys[0], 0.6)  # first call builds the block weights
    start = time.perf_counter()
    for y in ys:
        curves.ema(y, 0.6)
    elapsed = time.perf_counter() - start
    print(f"ema: 100 curves x 2,000 points in {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5  # about 20 ms here; loose so a busy machine does not fail it


# ---- moving_average ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 10, 999, 5000])
def test_moving_average_is_pandas_rolling_mean(window):
    y = np.random.default_rng(window).normal(size=1000)
    expected = pd.Series(y).rolling(window, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(curves.moving_average(y, window), expected, rtol=1e-10, atol=1e-12)


def test_moving_average_counts_positions_and_keeps_nan_where_it_was():
    y = np.random.default_rng(3).normal(size=200)
    y[[5, 6, 50]] = [np.nan, np.inf, np.nan]
    out = curves.moving_average(y, 7)
    finite = np.isfinite(y)
    # pandas skips NaN inside the window and does not reach further back: the same definition.
    expected = pd.Series(np.where(finite, y, np.nan)).rolling(7, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-10)
    assert np.isnan(out[[5, 50]]).all() and out[6] == np.inf


def test_moving_average_is_not_wrecked_by_a_huge_spike():
    y = np.ones(100)
    y[10] = 1e30  # a diverging step: running-sum differences would leave garbage after it
    out = curves.moving_average(y, 5)
    np.testing.assert_array_equal(out[15:], 1.0)


@pytest.mark.parametrize("window", [0, -3, 2.5, "10"])
def test_moving_average_refuses_a_bad_window(window):
    with pytest.raises(BadInput):
        curves.moving_average(np.ones(3), window)


# ---- downsample ----------------------------------------------------------------------------------------------------


def noisy(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.int64), 2 * np.exp(-np.arange(n) / (n / 5)) + rng.normal(0, 0.05, n)


def test_downsample_keeps_a_single_spike_and_the_minimum_in_100k_points():
    x, y = noisy(100_000)
    y[54_321] = 1e6
    y[77_777] = -5
    idx = curves.downsample(x, y, 2000)
    assert 54_321 in idx and 77_777 in idx
    assert idx[0] == 0 and idx[-1] == len(x) - 1
    assert np.all(np.diff(idx) > 0)  # sorted and unique
    assert idx.dtype == np.int64 and len(idx) <= 2000 + 4


@pytest.mark.parametrize("n", [0, 1, 5, 2000])
def test_downsample_returns_everything_when_it_fits(n):
    x, y = noisy(n)
    np.testing.assert_array_equal(curves.downsample(x, y, 2000), np.arange(n))


def test_downsample_is_tsdownsample_plus_the_extremes_and_ends():
    x, y = noisy(50_000, seed=4)
    idx = curves.downsample(x, y, 1000)
    reference = MinMaxLTTBDownsampler().downsample(x, y, n_out=1000).astype(np.int64)
    extras = {0, len(x) - 1, int(np.argmin(y)), int(np.argmax(y))}
    assert set(reference) <= set(idx) <= set(reference) | extras


def test_downsample_runs_on_the_finite_points_and_marks_where_nan_starts():
    x, y = noisy(20_000, seed=5)
    y[5000:5100] = np.nan  # the run diverged for a while
    y[9000] = np.inf
    y[12_345] = 1e5
    idx = curves.downsample(x, y, 500)
    assert 5000 in idx and 9000 in idx and 12_345 in idx
    assert not set(range(5001, 5100)) & set(idx)  # one break per gap, not the whole gap
    assert np.all(np.diff(idx) > 0) and len(idx) <= 504
    finite = np.flatnonzero(np.isfinite(y))
    reference = finite[MinMaxLTTBDownsampler().downsample(x[finite], y[finite], n_out=498).astype(np.int64)]
    assert set(reference) <= set(idx)


def test_downsample_caps_nan_breaks_and_survives_all_nan():
    x = np.arange(10_000)
    y = np.where(np.arange(10_000) % 2 == 0, 1.0, np.nan)  # a NaN after every value
    idx = curves.downsample(x, y, 100)
    assert len(idx) <= 104
    idx = curves.downsample(x, np.full(10_000, np.nan), 100)
    assert len(idx) <= 104 and idx[0] == 0 and idx[-1] == 9999


def test_downsample_uses_positions_when_x_is_not_ascending():
    x, y = noisy(10_000)
    x = x.astype(float)
    x[100] = -1.0  # a clock that jumped back
    y[4242] = 99.0
    idx = curves.downsample(x, y, 300)
    assert 4242 in idx and len(idx) <= 304


def test_downsample_refuses_too_few_points_and_mismatched_lengths():
    x, y = noisy(100)
    with pytest.raises(BadInput):
        curves.downsample(x, y, 2)
    with pytest.raises(BadInput):
        curves.downsample(x[:-1], y, 10)


# ---- visible, direction, best_index --------------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi, expected", [
    (20, 50, slice(1, 7)),  # 20..50 holds x[2:6]; one neighbour each side
    (0, 90, slice(0, 10)),
    (-100, 1000, slice(0, 10)),
    (22, 27, slice(2, 4)),  # between two points: both, so the line crosses the view
    (50, 20, slice(1, 7)),  # reversed ends
    (-10, -1, slice(0, 0)),  # left of the data
    (100, 200, slice(10, 10)),  # right of the data
])
def test_visible(lo, hi, expected):
    x = np.arange(0, 100, 10)
    assert curves.visible(x, lo, hi) == expected


def test_visible_refuses_nan_ends():
    with pytest.raises(BadInput):
        curves.visible(np.arange(5), float("nan"), 3)


@pytest.mark.parametrize("metric, expected", [
    ("val_accuracy", "max"), ("train/acc", "max"), ("R2", "max"), ("f1_macro", "max"), ("roc_auc", "max"),
    ("precision", "max"), ("cohen_kappa", "max"), ("mean IoU", "max"), ("BLEU", "max"), ("score", "max"),
    ("valAccuracy", "max"),
    ("val_loss", "min"), ("val_mae", "min"), ("mse", "min"), ("error", "min"), ("perplexity", "min"),
    ("loss", "min"), ("accuracy_loss", "min"), ("cache", "min"), ("lr", "min"),
])
def test_direction(metric, expected):
    assert curves.direction(metric) == expected


def test_best_index_ignores_nan_and_inf():
    y = np.array([np.nan, 3.0, -np.inf, 1.0, np.inf, 1.0, 5.0])
    assert curves.best_index(y, "min") == 3  # the first of a tie
    assert curves.best_index(y, "max") == 6
    assert curves.best_index(np.array([np.nan, np.nan]), "min") is None
    assert curves.best_index(np.array([]), "max") is None
    with pytest.raises(BadInput):
        curves.best_index(y, "lowest")


# ---- band ----------------------------------------------------------------------------------------------------------


def test_band_of_two_constant_curves():
    xs = [np.arange(0, 11), np.arange(0, 11, 2)]
    ys = [np.ones(11), np.full(6, 3.0)]
    x, mean, lo, hi = curves.band(xs, ys, "minmax")
    np.testing.assert_array_equal(x, np.arange(0, 11))  # the union of both grids
    np.testing.assert_allclose(mean, 2.0)
    np.testing.assert_allclose(lo, 1.0)
    np.testing.assert_allclose(hi, 3.0)
    x, mean, lo, hi = curves.band(xs, ys, "std")
    np.testing.assert_allclose(mean, 2.0)
    np.testing.assert_allclose(lo, 1.0)  # population std of {1, 3} is 1
    np.testing.assert_allclose(hi, 3.0)


def test_band_interpolates_on_the_common_range_and_skips_nan():
    xs = [np.array([0.0, 4.0, 10.0]), np.array([2.0, 5.0, 12.0, 13.0])]
    ys = [xs[0] * 2, xs[1] * 2 + 4]
    ys[1][1] = np.nan  # ignored: the line from 2 to 12 is still exact
    x, mean, lo, hi = curves.band(xs, ys)
    np.testing.assert_array_equal(x, [2.0, 4.0, 10.0])  # 2..10 only; 5 was NaN; 12 and 13 are past curve 1's end
    np.testing.assert_allclose(mean, 2 * x + 2)
    np.testing.assert_allclose(hi - lo, 4.0)
    sd = np.std(np.stack([2 * x, 2 * x + 4]), axis=0)
    np.testing.assert_allclose(curves.band(xs, ys, "std")[3], mean + sd)


def test_band_keeps_integer_steps_exact():
    big = 2**40  # beyond float32, and interpolation must not turn steps into floats
    xs = [np.arange(big, big + 10, dtype=np.int64), np.arange(big + 2, big + 12, dtype=np.int64)]
    x, *_ = curves.band(xs, [np.ones(10), np.ones(10)])
    assert x.dtype == np.int64 and x[0] == big + 2 and x[-1] == big + 9


def test_band_refuses_curves_that_do_not_overlap():
    with pytest.raises(BadInput):
        curves.band([np.arange(0, 10), np.arange(20, 30)], [np.ones(10), np.ones(10)])
    with pytest.raises(BadInput):
        curves.band([np.arange(3)], [np.full(3, np.nan)])
    with pytest.raises(BadInput):
        curves.band([np.arange(3)], [np.ones(3)], "iqr")


# ---- seed_groups ---------------------------------------------------------------------------------------------------


def test_seed_groups_group_configs_that_differ_only_in_the_seed():
    def run(name, lr, seed):
        return SimpleNamespace(name=name, config={"model": "mlp", "lr": lr, "seed": seed, "cols": ["a", "b"]},
                               seed=seed)

    a0, b0, a1, a2, c = run("a0", 1e-3, 0), run("b0", 1e-2, 0), run("a1", 1e-3, 1), run("a2", 1e-3, 2), run("c", 0.1, 7)
    a1.config = dict(reversed(list(a1.config.items())))  # key order does not matter
    groups = curves.seed_groups([a0, b0, a1, a2, c])
    assert [[r.name for r in g] for g in groups] == [["a0", "a1", "a2"], ["b0"], ["c"]]
    assert curves.seed_groups([]) == []
