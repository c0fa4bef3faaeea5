"""The figures of a user's model's checks: the dependency heatmap is the stored matrix, the LR range plot marks the
suggested learning rate, the batch grid draws each image once, the watched histograms keep every count; and the
table helpers: the red checks by name, the red-check filter."""
import numpy as np
import pandas as pd
import pytest

from recipe_core import check_figures
from recipe_core.compare import reports
from recipe_core.tracking.records import RunRecord
from recipe_core.training import verdicts


def mixing_matrix(n: int = 16) -> list[list[float]]:
    """What a model that subtracts the batch mean gives: each output depends on every input, its own most."""
    m = np.full((n, n), 1 / n)
    np.fill_diagonal(m, 1.0)
    m[3, 7] = 0.5  # one cell that stands out, so a transposed or shifted drawing is caught
    return m.round(4).tolist()


def test_the_dependency_heatmap_is_the_matrix_row_by_output():
    matrix = mixing_matrix()
    fig = check_figures.dependency_figure(matrix, "t", marks=[[0, 1], [3, 7]], floor=1e-6)
    heat = fig.data[0]
    assert np.array_equal(np.asarray(heat.customdata, dtype=float), np.asarray(matrix))  # [i][j]: output i, input j
    # the colour is log10 of the dependence down to the threshold: a weak leak is as visible as a strong one
    assert np.allclose(np.asarray(heat.z, dtype=float), np.log10(np.maximum(matrix, 1e-6)))
    assert heat.zmin == -6 and heat.zmax == 0
    assert tuple(fig.layout.yaxis.range) == (15.5, -0.5)  # row 0 on top, as a matrix reads; no padding
    marks = fig.data[1]
    assert list(marks.x) == [1, 7] and list(marks.y) == [0, 3]  # x is the input, y the output
    assert len(check_figures.dependency_figure(matrix, "t", floor=1e-6).data) == 1  # nothing to mark: the heatmap only


def test_every_leak_is_found_and_none_on_the_allowed_side():
    causal = np.tril(np.ones((4, 4)))
    causal[0, 3] = 1e-4  # output 0 sees input 3: a future position, however weakly
    causal[2, 0] = 1e-9  # below the threshold: independent
    assert verdicts.dependent_cells(causal.tolist(), future_only=True) == [[0, 3]]
    batch = np.eye(3)
    batch[1, 0] = batch[2, 1] = 0.01
    assert verdicts.dependent_cells(batch.tolist(), future_only=False) == [[1, 0], [2, 1]]


def test_an_empty_matrix_says_so():
    fig = check_figures.dependency_figure([], "t", floor=1e-6)
    assert fig.layout.annotations[0].text == "no values to show"


def test_the_lr_range_plot_marks_the_suggested_lr():
    lrs = np.geomspace(1e-6, 1.0, 100)
    losses = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3) * 3)) + np.where(lrs > 0.1, 50 * lrs, 0)
    fig = check_figures.lr_range_figure(lrs.tolist(), losses.tolist(), suggested=1e-3)
    assert fig.layout.xaxis.type == "log"
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 1e-3
    (label,) = fig.layout.annotations
    assert "suggested 0.001" in label.text
    assert label.x == pytest.approx(-3)  # beside the line: a log axis places annotations by log10(x)
    point = fig.data[1]
    assert list(point.x) == [1e-3]
    nearest = int(np.argmin(np.abs(np.log(lrs) - np.log(1e-3))))
    assert list(point.y) == [losses[nearest]]  # on the curve
    without = check_figures.lr_range_figure(lrs.tolist(), losses.tolist(), suggested=None)
    assert not without.layout.shapes and len(without.data) == 1


def test_the_lr_range_plot_drops_points_a_log_axis_cannot_show():
    fig = check_figures.lr_range_figure([0.0, 1e-4, 1e-3, float("nan")], [1.0, float("inf"), 0.9, 0.8], 1e-3)
    assert list(fig.data[0].x) == [1e-3]


def test_the_image_grid_draws_each_image_once_with_its_label():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 1, 8, 8)).tolist()
    fig = check_figures.image_grid_figure(images, [str(d) for d in range(8)])
    assert len(fig.data) == 8 and {t.type for t in fig.data} == {"image"}
    first = np.asarray(fig.data[0].z)
    assert first.shape == (8, 8, 3) and np.array_equal(first[..., 0], np.asarray(images[0][0]))
    assert [a.text for a in fig.layout.annotations] == [str(d) for d in range(8)]
    colour = check_figures.image_grid_figure(rng.integers(0, 256, (3, 3, 4, 5)).tolist(), ["<b>x</b>"] * 3)
    assert len(colour.data) == 3 and np.asarray(colour.data[0].z).shape == (4, 5, 3)
    assert colour.layout.annotations[0].text == "&lt;b&gt;x&lt;/b&gt;"  # a label is text, never HTML
    assert len(check_figures.image_grid_figure(images * 2, None).data) == 16
    assert len(check_figures.image_grid_figure([[[1, 2]], "not an image"], None).data) == 1


def test_the_overfit_curve_draws_the_threshold():
    fig = check_figures.overfit_figure([[0, 2.3], [50, 1.0], [100, 0.4]], threshold=0.05)
    assert list(fig.data[0].y) == [2.3, 1.0, 0.4] and fig.layout.yaxis.type == "log"
    assert fig.layout.shapes[0].y0 == 0.05
    assert fig.layout.annotations[0].y == pytest.approx(np.log10(0.05))  # beside the line, on the log axis


def test_watched_histograms_keep_every_count_on_one_value_axis():
    snapshots = [[0, -1.0, 1.0, [1, 2, 3, 4]], [100, -0.5, 0.5, [0, 10, 10, 0]], [200, 0.0, 0.0, [7]]]
    steps, centres, z = check_figures.rebin(snapshots, n_bins=8)
    assert steps == [0, 100, 200] and len(centres) == 8 and z.shape == (8, 3)
    assert np.allclose(z.sum(axis=0), [10, 20, 7])  # no count lost
    assert z[:, 1][centres < -0.5].sum() == 0  # the narrow snapshot stays in its own range
    assert np.allclose(z[:, 0], [0.5, 0.5, 1, 1, 1.5, 1.5, 2, 2]) and np.allclose(z[:, 1], [0, 0, 0, 10, 10, 0, 0, 0])
    wide = check_figures.rebin([[0, 0.0, 1.0, [4, 4]], [1, 0.0, 4.0, [8, 8]]], n_bins=8)[2]
    assert (wide[:, 1] > 0).all()  # a wide stored bin fills every shared bin it covers: no empty stripes
    fig = check_figures.watch_figure(snapshots, "gradients/<b>fc</b>")
    assert "&lt;b&gt;" in fig.layout.title.text and list(fig.data[0].x) == [0, 100, 200]
    assert check_figures.rebin([[0, float("nan"), 1.0, [1]]])[0] == []


def test_the_badge_names_the_red_checks_in_the_recipe_order():
    checks = {"causality": {"ok": False}, "lr_range": {"ok": None}, "gradients": {"ok": False},
              "loss_at_init": {"ok": True}}
    assert reports.red_checks(checks) == ["gradients", "causality"]
    assert reports.checks_badge(checks) == "FAIL gradients, causality"
    assert reports.checks_badge({n: {"ok": True} for n in "abcdefgh"} | {"lr_range": {"ok": None}}) == "8/8 passed"
    assert reports.checks_badge({}) == "–"


def test_the_red_check_filter_keeps_only_runs_where_that_check_failed():
    runs = [RunRecord(id="a", name="a", model="m", config={}, checks={"gradients": {"ok": False}}),
            RunRecord(id="b", name="b", model="m", config={}, checks={"gradients": {"ok": True},
                                                                      "causality": {"ok": False}}),
            RunRecord(id="c", name="c", model="m", config={}, checks={"gradients": {"ok": None}})]
    frame = pd.DataFrame({"id": ["a", "b", "c"]})
    by_id = {r.id: r.checks for r in runs}
    assert reports.keep_red(frame, by_id, ["gradients"])["id"].tolist() == ["a"]
    assert reports.keep_red(frame, by_id, ["gradients", "causality"])["id"].tolist() == ["a", "b"]
    assert reports.keep_red(frame, by_id, [])["id"].tolist() == ["a", "b", "c"]
    assert reports.red_check_names(runs) == ["gradients", "causality"]
    table = reports.with_checks(pd.DataFrame({"id": ["a", "b", "c"]}), runs)
    assert table["checks"].tolist() == ["FAIL gradients", "FAIL causality", "–"]


def test_a_check_run_charts_its_longest_curve_not_a_one_point_metric():
    logged = ["loss_at_init", "overfit_loss", "suggested_lr"]
    assert reports.chart_metric("val_loss", logged, {"loss_at_init": 1, "overfit_loss": 52, "suggested_lr": 1}) \
        == "overfit_loss"
    assert reports.chart_metric("val_loss", logged) == "loss_at_init"  # no counts: the first, as before
    assert reports.chart_metric("val_loss", [*logged, "val_loss"], {"overfit_loss": 52}) == "val_loss"
