"""Distributions of one column, ready to draw: value counts, histograms, and the column against the target."""
from __future__ import annotations

import math

import pandas as pd

from recipe_core.data import sizing
from recipe_core.data.column_stats import QUANTILES_SQL
from recipe_core.data.columns import ColumnView, column_view
from recipe_core.data.db import DatasetDB
from recipe_core.errors import BadInput

OTHER = "(other)"


def value_counts(db: DatasetDB, column: str, k: int = 20) -> pd.DataFrame:
    """The k most frequent values: columns [value, count], most frequent first (ties by value).

    attrs: n_missing, n_other (non-missing rows outside the top k), n_distinct.
    """
    col = column_view(db, column)
    return _value_counts(db, col, k)


def _value_counts(db, col: ColumnView, k: int, where: str = "TRUE", params: list | tuple = ()) -> pd.DataFrame:
    # One scan: the NULL group rides along in the GROUP BY and window sums give the totals.
    rows = db.rows(
        f"SELECT v, n, total, missing, groups FROM (SELECT v, count(*) AS n, "
        f"sum(CASE WHEN v IS NOT NULL THEN count(*) END) OVER () AS total, "
        f"sum(CASE WHEN v IS NULL THEN count(*) END) OVER () AS missing, count(v) OVER () AS groups "
        f"FROM (SELECT {col.value} AS v FROM data WHERE {where}) GROUP BY v) "
        f"WHERE v IS NOT NULL ORDER BY n DESC, v LIMIT ?", list(params) + [int(k)])
    if rows:
        total, missing, groups = int(rows[0][2]), int(rows[0][3] or 0), int(rows[0][4])
    else:  # nothing but missing values
        total, groups = 0, 0
        missing = int(db.rows(f"SELECT count(*) FROM data WHERE {where}", list(params))[0][0])
    df = pd.DataFrame({"value": [r[0] for r in rows], "count": [int(r[1]) for r in rows]})
    df.attrs.update(n_missing=missing, n_other=total - int(df["count"].sum()), n_distinct=groups)
    return df


def histogram(db: DatasetDB, column: str, bins: int = 30) -> pd.DataFrame:
    """Distribution of one column, ready to draw.

    numeric and datetime: [bin_start, bin_end, count], equal-width bins between the finite min and max (integer
    columns with a small range get one bin per value); text: the same over string length;
    categorical and boolean: [value, count], the top 20 and one "(other)" row for the rest.
    attrs: n_missing (and n_nan, n_inf for numbers): rows not in any bin.
    """
    if bins < 1:
        raise BadInput(f"a histogram needs at least 1 bin, not {bins}")
    col = column_view(db, column)
    if col.treatment in ("categorical", "boolean"):
        df = _value_counts(db, col, 20)
        if df.attrs["n_other"] > 0:
            attrs = df.attrs
            df = pd.concat([df.astype({"value": object}),
                            pd.DataFrame({"value": [OTHER], "count": [attrs["n_other"]]})], ignore_index=True)
            df.attrs = attrs
        return df
    return _bins(db, col, bins)


def _range(db, col: ColumnView, where: str, params: list) -> dict:
    """Rows outside any bin (missing, NaN, inf) and the finite min and max of col.number."""
    x = col.number
    lo, hi, n_values, n_all = db.rows(f"SELECT min({x}), max({x}), count({x}), count(*) FROM data WHERE {where}",
                                      params)[0]
    # min and max alone are cheap (no filter to evaluate). A NaN makes max NaN and an inf shows up as min or max,
    # so finite ends mean every value is finite; only otherwise count NaN and inf and look again.
    if lo is None or (math.isfinite(lo) and math.isfinite(hi)):
        return {"n_missing": n_all - n_values, "n_nan": 0, "n_inf": 0, "lo": lo, "hi": hi, "n_finite": n_values}
    n_nan, n_inf, lo, hi = db.rows(
        f"SELECT count_if(isnan(v)), count_if(isinf(v)), min(v) FILTER (WHERE isfinite(v)), "
        f"max(v) FILTER (WHERE isfinite(v)) FROM (SELECT {col.number} AS v FROM data WHERE {where})", params)[0]
    return {"n_missing": n_all - n_values, "n_nan": n_nan, "n_inf": n_inf, "lo": lo, "hi": hi,
            "n_finite": n_values - n_nan - n_inf}


def _bin_counts(db, col: ColumnView, r: dict, grid: tuple, where: str = "TRUE", params: list = (), by: str = "NULL",
                by_params: list = ()) -> dict[tuple, int]:
    """Rows per (group, bin): the group is the SQL `by` (NULL: one group), the bin comes from grid."""
    start, width, last = grid
    fin = f" AND isfinite({col.number})" if r["n_nan"] or r["n_inf"] else ""  # no filter when all are finite: faster
    # Multiply by the inverse width and floor; the max lands on index last + 1 and is folded into the last bin.
    rows = db.rows(f"SELECT g, b, count(*) FROM (SELECT {by} AS g, "
                   f"CAST(floor(({col.number} - ?) * ?) AS INTEGER) AS b "
                   f"FROM data WHERE ({where}){fin} AND {col.number} IS NOT NULL) GROUP BY g, b",
                   list(by_params) + [start, 1.0 / width] + list(params))
    counts: dict[tuple, int] = {}
    for g, b, n in rows:
        key = (g, min(max(int(b), 0), last))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _bins(db, col: ColumnView, bins: int) -> pd.DataFrame:
    """The histogram of a numeric, datetime or text (length) column."""
    r = _range(db, col, "TRUE", [])
    if not r["n_finite"]:
        df = pd.DataFrame({"bin_start": pd.Series(dtype=float), "bin_end": pd.Series(dtype=float),
                           "count": pd.Series(dtype="int64")})
    else:
        grid = _bin_grid(r["lo"], r["hi"], bins, col.number_is_whole)
        counts = {(None, 0): r["n_finite"]} if r["lo"] == r["hi"] else _bin_counts(db, col, r, grid)
        starts, ends = _edges(r["lo"], r["hi"], grid)
        df = pd.DataFrame({"bin_start": starts, "bin_end": ends,
                           "count": [counts.get((None, i), 0) for i in range(len(starts))]})
    df.attrs.update({k: r[k] for k in ("n_missing", "n_nan", "n_inf")})
    return _as_datetimes(df, col)


def _bin_grid(lo: float, hi: float, bins: int, whole: bool) -> tuple[float, float, int]:
    """(first edge, width, index of the last bin)."""
    if lo == hi:
        return lo, 1.0, 0
    if whole and hi - lo + 1 <= bins:
        return lo - 0.5, 1.0, int(hi - lo)  # one bin per whole value, centred on it
    width = (hi - lo) / bins
    if not math.isfinite(width):  # a range wider than the largest double
        width = hi / bins - lo / bins
    return lo, width, bins - 1


def _edges(lo, hi, grid) -> tuple[list, list]:
    start, width, last = grid
    if lo == hi:
        return [lo], [hi]
    starts = [start + i * width for i in range(last + 1)]
    # Equal-width bins end exactly at the max (no rounding drift); whole-value bins end half a unit past it.
    ends = starts[1:] + [hi if start == lo else start + (last + 1) * width]
    return starts, ends


def _as_datetimes(df: pd.DataFrame, col: ColumnView) -> pd.DataFrame:
    if col.treatment == "datetime":
        for k in ("bin_start", "bin_end"):
            df[k] = pd.to_datetime(df[k], unit="us")
    return df


def target_relation(db: DatasetDB, feature: str, target: str, task: str) -> pd.DataFrame:
    """What it takes to draw one feature against the target, computed in DuckDB; small.

    Labels (class, value) are text; the 10 most frequent classes and 20 most frequent values are kept, the rest
    pooled as "(other)". Rows with a missing target (or a non-finite one, for regression) are left out.
    classification:
      numeric, datetime or text (length) feature: [class, bin_start, bin_end, count], 30 bins shared by classes
      categorical or boolean feature: [class, value, count]
    regression:
      numeric, datetime or text (length) feature: [bin_start, bin_end, count, mean, q25, q75]: up to 20 quantile
        bins of the feature (bin_start, bin_end: smallest and largest feature value inside), and the target's mean
        and quartiles in each
      categorical or boolean feature: [value, count, mean, q25, q75]
    """
    if task not in ("classification", "regression"):
        raise BadInput(f"task must be classification or regression, not {task!r}")
    fcol, tcol = column_view(db, feature), column_view(db, target)
    binned = fcol.treatment in ("numeric", "datetime", "text")
    if task == "regression":
        if tcol.treatment != "numeric":
            raise BadInput(f"{target!r} is not numeric, so it cannot be a regression target")
        return _regression_relation(db, fcol, tcol, binned)

    where = f"{tcol.ident} IS NOT NULL"
    classes = _value_counts(db, tcol, 10)["value"].tolist()
    cls, cls_params = _pooled(tcol, classes)
    if binned:
        r = _range(db, fcol, where, [])
        if not r["n_finite"]:
            return pd.DataFrame(columns=["class", "bin_start", "bin_end", "count"])
        grid = _bin_grid(r["lo"], r["hi"], 30, fcol.number_is_whole)
        raw = _bin_counts(db, fcol, r, grid, where, by=cls, by_params=cls_params)
        counts = {(_label_or_other(c), b): n for (c, b), n in raw.items()}
        starts, ends = _edges(r["lo"], r["hi"], grid)
        labels = _labels_and_other(classes, any(c is None for c, _ in raw))
        df = pd.DataFrame([(c, s, e, counts.get((c, i), 0)) for c in labels
                           for i, (s, e) in enumerate(zip(starts, ends, strict=True))],
                          columns=["class", "bin_start", "bin_end", "count"])
        return _as_datetimes(df, fcol)
    values = _value_counts(db, fcol, 20, where)["value"].tolist()
    val, val_params = _pooled(fcol, values)
    rows = db.rows(f"SELECT c, v, count(*) FROM (SELECT {cls} AS c, {val} AS v FROM data "
                   f"WHERE {where} AND {fcol.ident} IS NOT NULL) GROUP BY c, v", cls_params + val_params)
    counts = {(_label_or_other(c), _label_or_other(v)): int(n) for c, v, n in rows}
    labels = _labels_and_other(classes, any(c is None for c, _, _ in rows))
    vlabels = _labels_and_other(values, any(v is None for _, v, _ in rows))
    return pd.DataFrame([(c, v, counts.get((c, v), 0)) for c in labels for v in vlabels],
                        columns=["class", "value", "count"])


def _pooled(col: ColumnView, keep: list) -> tuple[str, list]:
    """SQL for col's value when among keep, else NULL (= "(other)"); the kept values are bound parameters."""
    if not keep:
        return "NULL", []
    return f"CASE WHEN {col.value} IN ({', '.join('?' for _ in keep)}) THEN {col.value} END", list(keep)


def _label_or_other(v) -> str:
    """A class or value as its label; None stands for every pooled one."""
    return OTHER if v is None else str(v)


def _labels_and_other(values: list, other: bool) -> list[str]:
    return [_label_or_other(v) for v in values] + ([OTHER] if other else [])


def _regression_relation(db, fcol: ColumnView, tcol: ColumnView, binned: bool) -> pd.DataFrame:
    y = tcol.number
    where = f"isfinite({y})"
    n = int(db.rows(f"SELECT count(*) FILTER (WHERE {where}) FROM data")[0][0])
    qfn = "quantile_cont" if n <= sizing.EXACT_MAX_ROWS else "approx_quantile"
    stats = f"count(*), avg(y), {qfn}(y, 0.25), {qfn}(y, 0.75)"
    if binned:
        finite = f"{where} AND isfinite({fcol.number})"
        cuts = db.rows(f"SELECT {qfn}({fcol.number}, {QUANTILES_SQL}) FROM data WHERE {finite}")[0][0]
        cols = ["bin_start", "bin_end", "count", "mean", "q25", "q75"]
        if not cuts:
            return pd.DataFrame(columns=cols)
        cuts = sorted({float(c) for c in cuts})
        whens = " ".join(f"WHEN {fcol.number} < ? THEN {i}" for i in range(len(cuts)))
        rows = db.rows(f"SELECT b, min(x), max(x), {stats} FROM (SELECT CASE {whens} ELSE {len(cuts)} END AS b, "
                       f"{fcol.number} AS x, {y} AS y FROM data WHERE {finite}) GROUP BY b ORDER BY b", cuts)
        df = pd.DataFrame([r[1:] for r in rows], columns=cols).astype({"count": "int64"})
        return _as_datetimes(df, fcol)
    values = _value_counts(db, fcol, 20, where)["value"].tolist()
    val, val_params = _pooled(fcol, values)
    rows = db.rows(f"SELECT v, {stats} FROM (SELECT {val} AS v, {y} AS y FROM data "
                   f"WHERE {where} AND {fcol.ident} IS NOT NULL) GROUP BY v", val_params)
    order = {v: i for i, v in enumerate(_labels_and_other(values, True))}
    out = sorted(((_label_or_other(r[0]),) + tuple(r[1:]) for r in rows), key=lambda r: order[r[0]])
    return pd.DataFrame(out, columns=["value", "count", "mean", "q25", "q75"]).astype({"count": "int64"})
