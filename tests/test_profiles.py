"""Profiles, warnings, histograms and target summaries, checked against pandas/numpy on the same small frames."""
import json
import math
import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from snapshots import kinds_of, warned

from recipe_core.data import distributions, sizing
from recipe_core.data import profile as P
from recipe_core.data.target import task_of
from recipe_core.errors import BadInput, NotFound


def mixed_frame(n=400, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 3, n)
    x_list = [None if i % 10 == 3 else float(v) for i, v in enumerate(x)]
    # Category counts all differ, so the top values have one right order.
    cities = np.array(sum(([c] * k for c, k in zip("ABCDEF", (120, 90, 70, 50, 40, 30))), []))
    rng.shuffle(cities)
    return {
        "x": x_list,
        "k": rng.integers(0, 50, n).tolist(),
        "city": cities.tolist(),
        "note": [None if i % 7 == 0 else f"note {i} " + "word " * (i % 5) for i in range(n)],
        "flag": [i % 8 < 5 for i in range(n)],
        "when": [datetime(2021, 1, 1) + timedelta(hours=int(h)) for h in rng.integers(0, 5000, n)],
    }


# -- the numbers, against pandas --------------------------------------------------------------------------

@pytest.mark.parametrize("long_max_rows", [sizing.LONG_MAX_ROWS, 10])  # unpivoted path, and the wide-query path
def test_profile_numbers_match_pandas(make, monkeypatch, long_max_rows):
    monkeypatch.setattr(sizing, "LONG_MAX_ROWS", long_max_rows)
    data = mixed_frame()
    df = pd.DataFrame(data)
    prof = P.profile(make(data))
    assert prof.n_rows == len(df) and not prof.approximate
    assert [c.name for c in prof.columns] == list(data)

    for name in ("x", "k"):
        p, s = prof.column(name), df[name].astype(float)
        assert p.kind == "numeric"
        assert p.n == s.count() and p.n_missing == s.isna().sum() and p.n_distinct == s.nunique()
        assert p.min == pytest.approx(s.min()) and p.max == pytest.approx(s.max())
        assert p.mean == pytest.approx(s.mean(), rel=1e-9) and p.std == pytest.approx(s.std(ddof=1), rel=1e-9)
        for key, q in (("p05", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95)):
            assert p.quantiles[key] == pytest.approx(s.quantile(q), rel=1e-9)
    assert isinstance(prof.column("k").min, int)

    city = prof.column("city")
    assert city.kind == "categorical" and city.n_distinct == 6 and city.quantiles == {}
    assert city.top_values == list(df["city"].value_counts().head(5).items())

    note = prof.column("note")
    assert note.kind == "text" and note.n_missing == df["note"].isna().sum()
    assert note.mean_length == pytest.approx(df["note"].dropna().str.len().mean())
    assert note.n_distinct == df["note"].nunique()

    flag = prof.column("flag")
    assert flag.kind == "boolean" and flag.mean == pytest.approx(df["flag"].mean())
    assert flag.top_values == [(True, int(df["flag"].sum())), (False, int((~df["flag"]).sum()))]

    when = prof.column("when")
    assert when.kind == "datetime" and when.min == df["when"].min() and when.max == df["when"].max()
    # A clean frame raises nothing but the count of its missing values (x and note have gaps on purpose).
    (w,) = prof.warnings
    n_x, n_note = int(df["x"].isna().sum()), int(df["note"].isna().sum())
    assert w.kind == "missing_values" and w.value == n_x + n_note
    assert w.message == f"{n_x + n_note} missing values in 2 columns: 'note' {n_note}, 'x' {n_x}"


def test_profile_sketches_on_large_data_stay_close(make, monkeypatch):
    # Above EXACT_MAX_ROWS distinct counts and quantiles come from sketches: close, not exact.
    monkeypatch.setattr(sizing, "EXACT_MAX_ROWS", 1000)
    monkeypatch.setattr(sizing, "LONG_MAX_ROWS", 1000)
    rng = np.random.default_rng(1)
    n = 20_000
    data = {"u": rng.uniform(0, 100, n), "code": rng.integers(0, 3000, n), "id": np.arange(n)}
    prof = P.profile(make(data))
    assert prof.approximate
    u, code = prof.column("u"), prof.column("code")
    assert u.n_distinct == pytest.approx(n, rel=0.05)
    assert code.n_distinct == pytest.approx(len(np.unique(data["code"])), rel=0.05)
    for key, q in (("p05", 0.05), ("p50", 0.5), ("p95", 0.95)):
        assert u.quantiles[key] == pytest.approx(np.quantile(data["u"], q), abs=2.0)  # 2% of the range
    assert u.mean == pytest.approx(data["u"].mean()) and u.std == pytest.approx(data["u"].std(ddof=1))
    assert warned(prof, "id_like", "id") and not warned(prof, "id_like", "u")


def test_profile_batches_columns_into_few_queries(make):
    rng = np.random.default_rng(2)
    data = {f"c{i}": rng.normal(size=300) for i in range(300)}
    data["label"] = (rng.random(300) < 0.5).astype(int)
    db = make(data)
    sqls = []
    rows = db.rows
    db.rows = lambda sql, params=(): sqls.append(sql) or rows(sql, params)
    P.profile(db, target="label")
    assert len(sqls) <= 12, len(sqls)  # not one query per column


def test_five_thousand_columns(make):
    rng = np.random.default_rng(3)
    n = 60
    data = {f"f{i}": rng.normal(size=n) for i in range(4000)}
    data.update({f"s{i}": rng.choice(["a", "b", "c"], n).tolist() for i in range(999)})
    data["y"] = rng.integers(0, 2, n)
    start = time.perf_counter()
    prof = P.profile(make(data), target="y")
    assert len(prof.columns) == 5000 and prof.notes == []
    assert prof.column("f17").n == n and prof.column("s5").n_distinct <= 3
    assert time.perf_counter() - start < 50  # ~6-10 s on a quiet 2-core machine; a guard against hangs


# -- each warning fires on a broken case and stays quiet on a clean one ------------------------------------

def test_duplicates(make):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=200).tolist(), rng.integers(0, 5, 200).tolist()
    dup = {"a": a + a[:3], "b": b + b[:3], "s": ["x"] * 203}
    prof = P.profile(make(dup, name="dup"))
    (w,) = kinds_of(prof, "duplicates")
    assert w.value == 3 == pd.DataFrame(dup).duplicated().sum() and w.column is None
    assert "3 exact duplicate" in w.message
    clean = {"a": a, "b": b}
    assert not kinds_of(P.profile(make(clean, name="clean")), "duplicates")
    # Rows differing only in a NULL vs a value are not duplicates; two NULLs are equal, as in pandas.
    nulls = {"a": [1.0, None, None, 2.0], "b": [1, 1, 1, 1]}
    assert [w.value for w in kinds_of(P.profile(make(nulls, name="nulls")), "duplicates")] == [1]


def test_constant_and_missing(make):
    n = 100
    data = {
        "same": [7] * n,
        "mostly_gone": [None if i < 60 else float(i) for i in range(n)],
        "some_gone": [None if i < 40 else float(i) for i in range(n)],
        "fine": list(range(n)),
    }
    prof = P.profile(make(data))
    assert [w.column for w in kinds_of(prof, "constant")] == ["same"]
    (m,) = kinds_of(prof, "missing")
    assert m.column == "mostly_gone" and m.value == pytest.approx(0.6) and "60 of 100 rows" in m.message


def test_unique_counts_spread_far_apart_are_measurements_not_ids(make):
    # Found on plotly's Montreal election table: 58 districts, each vote count different from the others.
    rng = np.random.default_rng(8)
    votes = rng.choice(np.arange(500, 20_000), size=58, replace=False)
    data = {"votes": votes.tolist(), "district": rng.permutation(58).tolist(), "y": rng.normal(size=58).tolist()}
    prof = P.profile(make(data))
    assert [w.column for w in kinds_of(prof, "id_like")] == ["district"]


def test_id_like(make):
    rng = np.random.default_rng(5)
    n = 200
    data = {
        "user_id": rng.permutation(n).tolist(),  # unique integers
        "code": [f"C{i:05d}" for i in rng.permutation(n)],  # unique codes
        "measure": rng.normal(size=n).tolist(),  # unique floats: measurements, not IDs
        "review": [f"this is review number {i}" for i in range(n)],  # unique prose, not IDs
        "class_id": rng.integers(0, 3, n).tolist(),  # named like an ID, but 3 values
        "x": rng.normal(size=n).tolist(),
    }
    prof = P.profile(make(data))
    assert sorted(w.column for w in kinds_of(prof, "id_like")) == ["code", "user_id"]
    assert all(w.value == 1.0 for w in kinds_of(prof, "id_like"))


def test_nan_inf(make):
    vals = [1.0, 2.0, float("nan"), 3.0, float("inf"), float("nan"), -float("inf"), float("nan"), 4.0, None]
    prof = P.profile(make({"v": vals, "ok": [float(i) for i in range(10)]}))
    (w,) = kinds_of(prof, "nan_inf")
    p = prof.column("v")
    assert w.column == "v" and w.value == 5 and (p.n_nan, p.n_inf, p.n_missing) == (3, 2, 1)
    assert "3 NaN and 2 infinite" in w.message
    finite = [1.0, 2.0, 3.0, 4.0]  # statistics ignore NaN and inf
    assert (p.min, p.max) == (1.0, 4.0) and p.mean == pytest.approx(np.mean(finite))
    assert p.std == pytest.approx(np.std(finite, ddof=1))


def test_outliers(make):
    rng = np.random.default_rng(6)
    clean = rng.normal(0, 1, 500)
    dirty = np.concatenate([clean, [1e9, 1e9, -1e9]])
    prof = P.profile(make({"v": dirty}, name="dirty"))
    (w,) = kinds_of(prof, "outliers")
    assert w.column == "v" and w.value == 3
    q1, q3 = np.quantile(dirty, [0.25, 0.75])
    assert w.value == ((dirty < q1 - 3 * (q3 - q1)) | (dirty > q3 + 3 * (q3 - q1))).sum()
    assert not kinds_of(P.profile(make({"v": clean}, name="clean")), "outliers")
    # Mostly one value: the IQR is 0, yet a 0/1 column is not full of outliers.
    binary = make({"b": [0] * 450 + [1] * 50}, name="binary")
    assert not kinds_of(P.profile(binary), "outliers")


def test_imbalance(make):
    balanced = {"y": ["a"] * 100 + ["b"] * 100}
    assert not kinds_of(P.profile(make(balanced, name="bal"), target="y"), "imbalance")
    skewed = {"y": ["a"] * 400 + ["b"] * 20}
    (w,) = kinds_of(P.profile(make(skewed, name="skew"), target="y"), "imbalance")
    assert w.column == "y" and w.value == pytest.approx(20.0) and "ratio 20.0" in w.message
    regression = {"y": np.random.default_rng(0).normal(size=300).tolist()}
    prof = P.profile(make(regression, name="reg"), target="y")
    assert prof.task == "regression" and not kinds_of(prof, "imbalance")


def test_leakage_classification(make):
    rng = np.random.default_rng(7)
    n = 600
    label = np.array([0] * (n // 2) + [1] * (n // 2))  # the file is sorted by label
    flips = rng.random(n) < 0.01
    data = {
        "row_key": np.arange(n).tolist(),  # an ID that follows the sort order: ID-like, not leakage
        "leak": (label + rng.normal(0, 0.1, n)).tolist(),  # the target plus noise
        "leak_text": np.where(label ^ flips, "yes", "no").tolist(),  # a copy with 1% flipped
        "noise": rng.normal(size=n).tolist(),
        "weak": (label + rng.normal(0, 2, n)).tolist(),  # related, but far from predicting it alone
        "label": label.tolist(),
    }
    prof = P.profile(make(data), target="label")
    assert prof.task == "classification"
    leaks = {w.column: w for w in kinds_of(prof, "leakage")}
    assert set(leaks) == {"leak", "leak_text"}
    assert leaks["leak"].value > 0.99 and 0.95 <= leaks["leak_text"].value <= 1
    assert warned(prof, "id_like", "row_key") and not warned(prof, "leakage", "label")


def test_leakage_needs_more_than_the_majority_rate(make):
    # 97% majority: a useless feature scores ~97% accuracy, which is not leakage.
    rng = np.random.default_rng(8)
    n = 2000
    y = (rng.random(n) < 0.03).astype(int)
    prof = P.profile(make({"noise": rng.normal(size=n).tolist(), "cat": rng.choice(list("abc"), n).tolist(),
                           "y": y.tolist()}), target="y")
    assert kinds_of(prof, "imbalance") and not kinds_of(prof, "leakage")


def test_leakage_regression(make):
    rng = np.random.default_rng(9)
    n = 800
    y = rng.normal(50, 10, n)
    data = {"y": y.tolist(), "copy": (y * 2 + rng.normal(0, 0.2, n)).tolist(), "noise": rng.normal(size=n).tolist(),
            "half": (y + rng.normal(0, 10, n)).tolist()}
    prof = P.profile(make(data), target="y")
    assert prof.task == "regression"
    (w,) = kinds_of(prof, "leakage")
    assert w.column == "copy" and w.value >= 0.95 and "R²" in w.message


def test_leakage_in_a_wide_table_uses_the_same_verdicts(make, monkeypatch):
    # Both ways of binning (per-feature CASE on long tables, unpivoted on short ones) agree.
    rng = np.random.default_rng(10)
    n = 500
    label = rng.integers(0, 2, n)
    data = {"leak": (label * 3 + rng.normal(0, 0.1, n)).tolist(), "noise": rng.normal(size=n).tolist(),
            "label": label.tolist()}
    db = make(data)
    verdicts = []
    for long_rows in (sizing.LONG_MAX_ROWS, 10):
        monkeypatch.setattr(sizing, "LONG_MAX_ROWS", long_rows)
        verdicts.append([(w.column, round(w.value, 6)) for w in kinds_of(P.profile(db, target="label"), "leakage")])
    assert verdicts[0] == verdicts[1] and [c for c, _ in verdicts[0]] == ["leak"]


# -- names, kinds, errors -------------------------------------------------------------------------------

def test_awkward_column_names(make):
    # SQL keywords, quotes, unicode, and the aliases the module uses internally (y, k, v, f, tr, c0, f0, h).
    names = ["select", 'a "quoted" name', "naïve café ☕", "y", "k", "v", "f", "tr", "c0", "f0", "h", "n"]
    rng = np.random.default_rng(11)
    data = {name: rng.normal(size=100).tolist() for name in names}
    data["k"] = rng.choice(["p", "q"], 100).tolist()
    db = make(data)
    prof = P.profile(db, target="k")
    assert [c.name for c in prof.columns] == names
    assert prof.column('a "quoted" name').mean == pytest.approx(np.mean(data['a "quoted" name']))
    for name in names:
        assert distributions.histogram(db, name)["count"].sum() == 100
    assert distributions.target_relation(db, "select", "k", "classification")["count"].sum() == 100
    assert distributions.target_relation(db, "naïve café ☕", "y", "regression")["count"].sum() == 100


def test_kind_overrides(make):
    data = {"zip": [10115, 10117, 10115, 20095] * 25, "num_text": ["1.5", "2.5", "x", None] * 25}
    db = make(data, kinds={"zip": "categorical", "num_text": "numeric"})
    prof = P.profile(db)
    z, t = prof.column("zip"), prof.column("num_text")
    assert z.kind == "categorical" and z.quantiles == {} and z.top_values[0] == (10115, 50)
    # The view TRY_CASTs the text: "x" becomes missing.
    assert t.kind == "numeric" and t.dtype == "DOUBLE" and t.n == 50 and t.mean == pytest.approx(2.0)
    assert list(distributions.histogram(db, "zip")["value"]) == [10115, 10117, 20095]


def test_unknown_columns_and_bad_arguments(make):
    db = make({"a": [1, 2, 3]})
    with pytest.raises(NotFound, match="no column 'nope'"):
        P.profile(db, target="nope")
    with pytest.raises(NotFound):
        distributions.histogram(db, "nope")
    with pytest.raises(NotFound):
        P.profile(db).column("nope")
    with pytest.raises(BadInput):
        distributions.target_relation(db, "a", "a", "clustering")
    with pytest.raises(BadInput):
        distributions.histogram(db, "a", bins=0)


def test_task_of(make):
    rng = np.random.default_rng(12)
    db = make({"real": rng.normal(size=200).tolist(), "binary": rng.integers(0, 2, 200).tolist(),
               "twenty": (np.arange(200) % 20).tolist(), "twentyone": (np.arange(200) % 21).tolist(),
               "word": rng.choice(["a", "b"], 200).tolist()})
    assert task_of(db, "real") == "regression"
    assert task_of(db, "binary") == "classification"
    assert task_of(db, "twenty") == "classification"
    assert task_of(db, "twentyone") == "regression"
    assert task_of(db, "word") == "classification"


def test_profile_table_and_json(make):
    prof = P.profile(make(mixed_frame()))
    table = P.profile_table(prof)
    assert list(table["column"]) == [c.name for c in prof.columns] and "missing_share" in table
    doc = json.loads(json.dumps(P.as_json(prof)))
    assert doc["n_rows"] == 400 and doc["columns"][0]["name"] == "x"
    assert doc["columns"][5]["min"].startswith("2021-")


# -- histograms and value counts ---------------------------------------------------------------------------

def test_numeric_histogram_matches_numpy(make):
    rng = np.random.default_rng(13)
    v = rng.gamma(2.0, 3.0, 1000)
    h = distributions.histogram(make({"v": v.tolist()}), "v", bins=25)
    assert list(h.columns) == ["bin_start", "bin_end", "count"] and len(h) == 25
    counts, edges = np.histogram(v, bins=25, range=(v.min(), v.max()))
    assert np.allclose(h["bin_start"], edges[:-1]) and np.allclose(h["bin_end"], edges[1:])
    assert h["bin_end"].iloc[-1] == v.max() and h["bin_start"].iloc[0] == v.min()
    assert np.abs(h["count"].to_numpy() - counts).sum() <= 2  # a value on an edge may round either way
    assert h["count"].sum() == 1000


def test_histogram_special_cases(make):
    n = 40
    db = make({
        "const": [3.5] * n,
        "weird": [float("nan"), float("inf"), None] + [float(i) for i in range(n - 3)],
        "small_int": [i % 5 for i in range(n)],
        "flag": [i % 4 == 0 for i in range(n)],
        "when": [datetime(2020, 1, 1) + timedelta(days=i) for i in range(n)],
        "empty": pa.array([None] * n, type=pa.float64()),
    })
    const = distributions.histogram(db, "const")
    assert const.to_dict("list") == {"bin_start": [3.5], "bin_end": [3.5], "count": [n]}
    weird = distributions.histogram(db, "weird")
    assert weird["count"].sum() == n - 3 and weird.attrs == {"n_missing": 1, "n_nan": 1, "n_inf": 1}
    small = distributions.histogram(db, "small_int")  # one bin per whole value
    assert list(small["bin_start"]) == [-0.5, 0.5, 1.5, 2.5, 3.5] and list(small["count"]) == [8] * 5
    flag = distributions.histogram(db, "flag")
    assert flag.to_dict("list") == {"value": [False, True], "count": [30, 10]}
    when = distributions.histogram(db, "when", bins=4)
    assert when["count"].tolist() == [10, 10, 10, 10] and when["bin_start"].iloc[0] == pd.Timestamp("2020-01-01")
    assert distributions.histogram(db, "empty").empty


def test_categorical_histogram_top20_and_other(make):
    values = [f"v{i:02d}" for i in range(30) for _ in range(30 - i)]  # 30 values, counts 30..1
    db = make({"c": values, "t": [f"some text {'x' * (i % 13)}" for i in range(len(values))]},
              kinds={"c": "categorical", "t": "text"})
    h = distributions.histogram(db, "c")
    assert list(h.columns) == ["value", "count"] and len(h) == 21
    assert h["value"].iloc[0] == "v00" and h["count"].iloc[0] == 30
    assert h["value"].iloc[-1] == distributions.OTHER and h["count"].iloc[-1] == sum(range(1, 11))
    assert h["count"].sum() == len(values)
    lengths = pd.Series([len(s) for s in db_values(db, "t")])
    th = distributions.histogram(db, "t")
    assert th["count"].sum() == len(values) and th["bin_start"].min() == lengths.min() - 0.5
    for _, r in th.iterrows():
        assert r["count"] == ((lengths > r["bin_start"]) & (lengths < r["bin_end"])).sum()


def db_values(db, column):
    return [r[0] for r in db.rows(f'SELECT "{column}" FROM data')]


def test_value_counts_matches_pandas(make):
    rng = np.random.default_rng(14)
    values = rng.choice(list("abcdefgh"), 500, p=[0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.04, 0.01]).tolist()
    values[:7] = [None] * 7
    vc = distributions.value_counts(make({"c": values}), "c", k=5)
    expected = pd.Series(values, dtype=object).value_counts().sort_index().sort_values(ascending=False, kind="stable")
    assert list(vc.columns) == ["value", "count"]
    assert list(zip(vc["value"], vc["count"])) == list(expected.head(5).items())
    assert vc.attrs["n_missing"] == 7 and vc.attrs["n_other"] == expected.iloc[5:].sum()


# -- the target and the features against it -------------------------------------------------------------

def test_target_relation_classification(make):
    rng = np.random.default_rng(15)
    n = 300
    y = rng.choice(["cat", "dog", "eel"], n, p=[0.5, 0.3, 0.2])
    data = {"y": y.tolist(), "size": (rng.normal(size=n) + (y == "dog") * 3).tolist(),
            "color": rng.choice(["red", "green"], n).tolist()}
    db = make(data)
    df = pd.DataFrame(data)
    hist = distributions.target_relation(db, "size", "y", "classification")
    assert list(hist.columns) == ["class", "bin_start", "bin_end", "count"]
    assert hist.groupby("class")["count"].sum().to_dict() == df["y"].value_counts().to_dict()
    assert hist.groupby("class").size().nunique() == 1  # shared bins, zeros included
    bars = distributions.target_relation(db, "color", "y", "classification")
    assert list(bars.columns) == ["class", "value", "count"]
    expected = pd.crosstab(df["y"], df["color"]).stack().to_dict()
    assert {(r["class"], r["value"]): r["count"] for _, r in bars.iterrows()} == expected


def test_target_relation_many_classes_pool_into_other(make):
    y = [f"k{i}" for i in range(15) for _ in range(15 - i)]
    db = make({"y": y, "x": list(range(len(y)))}, kinds={"y": "categorical"})
    rel = distributions.target_relation(db, "x", "y", "classification")
    classes = rel.groupby("class", sort=False)["count"].sum()
    assert len(classes) == 11 and classes.index[-1] == distributions.OTHER and classes[distributions.OTHER] == sum(range(1, 6))


def test_target_relation_regression(make):
    rng = np.random.default_rng(16)
    n = 400
    x = rng.uniform(0, 10, n)
    g = rng.choice(["lo", "hi"], n)
    y = 2 * x + (g == "hi") * 5 + rng.normal(0, 0.5, n)
    db = make({"x": x.tolist(), "g": g.tolist(), "y": y.tolist()})
    rel = distributions.target_relation(db, "x", "y", "regression")
    assert list(rel.columns) == ["bin_start", "bin_end", "count", "mean", "q25", "q75"]
    assert rel["count"].sum() == n and len(rel) == 20 and rel["mean"].iloc[0] < rel["mean"].iloc[-1]
    for _, r in rel.iterrows():  # each bin's numbers, recomputed with pandas from its feature range
        inside = y[(x >= r["bin_start"]) & (x <= r["bin_end"])]
        assert r["count"] == len(inside) and r["mean"] == pytest.approx(inside.mean())
        assert r["q25"] == pytest.approx(np.quantile(inside, 0.25))
    cats = distributions.target_relation(db, "g", "y", "regression")
    assert list(cats.columns) == ["value", "count", "mean", "q25", "q75"]
    expected = pd.DataFrame({"g": g, "y": y}).groupby("g")["y"].mean()
    assert {r["value"]: r["mean"] for _, r in cats.iterrows()} == pytest.approx(expected.to_dict())
    with pytest.raises(BadInput, match="not numeric"):
        distributions.target_relation(db, "x", "g", "regression")


def test_target_relation_skips_missing_targets(make):
    db = make({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", None, "b", "a"]})
    rel = distributions.target_relation(db, "x", "y", "classification")
    assert rel["count"].sum() == 3 and set(rel["class"]) == {"a", "b"}
    assert not math.isnan(rel["bin_start"].iloc[0])


def test_ties_all_missing_and_empty(make):
    db = make({"c": ["b", "a", "c", "a", "b", "c", None], "gone": pa.array([None] * 7, type=pa.string())},
              kinds={"c": "categorical", "gone": "categorical"})
    assert P.profile(db).column("c").top_values == [("a", 2), ("b", 2), ("c", 2)]  # ties: by value
    vc = distributions.value_counts(db, "gone")
    assert vc.empty and vc.attrs == {"n_missing": 7, "n_other": 0, "n_distinct": 0}
    empty = make({"x": pa.array([], type=pa.float64()), "s": pa.array([], type=pa.string())}, name="empty")
    prof = P.profile(empty)
    assert prof.n_rows == 0 and [c.n for c in prof.columns] == [0, 0] and prof.warnings == []
    assert distributions.histogram(empty, "x").empty and distributions.value_counts(empty, "s").empty
