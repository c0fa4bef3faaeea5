"""Plotly figure builders: data in, go.Figure out (no Streamlit).

Plotly renders a subset of HTML in titles, tick labels, legends and hover text (<b>, <br>, <a href=...>), so every
string that comes from the data goes through escape() and shows exactly as typed.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from recipe_core.safetext import plotly_literal as escape  # the one escaper of plotly text (chart.py's too)

GRID_HEIGHT = 220  # one cell of the histogram grid
HEIGHT = 320  # a figure of its own
TICK_CHARS = 18  # longer category labels are cut on the axis (the hover shows them whole)
COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D",
          "#BAB0AC", "#79706E")
OTHER = "(other)"


def merge_references(references: dict) -> dict:
    """Reference lines that show the same value (to 4 significant digits) as one line with one label, "prior =
    input-independent": two labels at one height are drawn on top of each other. Values that are not numbers
    are passed through (the caller refuses them)."""
    merged: dict[str, list] = {}  # shown value -> [labels, value]
    for label, value in references.items():
        try:
            key = f"{float(value):.4g}"
        except (TypeError, ValueError):
            key = f"?{label}"
        merged.setdefault(key, [[], value])[0].append(str(label))
    return {" = ".join(labels): value for labels, value in merged.values()}


def rows_text(n: float) -> str:
    """A row count for an axis: 950, 1,234, 12.3k, 1.2M."""
    n = float(n)
    if abs(n) < 10_000:
        return f"{n:,.0f}"
    if abs(n) < 1_000_000:
        return f"{n / 1e3:.3g}k"
    return f"{n / 1e6:.3g}M"


def _short(text, n: int = TICK_CHARS) -> str:
    text = str(text)
    return escape(text if len(text) <= n else text[: n - 1] + "…")  # cut before escaping: never split an entity


def _layout(fig: go.Figure, title: str, height: int, compact: bool = False) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 13 if compact else 15}, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10} if compact else {"l": 10, "r": 10, "t": 45, "b": 10},
        showlegend=not compact and sum(1 for t in fig.data if t.showlegend is not False) > 1,
        bargap=0.05,
        template="plotly_white",
    )
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def _empty(title: str, height: int, compact: bool = False) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text="no values to show", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height, compact)


def _excluded(attrs: dict) -> str:
    """' · 3 missing, 2 NaN' for rows a histogram could not place."""
    parts = [f"{attrs[k]:,} {label}" for k, label in (("n_missing", "missing"), ("n_nan", "NaN"), ("n_inf", "inf"))
             if attrs.get(k)]
    return " · " + ", ".join(parts) if parts else ""


def _bin_bars(df: pd.DataFrame, **trace) -> go.Bar:
    """Bars drawn as a histogram: one per bin, as wide as the bin."""
    start, end = df["bin_start"], df["bin_end"]
    if pd.api.types.is_datetime64_any_dtype(start):
        width = (end - start).dt.total_seconds() * 1000  # date axes measure in milliseconds
        width = width.where(width > 0, 86_400_000)
        ranges = [f"{a} – {b}" for a, b in zip(start, end, strict=True)]
    else:
        width = (end - start).astype(float)
        width = width.where(width > 0, max(abs(float(start.iloc[0])) * 0.1, 1.0) if len(start) else 1.0)
        ranges = [f"{a:.4g} – {b:.4g}" for a, b in zip(start, end, strict=True)]
    return go.Bar(x=start + (end - start) / 2, y=df["count"], width=width, customdata=ranges,
                  hovertemplate="%{customdata}<br>%{y:,} rows<extra></extra>", **trace)


def _value_bars(df: pd.DataFrame, y, **trace) -> go.Bar:
    labels = [escape(v) for v in df["value"]]
    return go.Bar(x=labels, y=y, customdata=labels, hovertemplate="%{customdata}<br>%{y:,}<extra></extra>", **trace)


def _category_ticks(fig: go.Figure, values, axis: str = "x", n: int = TICK_CHARS) -> None:
    """Categories keyed by the whole values, labelled with cut ones: two long values that start alike stay two."""
    values = list(dict.fromkeys(str(v) for v in values))
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(type="category", tickmode="array", tickvals=[escape(v) for v in values],
           ticktext=[_short(v, n) for v in values])


def histogram_figure(hist_df: pd.DataFrame, column: str, kind: str) -> go.Figure:
    """A small histogram for the grid, from distributions.histogram(): bins ([bin_start, bin_end, count]) or
    counts per value ([value, count])."""
    title = escape(column) + _excluded(hist_df.attrs)
    if hist_df.empty:
        return _empty(title, GRID_HEIGHT, compact=True)
    fig = go.Figure()
    if "bin_start" in hist_df:
        fig.add_trace(_bin_bars(hist_df, marker_color=COLORS[0]))
        if kind == "text":
            fig.update_xaxes(title={"text": "length (characters)", "font": {"size": 11}})
    else:
        fig.add_trace(_value_bars(hist_df, hist_df["count"], marker_color=COLORS[0]))
        _category_ticks(fig, hist_df["value"])
    return _layout(fig, title, GRID_HEIGHT, compact=True)


def class_balance_figure(counts_df: pd.DataFrame, target: str) -> go.Figure:
    """Rows per class, from distributions.value_counts() ([value, count]), largest first, with each class's share.

    A histogram of a numeric target ([bin_start, bin_end, count]) is accepted too: each non-empty bin is a class
    (an integer target with few values has one bin per value, labelled by it)."""
    title = f"Class balance of {escape(target)}"
    if "bin_start" in counts_df:
        counts_df = _bins_as_classes(counts_df)
    if counts_df.empty:
        return _empty(title, HEIGHT)
    df = counts_df.iloc[::-1]  # most frequent first, and horizontal bars are drawn bottom-up
    total = counts_df["count"].sum() + counts_df.attrs.get("n_other", 0)
    labels = [escape(v) for v in df["value"]]
    shares = [f"{c / total:.1%}" for c in df["count"]]
    fig = go.Figure(go.Bar(x=df["count"], y=labels, orientation="h", text=shares, textposition="auto",
                           marker_color=COLORS[0], customdata=labels,
                           hovertemplate="%{customdata}<br>%{x:,} rows (%{text})<extra></extra>"))
    fig.update_yaxes(type="category", tickmode="array", tickvals=labels,
                     ticktext=[_short(v) for v in df["value"]])
    fig.update_xaxes(title="rows")
    return _layout(fig, title, min(80 + 28 * len(df), 700))


def _bins_as_classes(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["count"] > 0]
    mid = df["bin_start"] + (df["bin_end"] - df["bin_start"]) / 2
    edges = list(zip(df["bin_start"], df["bin_end"], mid, strict=True))
    whole = all(float(e) - float(s) == 1.0 and float(m).is_integer() for s, e, m in edges)
    labels = [f"{int(m)}" if whole else f"{s:.4g} – {e:.4g}" for s, e, m in edges]
    out = pd.DataFrame({"value": labels, "count": df["count"].to_numpy()})
    return out.sort_values("count", ascending=False, kind="stable")


def target_distribution_figure(hist_df: pd.DataFrame, target: str) -> go.Figure:
    """A regression target's histogram, from distributions.histogram()."""
    title = f"Distribution of {escape(target)}" + _excluded(hist_df.attrs)
    if hist_df.empty:
        return _empty(title, HEIGHT)
    fig = go.Figure(_bin_bars(hist_df, marker_color=COLORS[0]) if "bin_start" in hist_df
                    else _value_bars(hist_df, hist_df["count"], marker_color=COLORS[0]))
    if "value" in hist_df:
        _category_ticks(fig, hist_df["value"])
    fig.update_yaxes(title="rows")
    return _layout(fig, title, HEIGHT)


def target_relation_figure(rel_df: pd.DataFrame, feature: str, target: str, task: str) -> go.Figure:
    """One feature against the target, from distributions.target_relation():
    classification: the feature's distribution per class (overlaid histograms, or grouped bars per value), each
    class as a share of its own rows so that small classes stay visible;
    regression: the target's mean and quartile band per feature bin, or its mean per feature value."""
    title = f"{escape(feature)} against {escape(target)}"
    if rel_df.empty:
        return _empty(title, HEIGHT)
    fig = go.Figure()
    if "class" in rel_df:
        classes = list(dict.fromkeys(rel_df["class"]))
        for i, cls in enumerate(classes):
            part = rel_df[rel_df["class"] == cls]
            share = part["count"] / max(part["count"].sum(), 1)
            style = {"name": _short(cls, 30), "marker_color": COLORS[i % len(COLORS)], "legendgroup": str(i)}
            if "bin_start" in rel_df and len(classes) > 3:
                # Many classes: step outlines stay readable where overlaid bars turn to mud.
                bars = go.Scatter(x=part["bin_start"] + (part["bin_end"] - part["bin_start"]) / 2, y=share,
                                  mode="lines", line={"shape": "hvh", "width": 2, "color": style["marker_color"]},
                                  customdata=_bin_bars(part).customdata, **style)
            elif "bin_start" in rel_df:
                bars = _bin_bars(part.assign(count=share), opacity=0.55, **style)
            else:
                bars = _value_bars(part, share, **style)
            # Data never goes into a hovertemplate (it would read "%{...}" in it); the escaped name is fetched.
            bars.hovertemplate = "%{customdata}<br>%{y:.1%} of the class<extra>%{fullData.name}</extra>"
            fig.add_trace(bars)
        if "value" in rel_df:
            _category_ticks(fig, rel_df["value"])
        fig.update_layout(barmode="overlay" if "bin_start" in rel_df else "group",
                          legend_title_text=escape(target))
        fig.update_yaxes(title="share of class", tickformat=".1%", rangemode="tozero")
    elif "bin_start" in rel_df:
        x = rel_df["bin_start"] + (rel_df["bin_end"] - rel_df["bin_start"]) / 2
        fig.add_trace(go.Scatter(x=x, y=rel_df["q75"], mode="lines", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=rel_df["q25"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor="rgba(76,120,168,0.2)", name="middle 50%", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=rel_df["mean"], mode="lines+markers", name="mean",
                                 marker_color=COLORS[0], customdata=rel_df["count"],
                                 hovertemplate="%{x}<br>mean %{y:.4g}<br>%{customdata:,} rows<extra></extra>"))
        fig.update_yaxes(title=escape(target))
        fig.update_xaxes(title=escape(feature))
    else:
        err = {"type": "data", "symmetric": False, "array": rel_df["q75"] - rel_df["mean"],
               "arrayminus": rel_df["mean"] - rel_df["q25"]}
        bars = _value_bars(rel_df, rel_df["mean"], marker_color=COLORS[0], error_y=err, name="mean")
        bars.hovertemplate = "%{customdata}<br>mean %{y:.4g}<extra></extra>"
        fig.add_trace(bars)
        _category_ticks(fig, rel_df["value"])
        fig.update_yaxes(title=f"mean {escape(target)} (bars: middle 50%)")
    return _layout(fig, title, HEIGHT)


def missing_figure(table: pd.DataFrame, top: int = 40) -> go.Figure:
    """Share of missing values per column, from profile.profile_table() ([column, missing_share, ...]); only
    columns with missing values, most first."""
    df = table[table["missing_share"] > 0].sort_values("missing_share", ascending=False).head(top)
    title = "Missing values per column"
    if df.empty:
        return _empty(title + ": none", 120)
    df = df.iloc[::-1]
    labels = [escape(c) for c in df["column"]]
    fig = go.Figure(go.Bar(x=df["missing_share"], y=labels, orientation="h", marker_color=COLORS[3],
                           customdata=labels, hovertemplate="%{customdata}<br>%{x:.1%} missing<extra></extra>"))
    fig.update_yaxes(type="category", tickmode="array", tickvals=labels, ticktext=[_short(c, 30) for c in df["column"]])
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return _layout(fig, title, min(80 + 22 * len(df), 900))


# -- training ------------------------------------------------------------------------------------------
CURVE_STYLE = {"train_loss": ("train loss", COLORS[0], "solid"), "val_loss": ("validation loss", COLORS[1], "solid"),
               "twin_train_loss": ("zero-input twin: train", COLORS[0], "dot"),
               "twin_val_loss": ("zero-input twin: validation", COLORS[1], "dot")}


def loss_curves_figure(history: pd.DataFrame, title: str = "Loss", log_y: bool = False) -> go.Figure:
    """history: columns key, step, value (one run). Train and validation loss, the zero-input twin dotted."""
    fig = go.Figure()
    for key, (name, color, dash) in CURVE_STYLE.items():
        part = history[history["key"] == key]
        if len(part):
            fig.add_scatter(x=part["step"], y=part["value"], name=name,
                            mode="lines+markers" if len(part) < 3 else "lines",
                            line={"color": color, "dash": dash, "width": 1.5 if dash == "dot" else 2})
    if not fig.data:
        return _empty(title, HEIGHT)
    fig.update_xaxes(title="step (optimizer steps; trees for gbm)")
    fig.update_yaxes(title="loss", type="log" if log_y else "linear")
    return _layout(fig, title, HEIGHT)


def leaderboard_figure(board: pd.DataFrame, references: dict[str, float], metric: str = "val_loss") -> go.Figure:
    """board: columns run, model, and the metric; one dot per run, the reference baselines as horizontal lines."""
    title = f"Leaderboard: {escape(metric)}" + (" (lower is better)" if metric.endswith(("loss", "mse", "mae")) else "")
    if board.empty:
        return _empty(title, HEIGHT)
    fig = go.Figure()
    for i, (model, part) in enumerate(board.groupby("model", sort=False)):
        fig.add_scatter(x=[escape(r) for r in part["run"]], y=part[metric], mode="markers", name=escape(model),
                        marker={"size": 11, "color": COLORS[i % len(COLORS)]})
    for i, (name, value) in enumerate(merge_references(references).items()):
        fig.add_hline(y=value, line={"dash": "dash", "color": COLORS[(i + 3) % len(COLORS)], "width": 1.5},
                      annotation_text=f"{escape(name)} {value:.4g}",  # near values: labels at alternate ends
                      annotation_position=("top left", "top right", "bottom left")[i % 3])
    fig.update_xaxes(title="run", type="category")
    fig.update_yaxes(title=escape(metric))
    return _layout(fig, title, HEIGHT)


def confusion_figure(matrix: list[list[int]], classes: list[str]) -> go.Figure:
    labels = [escape(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues", showscale=False,
                               text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} examples<extra></extra>"))
    _category_ticks(fig, classes, "x")
    _category_ticks(fig, classes, "y")
    fig.update_xaxes(title="predicted")
    fig.update_yaxes(title="true", autorange="reversed")
    return _layout(fig, "Confusion matrix (validation split)", max(HEIGHT, 40 + 28 * len(classes)))


def predictions_figure(labels: list, predictions: list, classes: list[str], title: str) -> go.Figure:
    """Each example's label against the model's prediction: probabilities per class (heat) or values (dots)."""
    examples = [str(i) for i in range(len(labels))]
    if classes:
        probs = [[round(float(p), 3) for p in row] for row in predictions]
        fig = go.Figure(go.Heatmap(z=probs, x=[escape(c) for c in classes], y=examples, zmin=0, zmax=1,
                                   colorscale="Greens", showscale=False, text=probs, texttemplate="%{text:.2f}",
                                   hovertemplate="example %{y}<br>class %{x}<br>p=%{z:.3f}<extra></extra>"))
        truth = [classes.index(str(label)) if str(label) in classes else None for label in labels]
        fig.add_scatter(x=[escape(classes[t]) if t is not None else None for t in truth], y=examples, mode="markers",
                        name="label", marker={"symbol": "square-open", "size": 18, "color": COLORS[3]})
        _category_ticks(fig, classes)
        fig.update_xaxes(title="class (the open square is the label)")
        fig.update_yaxes(title="example", type="category", autorange="reversed")
        return _layout(fig, title, max(HEIGHT, 40 + 22 * len(labels)))
    fig = go.Figure()
    fig.add_scatter(x=examples, y=labels, mode="markers", name="label",
                    marker={"symbol": "square-open", "size": 12, "color": COLORS[3]})
    fig.add_scatter(x=examples, y=predictions, mode="markers", name="prediction",
                    marker={"size": 9, "color": COLORS[0]})
    fig.update_xaxes(title="example", type="category")
    fig.update_yaxes(title="target")
    return _layout(fig, title, HEIGHT)


def capacity_figure(widths: list[int], losses: list[float]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[str(w) for w in widths], y=losses, mode="lines+markers",
                               line={"color": COLORS[0]}))
    fig.update_xaxes(title="hidden width", type="category")
    fig.update_yaxes(title="training loss after the same steps")
    return _layout(fig, "Capacity ladder: training loss must not rise", HEIGHT)


# -- labelling -------------------------------------------------------------------------------------------------
def pixel_figure(values: list[list[float]], title: str = "") -> go.Figure:
    """An item whose columns are pixels, drawn as the image a person judges (dark = high)."""
    fig = go.Figure(go.Heatmap(z=values, colorscale="Greys", showscale=False,
                               hovertemplate="row %{y}, col %{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", visible=False, scaleanchor="x")
    fig.update_xaxes(visible=False)
    fig = _layout(fig, title, 300, compact=True)
    fig.update_layout(width=300)
    return fig


def features_used_figure(used: pd.DataFrame) -> go.Figure:
    title = "What people say they used"
    if used.empty:
        return _empty(title, HEIGHT)
    top = used.head(30).iloc[::-1]
    fig = go.Figure(go.Bar(x=top["items"], y=[escape(f) for f in top["feature"]], orientation="h",
                           marker_color=COLORS[0], customdata=top["annotators"],
                           hovertemplate="%{y}: %{x} labels, %{customdata} annotators<extra></extra>"))
    _category_ticks(fig, top["feature"], "y", 30)
    fig.update_xaxes(title="labels that named it")
    return _layout(fig, title, max(HEIGHT, 40 + 18 * len(top)))


def human_vs_models_figure(scores: pd.DataFrame, metric: str) -> go.Figure:
    """Each annotator and each model run on the same items, with the 95% interval."""
    title = f"Humans and models on the same items: {escape(metric)}"
    if scores.empty:
        return _empty(title, HEIGHT)
    colors = [COLORS[3] if k == "human" else COLORS[0] for k in scores["kind"]]
    fig = go.Figure(go.Bar(
        x=[escape(w) for w in scores["who"]], y=scores[metric], marker_color=colors,
        error_y={"type": "data", "symmetric": False, "array": (scores["ci_high"] - scores[metric]).tolist(),
                 "arrayminus": (scores[metric] - scores["ci_low"]).tolist()},
        customdata=scores["n_items"], hovertemplate="%{x}: %{y:.4g} on %{customdata} items<extra></extra>"))
    fig.update_xaxes(type="category")
    fig.update_yaxes(title=escape(metric))
    return _layout(fig, title, HEIGHT)


def learning_curve_figure(summary: pd.DataFrame, metric: str = "val_loss") -> go.Figure:
    """The metric against training rows: the mean over seeds, and a band from the best to the worst seed."""
    title = f"{escape(metric)} against training rows (mean over seeds, band: min to max)"
    if summary.empty:
        return _empty(title, HEIGHT)
    x = summary["n_train"].astype(float)
    fig = go.Figure([
        go.Scatter(x=x, y=summary["max"], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"),
        go.Scatter(x=x, y=summary["min"], mode="lines", line={"width": 0}, fill="tonexty",
                   fillcolor="rgba(76,120,168,0.2)", name="min to max over seeds", hoverinfo="skip"),
        go.Scatter(x=x, y=summary["mean"], mode="lines+markers", line={"color": COLORS[0]}, name="mean",
                   customdata=[f"{f:.0%}" for f in summary["fraction"]],
                   hovertemplate="%{customdata} of the training rows (%{x:,})<br>mean %{y:.4g}<extra></extra>"),
    ])
    # ticks at the row counts trained on: a log axis of its own labels 3 4 5 ... 9 100 2 between them
    counts = sorted({float(n) for n in x if pd.notna(n)})
    fig.update_xaxes(title="training rows", type="log", tickvals=counts, ticktext=[rows_text(n) for n in counts])
    fig.update_yaxes(title=escape(metric))
    return _layout(fig, title, HEIGHT)


def importance_figure(importance: dict[str, float]) -> go.Figure:
    """How much of the validation loss's variation each setting explains, largest first."""
    title = "Which settings matter (fANOVA importance of the validation loss)"
    if not importance:
        return _empty(title, HEIGHT)
    names = list(importance)[::-1]
    fig = go.Figure(go.Bar(x=[importance[n] for n in names], y=[escape(n) for n in names], orientation="h",
                           marker_color=COLORS[0], hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
    fig.update_xaxes(title="share of the variation", range=[0, 1])
    return _layout(fig, title, max(HEIGHT, 60 + 30 * len(names)))


def parallel_coordinates_figure(study) -> go.Figure:
    """Optuna's parallel coordinates of a study's trials: each setting an axis, each trial a line to its loss."""
    from optuna import visualization  # here, not at the top: the pages that draw no study load no Optuna

    return visualization.plot_parallel_coordinate(study)


def slice_figure(study) -> go.Figure:
    """Optuna's slice plot: the validation loss of every trial against each setting."""
    from optuna import visualization

    return visualization.plot_slice(study)
