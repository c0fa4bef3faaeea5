"""Plotly figures of the recipe's checks on a user's own model: the dependency heatmaps, the overfit curve, the
learning-rate range test, the batch as the net saw it, and the watched histograms (plain values in, go.Figure out).

Every string from a run (labels, parameter and series names) goes through escape(): plotly reads HTML in text.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recipe_core.figures import COLORS, HEIGHT, _empty, _layout
from recipe_core.safetext import plotly_literal as escape

MAX_MARKS = 400  # cells outlined on a heatmap (a 24-position causal leak has 276)
GRID_COLUMNS = 8  # images per row of the batch grid
CELL_PX, GAP_PX, LABEL_PX = 56, 6, 18  # an image's square, the gap between two, the room for a label above one
WATCH_BINS = 64  # value bins of the step x value heatmap


# -- which output depends on which input -----------------------------------------------------------------
def dependency_figure(matrix: list[list[float]], title: str, output: str = "output", input_: str = "input",
                      marks: list | None = None, *, floor: float) -> go.Figure:
    """matrix[i][j]: how much output i depends on input j (largest 1), row i drawn top-down; marks: [i, j] cells
    to outline (the red pairs, or the leaks). The colour is logarithmic down to floor, the checks' threshold, so a
    dependence of 1e-4 (a batch mean over 16 examples, a leak through one attention head) shows as clearly as a
    strong one; below the threshold a cell is white."""
    if not matrix or not matrix[0]:
        return _empty(title, HEIGHT)
    raw = [[None if v is None else float(v) for v in row] for row in matrix]
    shade = [[None if v is None else math.log10(max(v, floor)) for v in row] for row in raw]
    n_rows, n_cols = len(raw), len(raw[0])
    decades = list(range(int(math.log10(floor)), 1))
    fig = go.Figure(go.Heatmap(z=shade, customdata=raw, x=list(range(n_cols)), y=list(range(n_rows)),
                               zmin=decades[0], zmax=0, colorscale="Blues",
                               colorbar={"title": {"text": "dependence", "side": "right"}, "tickvals": decades,
                                         "ticktext": [f"1e{d}" if d else "1" for d in decades]},
                               hovertemplate=f"{output} %{{y}} ← {input_} %{{x}}: %{{customdata:.3g}}<extra></extra>"))
    cells = [m for m in (marks or []) if isinstance(m, (list, tuple)) and len(m) == 2][:MAX_MARKS]
    if cells:
        fig.add_scatter(x=[int(j) for _, j in cells], y=[int(i) for i, _ in cells], mode="markers",
                        name="mixes", marker={"symbol": "square-open", "size": 14, "color": COLORS[3],
                                              "line": {"width": 2}},
                        hovertemplate=f"{output} %{{y}} depends on {input_} %{{x}}<extra></extra>")
    # the ranges are the cells' own (the marks would pad them); row 0 on top, as a matrix reads
    fig.update_yaxes(title=output, range=[n_rows - 0.5, -0.5], autorange=False, scaleanchor="x",
                     constrain="domain", dtick=_dtick(n_rows))
    fig.update_xaxes(title=input_, range=[-0.5, n_cols - 0.5], autorange=False, constrain="domain",
                     dtick=_dtick(n_cols))
    fig = _layout(fig, title, max(HEIGHT, 40 + 22 * min(n_rows, 24)))
    fig.update_layout(showlegend=False)
    return fig


def _dtick(n: int) -> int:
    return 1 if n <= 20 else max(1, n // 10)


# -- training a little ------------------------------------------------------------------------------------
def overfit_figure(curve: list, threshold: float | None = None, floor: float | None = None,
                   title: str = "Overfitting one batch") -> go.Figure:
    """The training loss on one batch against the step ([[step, loss], ...]), with the line it must get under."""
    points = [(s, v) for s, v in (curve or []) if _finite(v)]
    if not points:
        return _empty(title, HEIGHT)
    fig = go.Figure(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines", name="train loss",
                               line={"color": COLORS[0], "width": 2}))
    positive = all(v > 0 for _, v in points)
    for value, label, color in ((threshold, "must get under", COLORS[3]), (floor, "loss floor", COLORS[2])):
        if _finite(value) and value > 0:
            fig.add_hline(y=value, line={"dash": "dash", "color": color, "width": 1.5})
            # not add_hline's annotation: on a log axis plotly places it at 10**value
            fig.add_annotation(y=math.log10(value) if positive else value, x=1, xref="paper", xanchor="right",
                               yanchor="bottom", text=f"{label} {value:.3g}", showarrow=False,
                               font={"color": color, "size": 11})
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="training loss" + (" (log)" if positive else ""), type="log" if positive else "linear",
                     dtick=1 if positive else None)  # a label per power of ten, not a crowd of minor ones
    return _layout(fig, title, HEIGHT)


def lr_range_figure(lrs: list, losses: list, suggested: float | None = None,
                    title: str = "Learning-rate range test") -> go.Figure:
    """The loss against an exponentially growing learning rate (log x), the suggested one marked by a line and a
    point on the curve."""
    points = [(lr, v) for lr, v in zip(lrs or [], losses or []) if _finite(lr) and lr > 0 and _finite(v)]
    if not points:
        return _empty(title, HEIGHT)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", name="loss", line={"color": COLORS[0], "width": 2},
                               hovertemplate="lr %{x:.3g}<br>loss %{y:.4g}<extra></extra>"))
    if _finite(suggested) and suggested > 0:
        fig.add_vline(x=suggested, line={"dash": "dash", "color": COLORS[3], "width": 1.5})
        # not add_vline's annotation: on a log axis plotly places it at 10**suggested
        fig.add_annotation(x=math.log10(suggested), y=1, yref="paper", xanchor="left", yanchor="top",
                           text=f" suggested {suggested:.3g}", showarrow=False, font={"color": COLORS[3], "size": 11})
        fig.add_scatter(x=[suggested], y=[_loss_at(xs, ys, suggested)], mode="markers", name="suggested",
                        marker={"size": 11, "color": COLORS[3]},
                        hovertemplate="suggested lr %{x:.3g}<extra></extra>")
    fig.update_xaxes(title="learning rate (log)", type="log")
    fig.update_yaxes(title="training loss (smoothed)")
    fig = _layout(fig, title, HEIGHT)
    fig.update_layout(showlegend=False)
    return fig


def _loss_at(xs: list, ys: list, lr: float) -> float:
    """The curve's loss at a learning rate: the nearest point on a log scale."""
    i = min(range(len(xs)), key=lambda k: abs(math.log(xs[k]) - math.log(lr)))
    return ys[i]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- the batch as the net saw it ------------------------------------------------------------------------------
def image_grid_figure(images: list, labels: list | None = None, columns: int = GRID_COLUMNS,
                      title: str = "The batch as the net saw it") -> go.Figure:
    """Images (each C x H x W of ints 0..255, C 1 or 3) in a grid, each titled by its label."""
    pictures = [_rgb(im) for im in images or []]
    pictures = [p for p in pictures if p is not None]
    if not pictures:
        return _empty(title, HEIGHT)
    columns = max(1, min(columns, len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    labels = [escape(v) for v in (labels or [])]
    titles = [labels[k] if k < len(labels) else "" for k in range(len(pictures))]
    # A fixed size, each cell CELL_PX square: a label then sits right above its image, whatever the page's width
    plot_w, plot_h = columns * CELL_PX + (columns - 1) * GAP_PX, rows * CELL_PX + (rows - 1) * LABEL_PX
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=GAP_PX / plot_w,
                        vertical_spacing=LABEL_PX / plot_h if rows > 1 else 0.0)
    for k, picture in enumerate(pictures):
        fig.add_trace(go.Image(z=picture, hovertemplate="x %{x}, y %{y}: %{z}<extra></extra>"),
                      row=k // columns + 1, col=k % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for note in fig.layout.annotations:  # the subplot titles: labels, small
        note.font = {"size": 11}
    fig = _layout(fig, title, plot_h + 30 + LABEL_PX + 10, compact=True)  # compact: images have no legend
    fig.update_layout(width=plot_w + 20, margin={"l": 10, "r": 10, "t": 30 + LABEL_PX, "b": 10})
    return fig


def _rgb(image) -> np.ndarray | None:
    """C x H x W (C 1 or 3) as the H x W x 3 uint8 array go.Image draws; None when it is not one."""
    try:
        a = np.asarray(image, dtype=float)
    except (TypeError, ValueError):
        return None
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3) or not a.size:
        return None
    a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return np.repeat(a, 3, axis=0).transpose(1, 2, 0) if a.shape[0] == 1 else a.transpose(1, 2, 0)


# -- watched histograms over training ---------------------------------------------------------------------------
def rebin(snapshots: list, n_bins: int = WATCH_BINS) -> tuple[list, np.ndarray, np.ndarray]:
    """Snapshots [[step, lo, hi, counts], ...] (each with its own range) on one shared value axis: (steps, bin
    centres, counts [bins x steps]). Each stored bin's count is shared out over the shared bins it overlaps, by
    the overlap (one bin each would leave empty stripes where stored bins are wider than shared ones)."""
    good = [(s, float(lo), float(hi), list(c)) for s, lo, hi, c in snapshots or []
            if _finite(lo) and _finite(hi) and hi >= lo and c]
    if not good:
        return [], np.zeros(0), np.zeros((0, 0))
    low, high = min(g[1] for g in good), max(g[2] for g in good)
    if high <= low:  # every value the same: one bin around it
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, n_bins + 1)
    z = np.zeros((n_bins, len(good)))
    for k, (_, lo, hi, counts) in enumerate(good):
        counts = np.asarray(counts, dtype=float)
        if hi == lo:  # a constant snapshot: every value in the one shared bin that holds it
            z[min(np.searchsorted(edges, lo, side="right") - 1, n_bins - 1), k] += counts.sum()
            continue
        own = np.linspace(lo, hi, len(counts) + 1)  # the snapshot's own bin edges
        overlap = np.clip(np.minimum(own[1:, None], edges[None, 1:]) - np.maximum(own[:-1, None], edges[None, :-1]),
                          0, None)  # [own bins x shared bins]
        z[:, k] = (counts / np.diff(own)) @ overlap
    return [g[0] for g in good], (edges[:-1] + edges[1:]) / 2, z


def watch_figure(snapshots: list, series: str, n_bins: int = WATCH_BINS) -> go.Figure:
    """One watched series (a layer's gradients, weights or activations) over training: step x value, the colour the
    count in each value bin (log scale, so the tails show)."""
    title = f"{escape(series)} over training"
    steps, centres, z = rebin(snapshots, n_bins)
    if not steps:
        return _empty(title, HEIGHT)
    fig = go.Figure(go.Heatmap(z=np.log1p(z), x=steps, y=centres, colorscale="Viridis", customdata=z,
                               colorbar={"title": {"text": "log(1+count)", "side": "right"}},
                               hovertemplate="step %{x}<br>value %{y:.3g}<br>%{customdata:,.0f} values"
                                             "<extra></extra>"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="value")
    return _layout(fig, title, HEIGHT)
