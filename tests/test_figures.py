"""Figure builders: the right traces for each shape of data, and text from the data never read as HTML."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipe_core import figures as F
from recipe_core.data import distributions
from recipe_core.data import profile as P
from recipe_core.data.db import DatasetDB
from recipe_core.data.records import Column, DatasetRecord
from recipe_core.data.snapshot import ROW_ID

EVIL = '<script>alert("x")</script><b>bold</b><a href="javascript:alert(1)">x</a> & %{x}'


def strings(obj):
    """Every string inside a figure's JSON-able dict."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        for v in obj.ravel():
            yield from strings(v)


def assert_no_markup_from_data(fig: go.Figure):
    text = list(strings(fig.to_plotly_json()))
    assert not any("<script" in s or "<b>" in s or "<a " in s for s in text)
    assert any("&lt;script&gt;" in s for s in text)  # the text is still there, escaped


def bins(n=10, start=0.0, width=1.0, **attrs):
    df = pd.DataFrame({"bin_start": start + width * np.arange(n), "bin_end": start + width * np.arange(1, n + 1),
                       "count": np.arange(n) + 1})
    df.attrs.update(attrs)
    return df


def test_escape():
    assert F.escape("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert F.escape(3) == "3"
    assert F.escape("plain") == "plain"
    # Cutting a long label happens before escaping, so no entity is cut in half.
    assert F._short("<" * 30, 5) == "&lt;&lt;&lt;&lt;…"


def test_histogram_figure_numeric_bins():
    fig = F.histogram_figure(bins(n=12, n_missing=3, n_nan=1), "x", "numeric")
    (bar,) = fig.data
    assert isinstance(bar, go.Bar) and len(bar.x) == 12 and list(bar.y) == list(range(1, 13))
    assert list(bar.width) == [1.0] * 12 and bar.x[0] == 0.5  # centred, as wide as the bin
    assert fig.layout.height == F.GRID_HEIGHT and fig.layout.margin.t == 30
    assert "3 missing, 1 NaN" in fig.layout.title.text


def test_histogram_figure_constant_and_dates_and_text():
    const = pd.DataFrame({"bin_start": [2.0], "bin_end": [2.0], "count": [9]})
    assert F.histogram_figure(const, "c", "numeric").data[0].width[0] > 0  # a zero-width bin is still visible
    days = pd.DataFrame({"bin_start": pd.to_datetime(["2020-01-01", "2020-01-02"]),
                         "bin_end": pd.to_datetime(["2020-01-02", "2020-01-03"]), "count": [4, 5]})
    bar = F.histogram_figure(days, "when", "datetime").data[0]
    assert list(bar.width) == [86_400_000.0] * 2
    text = F.histogram_figure(bins(), "note", "text")
    assert text.layout.xaxis.title.text == "length (characters)"


def test_histogram_figure_categories():
    df = pd.DataFrame({"value": ["a", "b", 7, "(other)"], "count": [5, 3, 2, 1]})
    fig = F.histogram_figure(df, "c", "categorical")
    (bar,) = fig.data
    assert list(bar.x) == ["a", "b", "7", "(other)"] and list(bar.y) == [5, 3, 2, 1]
    assert fig.layout.xaxis.type == "category"  # "7" stays a category, not a number


def test_empty_inputs_give_a_placeholder():
    empty_bins = pd.DataFrame({"bin_start": [], "bin_end": [], "count": []})
    no_rel = pd.DataFrame(columns=["class", "value", "count"])
    for fig in (F.histogram_figure(empty_bins, "x", "numeric"), F.target_distribution_figure(empty_bins, "y"),
                F.class_balance_figure(pd.DataFrame({"value": [], "count": []}), "y"),
                F.target_relation_figure(no_rel, "a", "b", "classification")):
        assert len(fig.data) == 0 and fig.layout.annotations[0].text == "no values to show"


def test_class_balance_figure():
    counts = pd.DataFrame({"value": ["cat", "dog", "eel"], "count": [50, 30, 20]})
    fig = F.class_balance_figure(counts, "animal")
    (bar,) = fig.data
    assert not fig.layout.showlegend
    assert bar.orientation == "h" and list(bar.x) == [20, 30, 50] and list(bar.y) == ["eel", "dog", "cat"]
    assert list(bar.text) == ["20.0%", "30.0%", "50.0%"]


def test_class_balance_of_a_numeric_target_histogram():
    # An integer 0/1/2 target's histogram has one bin per value: each becomes a class, labelled by its value.
    hist = pd.DataFrame({"bin_start": [-0.5, 0.5, 1.5], "bin_end": [0.5, 1.5, 2.5], "count": [10, 70, 20]})
    (bar,) = F.class_balance_figure(hist, "digit").data
    assert dict(zip(bar.y, bar.x)) == {"0": 10, "1": 70, "2": 20} and bar.y[-1] == "1"  # largest on top


def test_target_distribution_figure():
    fig = F.target_distribution_figure(bins(n=30), "price")
    assert len(fig.data) == 1 and len(fig.data[0].x) == 30 and fig.layout.height == F.HEIGHT


def test_target_relation_figures():
    hist = pd.concat([bins(n=5).assign(**{"class": c}) for c in ("a", "b")])[["class", "bin_start", "bin_end",
                                                                               "count"]]
    fig = F.target_relation_figure(hist, "size", "y", "classification")
    assert [t.name for t in fig.data] == ["a", "b"] and fig.layout.barmode == "overlay"
    assert sum(fig.data[0].y) == pytest.approx(1.0)  # each class as a share of its own rows

    many = pd.concat([bins(n=5).assign(**{"class": c}) for c in "abcde"])
    fig = F.target_relation_figure(many, "size", "y", "classification")
    assert [t.type for t in fig.data] == ["scatter"] * 5 and fig.data[0].line.shape == "hvh"  # steps, not mud

    bars = pd.DataFrame({"class": ["a", "a", "b", "b"], "value": ["red", "blue"] * 2, "count": [3, 1, 2, 2]})
    fig = F.target_relation_figure(bars, "color", "y", "classification")
    assert [t.name for t in fig.data] == ["a", "b"] and fig.layout.barmode == "group"
    assert list(fig.data[0].y) == [0.75, 0.25]

    binned = bins(n=4).assign(mean=[1.0, 2, 3, 4], q25=[0.5, 1.5, 2.5, 3.5], q75=[1.5, 2.5, 3.5, 4.5])
    fig = F.target_relation_figure(binned, "x", "price", "regression")
    assert [t.type for t in fig.data] == ["scatter"] * 3 and list(fig.data[2].y) == [1, 2, 3, 4]
    assert fig.data[1].fill == "tonexty"

    means = pd.DataFrame({"value": ["lo", "hi"], "count": [5, 6], "mean": [1.0, 3.0], "q25": [0.5, 2.0],
                          "q75": [1.5, 4.0]})
    fig = F.target_relation_figure(means, "g", "price", "regression")
    (bar,) = fig.data
    assert list(bar.y) == [1.0, 3.0] and list(bar.error_y.array) == [0.5, 1.0]


def test_missing_figure():
    table = pd.DataFrame({"column": ["a", "b", "c"], "missing_share": [0.0, 0.6, 0.1]})
    (bar,) = F.missing_figure(table).data
    assert list(bar.y) == ["c", "b"] and list(bar.x) == [0.1, 0.6]
    none = F.missing_figure(table.assign(missing_share=0.0))
    assert len(none.data) == 0


def test_user_text_is_escaped_everywhere():
    hist = bins()
    assert_no_markup_from_data(F.histogram_figure(hist, EVIL, "numeric"))
    cats = pd.DataFrame({"value": [EVIL, "ok"], "count": [2, 1]})
    assert_no_markup_from_data(F.histogram_figure(cats, "c", "categorical"))
    assert_no_markup_from_data(F.class_balance_figure(cats, "t"))
    assert_no_markup_from_data(F.target_distribution_figure(hist, EVIL))
    rel = pd.DataFrame({"class": [EVIL, "b"], "value": [EVIL, EVIL], "count": [1, 2]})
    fig = F.target_relation_figure(rel, EVIL, EVIL, "classification")
    assert_no_markup_from_data(fig)
    assert all("%{x}" not in (t.hovertemplate or "") for t in fig.data)  # data never becomes a template
    means = pd.DataFrame({"value": [EVIL], "count": [1], "mean": [1.0], "q25": [0.0], "q75": [2.0]})
    assert_no_markup_from_data(F.target_relation_figure(means, "g", EVIL, "regression"))
    assert_no_markup_from_data(F.missing_figure(pd.DataFrame({"column": [EVIL], "missing_share": [0.5]})))


def test_builders_draw_what_profiles_return(settings):
    # The two modules agree on column names: real outputs of data/ go straight into the builders.
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["a", EVIL], n)
    table = pa.table({ROW_ID: np.arange(n), "x": rng.normal(size=n), "c": rng.choice(["u", "v"], n), "y": y,
                      "r": rng.normal(size=n)})
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, settings.snapshots_dir / "f.parquet")
    cols = (Column("x", "DOUBLE", "numeric"), Column("c", "VARCHAR", "categorical"),
            Column("y", "VARCHAR", "categorical"), Column("r", "DOUBLE", "numeric"))
    db = DatasetDB(settings, DatasetRecord(id="f", name="f", source_name="f.csv", fmt="csv", n_rows=n, columns=cols,
                                           snapshot="f.parquet"))
    try:
        assert len(F.histogram_figure(distributions.histogram(db, "x"), "x", "numeric").data[0].x) == 30
        assert len(F.histogram_figure(distributions.histogram(db, "c"), "c", "categorical").data[0].x) == 2
        assert_no_markup_from_data(F.class_balance_figure(distributions.value_counts(db, "y"), "y"))
        for feature in ("x", "c"):
            fig = F.target_relation_figure(distributions.target_relation(db, feature, "y", "classification"), feature, "y",
                                           "classification")
            assert len(fig.data) == 2
            assert_no_markup_from_data(fig)
            assert len(F.target_relation_figure(distributions.target_relation(db, feature, "r", "regression"), feature, "r",
                                                "regression").data) >= 1
        assert len(F.missing_figure(P.profile_table(P.profile(db))).data) == 0
    finally:
        db.close()
