"""The Compare page's figure: one metric of several runs, downsampled, smoothed, and banded across seeds.

Pure: already-loaded histories in, (go.Figure, {"shown", "total"}) out; curves.py does the array math.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, replace

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from recipe_core.compare import curves
from recipe_core.errors import BadInput
from recipe_core.figures import COLORS, escape, merge_references

AXIS_TITLES = {"step": "step", "epoch": "epoch", "wall_time": "wall time (s)"}
SMOOTHINGS = ("none", "ema", "window")
BANDS = ("minmax", "std")
HEIGHT = 450
FEW_POINTS = 30  # curves this short are drawn with markers
LABEL_ENDS = ("end", "start", "middle")
RAW_OPACITY = 0.25  # the unsmoothed curve stays readable under the smoothed one, spikes included
BAND_ALPHA = 0.18
CONFIG_LINE = 60  # characters per line of the config in a hover box
CONFIG_VALUE = 40  # longer config values are cut in a hover box (lists of columns, paths)
X_PRECISION = 1e-4  # float x is sent as float32 when that moves no point by more than this share of the x span


@dataclass(frozen=True)
class ChartSpec:
    """What the Compare page asks for; checked on creation, so a bad value fails with a message, not a blank chart."""

    metric: str
    x: str = "step"  # "step", "epoch" or "wall_time" (seconds since the run's first point)
    log_x: bool = False
    log_y: bool = False
    smoothing: str = "ema"  # "none", "ema" (TensorBoard's) or "window" (trailing mean over `window` points)
    ema_weight: float = 0.6  # TensorBoard's default; 0 is no smoothing
    window: int = 10
    color_by: str = "run"  # "run", or a config key: runs with the same value share a colour and a legend entry
    group_seeds: bool = False  # one mean line and band per config instead of one line per seed
    band: str = "minmax"  # "minmax" or "std" (mean -/+ population std)
    show_best: bool = True
    max_points: int = 2000  # per trace: about a point per pixel of a wide chart, and small enough for 100 runs
    x_range: tuple[float, float] | None = None  # the zoomed x range in data units (10**r for a log axis' range r)

    def __post_init__(self):
        if self.x not in AXIS_TITLES:
            raise BadInput(f"x must be one of {', '.join(AXIS_TITLES)}, not {self.x!r}")
        if self.smoothing not in SMOOTHINGS:
            raise BadInput(f"smoothing must be one of {', '.join(SMOOTHINGS)}, not {self.smoothing!r}")
        if self.band not in BANDS:
            raise BadInput(f"band must be one of {', '.join(BANDS)}, not {self.band!r}")
        curves.ema(np.empty(0), self.ema_weight)  # the same check and message as the smoothing itself
        curves.moving_average(np.empty(0), self.window)
        try:
            max_points = operator.index(self.max_points)
        except TypeError:
            raise BadInput(f"max_points must be a whole number, not {self.max_points!r}") from None
        if max_points < curves.MIN_POINTS:
            raise BadInput(f"max_points must be at least {curves.MIN_POINTS}, not {max_points}")
        if self.x_range is not None:
            try:
                lo, hi = (float(v) for v in self.x_range)
            except (TypeError, ValueError):
                raise BadInput(f"x_range must be two numbers, not {self.x_range!r}") from None
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise BadInput(f"x_range must be two finite numbers, not {self.x_range!r}")
            object.__setattr__(self, "x_range", (lo, hi))  # a tuple, so the spec stays hashable


@dataclass(frozen=True)
class _Style:
    """How one line looks in the legend: its colour, the legend group it toggles with, the legend text."""

    color: str
    group: str
    legend: str  # already escaped


def comparison_figure(spec: ChartSpec, runs: list, histories: dict, references: dict | None = None
                      ) -> tuple[go.Figure, dict]:
    """The metric of each run (runs in legend order), and {"shown": points drawn, "total": points stored in view}.

    Per run: x as asked, points without an x dropped, the view (x_range) kept, downsampled to max_points with
    every extreme kept, and only then smoothed, so what is drawn raw is what the smoothing saw. The best point
    is found on all stored points in view, not on the downsampled ones. A seed group's "shown" counts the points
    of its mean line; runs without a history for the metric are left out of both counts.
    """
    drawable = []  # (run, x, y): the stored points in view
    for run in runs:
        history = histories.get(run.id)
        if history is None:
            continue
        x, y = _points_in_view(spec, history)
        if len(x):
            drawable.append((run, x, y))
    if not drawable:
        return _empty(spec), {"shown": 0, "total": 0}

    groups = (curves.seed_groups([run for run, _, _ in drawable]) if spec.group_seeds
              else [[run] for run, _, _ in drawable])
    # Colours in legend order: the first run of each group, then the other seeds (drawn alone if they cannot band).
    styles = _styles(spec, [g[0] for g in groups] + [run for g in groups for run in g[1:]])
    traces: list[dict] = []
    in_legend: set[str] = set()
    shown = 0
    by_id = {run.id: (run, x, y) for run, x, y in drawable}
    for group in groups:
        members = [by_id[run.id] for run in group]
        if len(members) >= 2:
            drawn = _seed_band(spec, members, styles[group[0].id], in_legend, traces)
            if drawn is not None:
                shown += drawn
                continue
        for run, x, y in members:  # one run, or seeds that share no x range: each on its own
            shown += _run_line(spec, run, x, y, styles[run.id], in_legend, traces)

    layout = _layout(spec, showlegend=bool(traces))
    layout["shapes"] = _reference_lines(spec, references or {})
    # Built unvalidated: every trace and layout key comes from this module (tests pin them), and validating
    # 300 traces of 2,000 points took longer than reading and downsampling 10M points.
    fig = go.Figure({"data": traces, "layout": layout}, _validate=False)
    return fig, {"shown": shown, "total": sum(len(x) for _, x, _ in drawable)}


# ---- points ------------------------------------------------------------------------------------------------------


def _points_in_view(spec: ChartSpec, history) -> tuple[np.ndarray, np.ndarray]:
    """The stored (x, value) pairs that have an x and fall in spec.x_range (plus one neighbour each side)."""
    y = np.asarray(history.value, dtype=np.float64)
    if spec.x == "step":
        x = np.asarray(history.step)
    elif spec.x == "epoch":
        x = np.asarray(history.epoch, dtype=np.float64)
    else:
        wall = np.asarray(history.wall_time, dtype=np.float64)
        started = wall[np.isfinite(wall)]
        x = wall - (started[0] if len(started) else np.nan)
    if x.dtype.kind == "f":
        has_x = np.isfinite(x)  # an epoch that was not logged: the point has no place on this axis
        if not has_x.all():
            x, y = x[has_x], y[has_x]
    if spec.x_range is not None and len(x):
        lo, hi = spec.x_range
        if np.all(x[1:] >= x[:-1]):
            view = curves.visible(x, lo, hi)
        else:  # a wall clock that jumped back (a resumed run): no neighbours to add, just the points in range
            view = (x >= min(lo, hi)) & (x <= max(lo, hi))
        x, y = x[view], y[view]
    return x, y


def _smooth(spec: ChartSpec, y: np.ndarray) -> np.ndarray:
    if spec.smoothing == "ema":
        return curves.ema(y, spec.ema_weight)
    if spec.smoothing == "window":
        return curves.moving_average(y, spec.window)
    return y


def _compact_x(x: np.ndarray) -> np.ndarray:
    """x as a small typed array: plotly narrows integers itself; float32 where no point moves visibly."""
    if x.dtype.kind in "iu":
        return x if len(x) == 0 or np.abs(x).max() < 2**31 else x.astype(np.float64)  # else plotly sends a list
    x32 = x.astype(np.float32)
    span = float(x.max() - x.min()) if len(x) else 0.0
    moved = float(np.abs(x32.astype(np.float64) - x).max()) if len(x) else 0.0
    return x32 if moved <= X_PRECISION * span else x


def _x_text(spec: ChartSpec, x) -> str:
    if spec.x == "step":
        return f"step {int(x):,}"
    if spec.x == "epoch":
        return f"epoch {float(x):g}"
    return f"{float(x):,.1f} s"


# ---- traces ------------------------------------------------------------------------------------------------------


def _run_line(spec: ChartSpec, run, x: np.ndarray, y: np.ndarray, style: _Style, in_legend: set,
              traces: list) -> int:
    """One run's curve (raw faded under smoothed) and its best point; returns the points drawn."""
    keep = curves.downsample(x, y, spec.max_points)
    name = escape(run.name)
    _curve_traces(spec, x[keep], y[keep], style, in_legend, traces, name, _config_text(run.config or {}))
    if spec.show_best:
        best = curves.best_index(y, curves.direction(spec.metric))
        if best is not None:
            traces.append(_best_marker(spec, x[best], y[best], style, name))
    return len(keep)


def _seed_band(spec: ChartSpec, members: list, style: _Style, in_legend: set, traces: list) -> int | None:
    """Seeds of one config as their mean line over a lo..hi band; None when their curves share no x range."""
    try:
        grid, mean, lo, hi = curves.band([x for _, x, _ in members], [y for _, _, y in members], spec.band)
    except BadInput:
        return None
    if len(grid) <= spec.max_points:
        keep = np.arange(len(grid))
    else:  # a spike of one seed shows in hi (or lo) but may vanish in the mean: keep the extremes of all three
        n_each = max(curves.MIN_POINTS, spec.max_points // 3)
        keep = np.union1d(np.union1d(curves.downsample(grid, mean, n_each), curves.downsample(grid, lo, n_each)),
                          curves.downsample(grid, hi, n_each))
    x = _compact_x(grid[keep])
    fill = _rgba(style.color, BAND_ALPHA)
    for edge, filled in ((lo, False), (hi, True)):  # "tonexty" fills down to the trace just before: lo
        traces.append(_scatter(x=x, y=_smooth(spec, edge[keep]).astype(np.float32), mode="lines",
                               line={"width": 0, "color": style.color}, fill="tonexty" if filled else "none",
                               fillcolor=fill, showlegend=False, legendgroup=style.group, hoverinfo="skip"))
    first = members[0][0]
    n_seeds = len({str(run.seed) for run, _, _ in members})  # a seed trained twice is one seed, not two
    count = (f"{n_seeds} seeds" if n_seeds == len(members)
             else f"{len(members)} runs, {n_seeds} seed{'s' if n_seeds > 1 else ''}")
    name = f"{escape(first.name)} ({count})"
    if spec.color_by == "run":
        style = replace(style, legend=name)
    seeds = ", ".join(escape(run.seed) for run, _, _ in members)
    config = _config_text({k: v for k, v in (first.config or {}).items() if k != "seed"})
    _curve_traces(spec, grid[keep], mean[keep], style, in_legend, traces, name,
                  f"{config}<br>seeds: {seeds}<br>{'min..max' if spec.band == 'minmax' else 'mean ± std'} band")
    if spec.show_best:
        best = curves.best_index(mean, curves.direction(spec.metric))
        if best is not None:
            traces.append(_best_marker(spec, grid[best], mean[best], style, f"{name} mean"))
    return len(keep)


def _curve_traces(spec: ChartSpec, x: np.ndarray, y: np.ndarray, style: _Style, in_legend: set, traces: list,
                  name: str, config: str) -> None:
    """The main line with hover and legend; when smoothing, the raw points faded under it."""
    plot_x = _compact_x(x)
    if spec.smoothing != "none":
        traces.append(_scatter(x=plot_x, y=y.astype(np.float32), mode="lines",
                               line={"width": 1, "color": style.color}, opacity=RAW_OPACITY, showlegend=False,
                               legendgroup=style.group, hoverinfo="skip"))
    smoothed = " (smoothed)" if spec.smoothing != "none" else ""
    x_format = {"step": "step %{x:,}", "epoch": "epoch %{x}", "wall_time": "%{x:,.1f} s"}[spec.x]
    # Text from the data travels in meta: plotly substitutes %{meta[i]} once and never parses it as a template.
    traces.append(_scatter(
        x=plot_x, y=_smooth(spec, y).astype(np.float32), line={"width": 1.6, "color": style.color},
        # A run that logged a metric a few times (once per epoch, or once at the end) must not be an invisible line.
        mode="lines+markers" if len(x) <= FEW_POINTS else "lines", marker={"size": 5, "color": style.color},
        name=style.legend, legendgroup=style.group, showlegend=style.group not in in_legend,
        meta=[name, escape(spec.metric), config],
        hovertemplate=(f"<b>%{{meta[0]}}</b><br>%{{meta[1]}}{smoothed}: %{{y:.4g}} at {x_format}"
                       "<br>%{meta[2]}<extra></extra>")))
    in_legend.add(style.group)


def _best_marker(spec: ChartSpec, x, y: float, style: _Style, name: str) -> dict:
    return _scatter(x=[x.item() if hasattr(x, "item") else x], y=[float(y)], mode="markers",
                    marker={"symbol": "star", "size": 12, "color": style.color, "line": {"width": 1, "color": "white"}},
                    showlegend=False, legendgroup=style.group, meta=[name, f"{float(y):.6g} at {_x_text(spec, x)}"],
                    hovertemplate="<b>%{meta[0]}</b><br>best: %{meta[1]}<extra></extra>")


def _scatter(**trace) -> dict:
    return {"type": "scatter", **trace}


def _config_text(config: dict) -> str:
    """key=value pairs packed into short lines for a hover box; each piece escaped, the line breaks are ours."""
    items = []
    for key, value in config.items():
        text = str(value)
        if len(text) > CONFIG_VALUE:
            text = text[: CONFIG_VALUE - 1] + "…"  # cut before escaping: never split an entity
        items.append(f"{key}={text}")
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= CONFIG_LINE:
            lines[-1] = f"{lines[-1]}, {item}"
        else:
            lines.append(item)
    return "<br>".join(escape(line) for line in lines)


# ---- colours, references, layout ---------------------------------------------------------------------------------


_NOT_SET = object()


def _styles(spec: ChartSpec, runs: list) -> dict[str, _Style]:
    """run id -> style: a colour per run, or per value of the config key spec.color_by."""
    if spec.color_by == "run":
        return {run.id: _Style(COLORS[i % len(COLORS)], f"run:{run.id}", escape(run.name))
                for i, run in enumerate(runs)}
    key = spec.color_by
    values = {}  # a text form per distinct value -> the value; text, so lists and dicts count too
    for run in runs:
        value = (run.config or {}).get(key, _NOT_SET)
        values.setdefault(_value_id(value), value)
    present = [v for v in values.values() if v is not _NOT_SET]
    try:
        present = sorted(present)  # lr 0.0001 < 0.001 < 0.01: neighbours in the legend
    except TypeError:
        pass  # values that do not compare (text and numbers): first-seen order
    ordered = present + ([_NOT_SET] if _value_id(_NOT_SET) in values else [])
    palette = {_value_id(v): COLORS[i % len(COLORS)] for i, v in enumerate(ordered)}
    styles = {}
    for run in runs:
        value = (run.config or {}).get(key, _NOT_SET)
        label = f"{key}=(not set)" if value is _NOT_SET else f"{key}={value}"
        styles[run.id] = _Style(palette[_value_id(value)], f"{key}:{_value_id(value)}", escape(label))
    return styles


def _value_id(value) -> str:
    return "\0not set" if value is _NOT_SET else f"{type(value).__name__}:{value!r}"


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i: i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _reference_lines(spec: ChartSpec, references: dict) -> list[dict]:
    """Dashed horizontal lines with their label (the prior, a human baseline): what a curve has to beat."""
    shapes = []
    for i, (label, value) in enumerate(merge_references(references).items()):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"reference line {label!r} needs a number, not {value!r}") from None
        if not np.isfinite(value) or (spec.log_y and value <= 0):
            continue  # no place on the axis
        # A shape's y is in data units even on a log axis (an annotation's is not), so the label rides on it.
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": value, "y1": value,
                       "line": {"dash": "dash", "width": 1, "color": "#888"},
                       # alternate ends: the prior and the zero-input twin often sit at the same height
                       "label": {"text": escape(f"{label} = {value:.4g}"), "textposition": LABEL_ENDS[i % 3],
                                 "yanchor": "bottom", "font": {"size": 11, "color": "#555"}}})
    return shapes


@functools.cache
def _template() -> dict:
    return pio.templates["plotly_white"].to_plotly_json()


def _layout(spec: ChartSpec, showlegend: bool) -> dict:
    return {
        "title": {"text": escape(spec.metric), "font": {"size": 15}, "x": 0.01, "xanchor": "left"},
        "height": HEIGHT, "template": _template(), "margin": {"l": 10, "r": 10, "t": 45, "b": 10},
        "hovermode": "closest",
        "showlegend": showlegend,  # even for one run or one value: the legend says which it is
        # Zoom and legend clicks survive a rerun with the same metric; an axis forgets its zoom when what it shows
        # changes (step -> wall time, linear -> log), where the old range would mean something else.
        "uirevision": spec.metric,
        "xaxis": {"title": {"text": AXIS_TITLES[spec.x]}, "automargin": True,
                  "uirevision": f"{spec.metric}|{spec.x}|{spec.log_x}", **({"type": "log"} if spec.log_x else {})},
        "yaxis": {"automargin": True, "uirevision": f"{spec.metric}|{spec.log_y}",
                  **({"type": "log"} if spec.log_y else {})},
    }


def _empty(spec: ChartSpec) -> go.Figure:
    layout = _layout(spec, showlegend=False)
    layout["xaxis"]["visible"] = layout["yaxis"]["visible"] = False
    layout["annotations"] = [{"text": f"no points for {escape(spec.metric)} in the selected runs", "showarrow": False,
                              "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}]
    return go.Figure(layout=layout)
