"""The Compare figure: what is drawn is the stored data, downsampled with its extremes, then smoothed."""
import json
import time
from dataclasses import dataclass

import numpy as np
import pytest

from recipe_core.compare import curves
from recipe_core.compare.chart import RAW_OPACITY, ChartSpec, comparison_figure
from recipe_core.errors import BadInput

EVIL = '<script>alert("x")</script><b>bold</b> & %{x}'


@dataclass(frozen=True)
class History:
    """Stand-in for records.History: the four arrays the chart reads."""

    step: np.ndarray
    value: np.ndarray
    epoch: np.ndarray
    wall_time: np.ndarray

    def __len__(self):
        return len(self.step)


@dataclass
class Run:
    """Stand-in for records.RunRecord: the attributes the chart reads."""

    id: str
    name: str
    config: dict
    seed: int | None = None


def history(value, steps_per_epoch=100, start=1.7e9, seconds_per_step=0.5):
    value = np.asarray(value, dtype=np.float64)
    step = np.arange(len(value), dtype=np.int64)
    return History(step, value, step / steps_per_epoch, start + step * seconds_per_step)


def loss_curve(n, seed=0, level=0.0):
    rng = np.random.default_rng(seed)
    return level + 2 * np.exp(-np.arange(n) / (n / 5)) + rng.normal(0, 0.05, n)


def run(i, **config):
    config = {"model": "mlp", "lr": 1e-3, "seed": i, **config}
    return Run(f"id{i}", f"run-{i}", config, config["seed"])


def main_traces(fig):
    """The lines with a hover box (one per run or seed group), not the faded raw lines, bands or best markers."""
    return [t for t in fig.data if t.mode in ("lines", "lines+markers") and t.hovertemplate]


def raw_traces(fig):
    return [t for t in fig.data if t.opacity == RAW_OPACITY]


def markers(fig):
    return [t for t in fig.data if t.mode == "markers"]


def strings(obj):
    """Every string of a figure's JSON that plotly may render (uirevision is only compared, never shown)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "uirevision":
                yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


# ---- the pipeline --------------------------------------------------------------------------------------------------


def test_smoothing_is_applied_after_downsampling():
    y = loss_curve(50_000)
    r = run(0)
    spec = ChartSpec("val_loss", ema_weight=0.9, max_points=500)
    fig, info = comparison_figure(spec, [r], {r.id: history(y)})
    (raw,), (main,) = raw_traces(fig), main_traces(fig)
    keep = curves.downsample(np.arange(len(y)), y, 500)
    np.testing.assert_array_equal(raw.x, keep)
    np.testing.assert_array_equal(raw.y, y[keep].astype(np.float32))
    np.testing.assert_array_equal(main.x, keep)
    np.testing.assert_array_equal(main.y, curves.ema(y[keep], 0.9).astype(np.float32))
    assert info == {"shown": len(keep), "total": 50_000}


def test_window_smoothing_and_no_smoothing():
    y = loss_curve(300)
    r = run(0)
    fig, _ = comparison_figure(ChartSpec("val_loss", smoothing="window", window=7), [r], {r.id: history(y)})
    np.testing.assert_allclose(main_traces(fig)[0].y, curves.moving_average(y, 7), rtol=1e-6)
    fig, info = comparison_figure(ChartSpec("val_loss", smoothing="none"), [r], {r.id: history(y)})
    assert raw_traces(fig) == [] and len(main_traces(fig)) == 1
    np.testing.assert_allclose(main_traces(fig)[0].y, y, rtol=1e-6)
    assert info == {"shown": 300, "total": 300}


def test_a_spike_in_100k_points_is_drawn():
    y = loss_curve(100_000, seed=1)
    y[61_234] = 1e4
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss"), [r], {r.id: history(y)})
    (raw,) = raw_traces(fig)
    assert raw.y.max() == np.float32(1e4) and 61_234 in raw.x
    assert info["total"] == 100_000 and info["shown"] == len(raw.x) <= 2004


def test_best_marker_is_the_true_minimum_of_the_stored_points():
    y = loss_curve(100_000, seed=2)
    y[70_001] = -3.0  # a lone dip: the smoothed line hides it, the marker does not
    r = run(0)
    fig, _ = comparison_figure(ChartSpec("val_loss", ema_weight=0.99), [r], {r.id: history(y)})
    (best,) = markers(fig)
    assert list(best.x) == [70_001] and list(best.y) == [-3.0]
    assert best.meta[1] == "-3 at step 70,001" and "best: %{meta[1]}" in best.hovertemplate
    assert main_traces(fig)[0].y.min() > -1  # the smoothed line does not reach it


def test_best_marker_of_an_accuracy_is_the_maximum():
    y = np.array([0.5, 0.7, np.nan, 0.9, 0.8])
    r = run(0)
    fig, _ = comparison_figure(ChartSpec("val_accuracy"), [r], {r.id: history(y)})
    (best,) = markers(fig)
    assert list(best.x) == [3] and list(best.y) == [0.9]
    fig, _ = comparison_figure(ChartSpec("val_accuracy", show_best=False), [r], {r.id: history(y)})
    assert markers(fig) == []


def test_x_range_restricts_the_points_and_the_counts():
    y = loss_curve(10_000)
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss", x_range=(1000, 2000)), [r], {r.id: history(y)})
    (main,) = main_traces(fig)
    assert main.x.min() == 999 and main.x.max() == 2001  # one neighbour each side reaches the edges
    assert info == {"shown": 1003, "total": 1003}
    (best,) = markers(fig)
    assert 999 <= best.x[0] <= 2001 and best.y[0] == y[999:2002].min()


def test_x_range_then_downsampling_zooms_in_on_detail():
    y = loss_curve(100_000)
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss", max_points=2000, x_range=(50_000, 51_000)), [r],
                                  {r.id: history(y)})
    assert info == {"shown": 1003, "total": 1003}  # every stored point of the view: nothing left out when zoomed


def test_epoch_and_wall_time_axes():
    y = loss_curve(400)
    h = history(y, steps_per_epoch=100, start=1.7e9, seconds_per_step=0.5)
    epoch = h.epoch.copy()
    epoch[::2] = np.nan  # epoch logged on every other point only
    h = History(h.step, h.value, epoch, h.wall_time)
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss", x="epoch", smoothing="none"), [r], {r.id: h})
    assert info == {"shown": 200, "total": 200}
    np.testing.assert_allclose(main_traces(fig)[0].x, epoch[1::2], rtol=1e-6)
    assert fig.layout.xaxis.title.text == "epoch"
    fig, _ = comparison_figure(ChartSpec("val_loss", x="wall_time", smoothing="none"), [r], {r.id: h})
    np.testing.assert_allclose(main_traces(fig)[0].x, np.arange(400) * 0.5)  # seconds since the first point
    assert fig.layout.xaxis.title.text == "wall time (s)"


def test_a_wall_clock_that_jumps_back_still_draws_and_filters():
    y = loss_curve(1000)
    h = history(y)
    wall = h.wall_time.copy()
    wall[500:] -= 100  # resumed on a machine with an earlier clock
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss", x="wall_time", x_range=(0, 50), smoothing="none"), [r],
                                  {r.id: History(h.step, h.value, h.epoch, wall)})
    x = main_traces(fig)[0].x
    assert ((x >= 0) & (x <= 50)).all() and info["total"] == len(x) > 0


def test_inputs_are_not_changed():
    y = loss_curve(5000)
    y[10] = np.nan
    h = history(y)
    copies = [a.copy() for a in (h.step, h.value, h.epoch, h.wall_time)]
    r = run(0)
    config = dict(r.config)
    comparison_figure(ChartSpec("val_loss", group_seeds=True, max_points=100), [r, run(1)],
                      {r.id: h, "id1": h})
    for before, after in zip(copies, (h.step, h.value, h.epoch, h.wall_time)):
        np.testing.assert_array_equal(before, after)
    assert r.config == config


# ---- colours, groups, axes -----------------------------------------------------------------------------------------


def test_color_by_a_config_key_gives_one_legend_entry_per_value():
    runs = [run(0, lr=0.01), run(1, lr=0.001), run(2, lr=0.01), run(3, lr=0.001), run(4)]
    runs[4].config.pop("lr")
    hs = {r.id: history(loss_curve(100, seed=i)) for i, r in enumerate(runs)}
    fig, _ = comparison_figure(ChartSpec("val_loss", color_by="lr"), runs, hs)
    mains = main_traces(fig)
    assert len(mains) == 5
    assert [t.name for t in mains if t.showlegend] == ["lr=0.01", "lr=0.001", "lr=(not set)"]
    colour = {t.meta[0]: t.line.color for t in mains}
    assert colour["run-0"] == colour["run-2"] != colour["run-1"] == colour["run-3"] != colour["run-4"]
    legend_entries = {t.legendgroup for t in mains}
    assert len(legend_entries) == 3
    # the legend order follows the values: 0.001 before 0.01
    order = [t.name for t in sorted((t for t in mains if t.showlegend), key=lambda t: t.line.color)]
    assert set(order) == {"lr=0.001", "lr=0.01", "lr=(not set)"}
    from recipe_core.figures import COLORS
    assert colour["run-1"] == COLORS[0] and colour["run-0"] == COLORS[1] and colour["run-4"] == COLORS[2]


def test_color_by_run_gives_each_run_its_colour_and_legend_entry():
    runs = [run(i) for i in range(3)]
    hs = {r.id: history(loss_curve(100, seed=i)) for i, r in enumerate(runs)}
    fig, _ = comparison_figure(ChartSpec("val_loss"), runs, hs)
    mains = main_traces(fig)
    assert [t.name for t in mains] == ["run-0", "run-1", "run-2"]
    assert len({t.line.color for t in mains}) == 3
    for raw, main in zip(raw_traces(fig), mains):
        assert raw.line.color == main.line.color and raw.legendgroup == main.legendgroup and raw.showlegend is False


def test_group_seeds_draws_the_mean_and_a_band():
    offsets = [0.0, 0.2, 0.4]
    runs = [run(i) for i in range(3)] + [run(9, lr=0.1)]
    hs = {r.id: history(loss_curve(3000, seed=7) + off) for r, off in zip(runs, offsets)}
    hs["id9"] = history(loss_curve(3000, seed=8))
    fig, info = comparison_figure(ChartSpec("val_loss", group_seeds=True, smoothing="none", max_points=5000), runs, hs)
    mains = main_traces(fig)
    assert [t.name for t in mains] == ["run-0 (3 seeds)", "run-9"]
    fills = [t for t in fig.data if t.fill == "tonexty"]
    assert len(fills) == 1 and fills[0].legendgroup == mains[0].legendgroup
    lo = fig.data[fig.data.index(fills[0]) - 1]  # tonexty fills down to the trace before it
    base = loss_curve(3000, seed=7)
    np.testing.assert_allclose(mains[0].y, base + 0.2, atol=1e-5)
    np.testing.assert_allclose(lo.y, base, atol=1e-5)
    np.testing.assert_allclose(fills[0].y, base + 0.4, atol=1e-5)
    assert "seeds: 0, 1, 2" in mains[0].meta[2]
    assert info == {"shown": 3000 + 3000, "total": 4 * 3000}


def test_a_seed_group_counts_distinct_seeds_not_runs():
    # 5 runs of one config with 2 seeds (a run started twice by accident): "(5 seeds)" would be false
    runs = [Run(f"id{i}", f"run-{i}", {"model": "mlp", "seed": seed}, seed) for i, seed in enumerate([0, 0, 1, 1, 1])]
    hs = {r.id: history(loss_curve(50, seed=i)) for i, r in enumerate(runs)}
    fig, _ = comparison_figure(ChartSpec("val_loss", group_seeds=True), runs, hs)
    assert [t.name for t in main_traces(fig)] == ["run-0 (5 runs, 2 seeds)"]
    fig, _ = comparison_figure(ChartSpec("val_loss", group_seeds=True), runs[:2], hs)
    assert [t.name for t in main_traces(fig)] == ["run-0 (2 runs, 1 seed)"]
    fig, _ = comparison_figure(ChartSpec("val_loss", group_seeds=True), runs[1:3], hs)
    assert [t.name for t in main_traces(fig)] == ["run-1 (2 seeds)"]


def test_reference_lines_with_one_value_share_one_label():
    r = run(0)
    refs = {"prior": 1.0461, "input-independent": 1.0459, "human (1 annotator, labelled sample)": 0.9}
    fig, _ = comparison_figure(ChartSpec("val_loss"), [r], {r.id: history(loss_curve(99))}, refs)
    assert [s.label.text for s in fig.layout.shapes] == ["prior = input-independent = 1.046",
                                                         "human (1 annotator, labelled sample) = 0.9"]


def test_group_seeds_with_std_band_and_downsampling_keeps_a_seeds_spike():
    runs = [run(i) for i in range(3)]
    ys = [loss_curve(30_000, seed=i) for i in range(3)]
    ys[1][12_345] = 50.0  # one seed spikes: it shows in hi even when the mean is smoothed
    hs = {r.id: history(y) for r, y in zip(runs, ys)}
    fig, info = comparison_figure(ChartSpec("val_loss", group_seeds=True, band="std", max_points=600), runs, hs)
    hi = next(t for t in fig.data if t.fill == "tonexty")
    assert 12_345 in hi.x
    assert info["shown"] <= 600 + 12 and info["total"] == 90_000
    assert [t.name for t in main_traces(fig)] == ["run-0 (3 seeds)"]


def test_seed_groups_take_consecutive_colours():
    from recipe_core.figures import COLORS
    runs = [run(0), run(1), run(2), run(3, lr=0.1)]  # 0-2 one config, 3 another
    hs = {r.id: history(loss_curve(100, seed=i)) for i, r in enumerate(runs)}
    fig, _ = comparison_figure(ChartSpec("val_loss", group_seeds=True), runs, hs)
    assert [(t.name, t.line.color) for t in main_traces(fig)] == [("run-0 (3 seeds)", COLORS[0]), ("run-3", COLORS[1])]


def test_seeds_that_do_not_overlap_are_drawn_one_by_one():
    runs = [run(0), run(1)]
    h0 = history(loss_curve(100))
    h1 = History(h0.step + 1000, h0.value, h0.epoch, h0.wall_time)
    fig, _ = comparison_figure(ChartSpec("val_loss", group_seeds=True), runs, {"id0": h0, "id1": h1})
    assert [t.name for t in main_traces(fig)] == ["run-0", "run-1"]


def test_log_axes_layout_and_uirevision():
    r = run(0)
    fig, _ = comparison_figure(ChartSpec("val_loss", log_x=True, log_y=True), [r], {r.id: history(loss_curve(99))})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert fig.layout.title.text == "val_loss" and fig.layout.xaxis.title.text == "step"
    assert fig.layout.uirevision == "val_loss" and fig.layout.height == 450
    assert fig.layout.template.layout.paper_bgcolor == "white"
    fig, _ = comparison_figure(ChartSpec("val_loss"), [r], {r.id: history(loss_curve(99))})
    assert fig.layout.xaxis.type is None and fig.layout.yaxis.type is None


def test_reference_lines():
    r = run(0)
    refs = {"prior": 0.69, "human (2 annotators)": 0.9, EVIL: 0.1, "nothing": float("nan")}
    fig, _ = comparison_figure(ChartSpec("val_loss"), [r], {r.id: history(loss_curve(99))}, refs)
    lines = {s.label.text: s for s in fig.layout.shapes}
    assert len(lines) == 3
    assert lines["prior = 0.69"].y0 == lines["prior = 0.69"].y1 == 0.69 and lines["prior = 0.69"].line.dash == "dash"
    assert "human (2 annotators) = 0.9" in lines
    assert not any("<script" in text for text in lines)
    fig, _ = comparison_figure(ChartSpec("val_loss", log_y=True), [r], {r.id: history(loss_curve(99))},
                               {"zero": 0.0, "prior": 0.69})
    assert [s.y0 for s in fig.layout.shapes] == [0.69]  # 0 has no place on a log axis


# ---- text from the data, empty input, validation -------------------------------------------------------------------


def test_html_in_names_config_and_metric_is_escaped():
    r = Run("id0", EVIL, {"lr": EVIL, EVIL: 1, "seed": 0}, 0)
    fig, _ = comparison_figure(ChartSpec(EVIL, color_by="run"), [r], {r.id: history(loss_curve(50))})
    every = list(strings(json.loads(fig.to_json())))
    assert not any("<script" in s or "<b>bold" in s for s in every)
    (main,) = main_traces(fig)
    assert main.name.startswith("&lt;script&gt;")
    assert "%{x}" not in main.hovertemplate.replace("%{x:,}", "")  # data only travels in meta, never in a template
    fig, _ = comparison_figure(ChartSpec("val_loss", color_by="lr"), [r], {r.id: history(loss_curve(50))})
    assert main_traces(fig)[0].name.startswith("lr=&lt;script&gt;")


def test_no_points_gives_a_message():
    for runs, hs in [([], {}), ([run(0)], {}), ([run(0)], {"id0": history([])})]:
        fig, info = comparison_figure(ChartSpec("val_<loss>"), runs, hs)
        assert info == {"shown": 0, "total": 0} and len(fig.data) == 0
        assert fig.layout.annotations[0].text == "no points for val_&lt;loss&gt; in the selected runs"
    r = run(0)
    fig, info = comparison_figure(ChartSpec("val_loss", x_range=(500, 600)), [r], {r.id: history(loss_curve(50))})
    assert info == {"shown": 0, "total": 0}


def test_a_run_without_history_is_left_out():
    runs = [run(0), run(1)]
    fig, info = comparison_figure(ChartSpec("val_loss"), runs, {"id1": history(loss_curve(10))})
    assert [t.name for t in main_traces(fig)] == ["run-1"] and info == {"shown": 10, "total": 10}


@pytest.mark.parametrize("bad", [{"x": "time"}, {"smoothing": "gaussian"}, {"band": "iqr"}, {"ema_weight": 1.0},
                                 {"window": 0}, {"max_points": 2}, {"x_range": (0, float("inf"))},
                                 {"x_range": (1,)}])
def test_spec_refuses_bad_values(bad):
    with pytest.raises(BadInput):
        ChartSpec("val_loss", **bad)


def test_spec_x_range_becomes_a_tuple_of_floats_and_references_need_numbers():
    spec = ChartSpec("val_loss", x_range=[10, 20])
    assert spec.x_range == (10.0, 20.0) and hash(spec)
    r = run(0)
    with pytest.raises(BadInput):
        comparison_figure(ChartSpec("val_loss"), [r], {r.id: history(loss_curve(10))}, {"prior": "high"})


# ---- size and time -------------------------------------------------------------------------------------------------


def test_100_runs_of_100k_points_make_a_small_figure_quickly():
    n = 100_000
    step = np.arange(n, dtype=np.int64)
    epoch, wall = step / 1000, 1.7e9 + step * 0.1
    rng = np.random.default_rng(0)
    decay = 2 * np.exp(-step / 20_000)
    runs, hs = [], {}
    for i in range(100):
        y = decay + rng.normal(0, 0.05, n)
        y[rng.integers(n)] = 30.0
        runs.append(Run(f"id{i}", f"mlp-{i:03d}", {"model": "mlp", "lr": 10.0 ** -(i % 4), "width": 64, "seed": i}, i))
        hs[runs[-1].id] = History(step, y, epoch, wall)
    start = time.perf_counter()
    fig, info = comparison_figure(ChartSpec("val_loss", max_points=2000), runs, hs, {"prior": 0.69})
    built = time.perf_counter() - start
    size = len(fig.to_json())
    serialised = time.perf_counter() - start - built
    print(f"\n100 runs x 100k points: built in {built:.2f} s, to_json in {serialised:.2f} s, "
          f"{size / 1e6:.2f} MB, {info['shown']:,} of {info['total']:,} points")
    assert len(raw_traces(fig)) == len(main_traces(fig)) == 100
    assert info["total"] == 100 * n and info["shown"] <= 100 * 2004
    assert all(t.y.max() == np.float32(30.0) for t in raw_traces(fig))  # every run's spike survives
    assert size < 5_000_000
    assert built < 10
