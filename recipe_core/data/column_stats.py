"""Per-column statistics of a profile in few queries: counts, distincts, moments, quantiles, top values, outliers."""
from __future__ import annotations

from dataclasses import dataclass

from recipe_core.data import sizing
from recipe_core.data.columns import ColumnView, unpivot
from recipe_core.data.db import DatasetDB
from recipe_core.errors import QueryFailed

TOP_EXACT_DISTINCT = 100_000  # on large data, columns with more values get top values from a sketch
N_TOP = 5  # top values kept per column in the profile
OUTLIER_IQR = 3.0
QUANTILES = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95; also the leakage bin edges
QUANTILES_SQL = "[" + ", ".join(str(q) for q in QUANTILES) + "]"
QUANTILE_INDEX = {"p05": 0, "p25": 4, "p50": 9, "p75": 14, "p95": 18}  # positions in QUANTILES


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    dtype: str  # DuckDB type as seen through the view (after kind overrides)
    kind: str  # how it was summarized: numeric, categorical, text, boolean, datetime
    n: int  # non-missing values (NaN counts as present; see n_nan)
    n_missing: int  # NULLs
    n_distinct: int  # among non-missing values; an estimate when Profile.approximate
    min: object
    max: object
    mean: float | None  # numeric: over finite values; boolean: share of True
    std: float | None  # sample standard deviation (ddof=1), like pandas
    quantiles: dict  # {"p05", "p25", "p50", "p75", "p95"} for numeric, else {}
    top_values: list  # [(value, count)] up to 5, most frequent first (categorical, text, boolean)
    n_nan: int = 0
    n_inf: int = 0
    mean_length: float | None = None  # text: mean length in characters


def column_stats(db: DatasetDB, cols: list[ColumnView], exact: bool, notes: list[str]
                 ) -> tuple[dict[str, dict], int | None]:
    """Pass 1 of a profile: {column: {statistic: value}} (counts, distincts, moments, quantiles, lengths), and the
    number of exact duplicate rows (None, with a note, when it could not be counted)."""
    n_rows = db.n_rows
    stats: dict[str, dict] = {}
    n_dup = None
    long = [c for c in cols if c.treatment == "numeric"] if n_rows <= sizing.LONG_MAX_ROWS else []
    for chunk in sizing.chunks(long, lambda c: max(n_rows, 1) / sizing.LONG_CELLS, sizing.LONG_MAX_COLUMNS):
        stats.update(_long_numeric_stats(db, chunk))
        stats.update({c.name: {"n": 0, "distinct": 0} for c in chunk if c.name not in stats})  # no rows at all
    wide = [c for c in cols if c not in long]
    per_query = sizing.DISTINCT_MAX if exact and n_rows > sizing.LONG_MAX_ROWS else sizing.MAX_COLUMNS

    def cost(c: ColumnView) -> float:
        w = {"numeric": 4, "text": 2}.get(c.treatment, 1)  # quantiles dominate; text needs length()
        per_cell = sizing.LONG_CELLS if n_rows <= sizing.LONG_MAX_ROWS else sizing.EXACT_CELLS
        cells = n_rows / per_cell if exact else 0.0
        return max(w * n_rows / sizing.QUERY_BUDGET, cells)

    chunks = list(sizing.chunks(wide, cost, per_query))
    for chunk in chunks:
        one = len(chunks) == 1 and not long
        sql, keys = _stats_sql(chunk, n_rows, exact, cols if one else None)
        row = db.rows(sql)[0]
        for (name, stat), value in zip(keys, row, strict=False):  # row may end with the distinct-row count
            stats.setdefault(name, {})[stat] = value
        if one:
            n_dup = n_rows - int(row[-1])
    if n_dup is None:
        try:
            n_dup = n_rows - int(db.rows(f"SELECT count(DISTINCT {row_hash(cols)}) FROM data")[0][0])
        except QueryFailed as e:
            notes.append(f"duplicate rows not checked: {e}")
    return stats, n_dup


def _stats_sql(chunk: list[ColumnView], n_rows: int, exact: bool,
               hash_cols: list[ColumnView] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """One aggregate query over a chunk of columns; keys name each output (column, statistic).

    No FILTER clauses: in an ungrouped aggregate each FILTER re-slices the whole input, which made 200-column
    queries 20x slower. An inner projection computes each value once (finite-or-NULL for floats), and the
    aggregates skip NULLs by themselves. With hash_cols, the last output counts distinct rows.
    """
    inner: list[str] = []
    parts: list[str] = []
    keys: list[tuple[str, str]] = []

    def add(c: ColumnView, stat: str, sql: str) -> None:
        parts.append(sql)
        keys.append((c.name, stat))

    qfn = "quantile_cont" if exact else "approx_quantile"
    for i, c in enumerate(chunk):
        v, f = f"c{i}", f"f{i}"  # the value, and the number (finite, else NULL)
        inner.append(f"{c.value} AS {v}")
        add(c, "n", f"count({v})")
        add(c, "distinct", _distinct_sql(v, n_rows, exact))
        if c.treatment == "numeric":
            inner.append(f"CASE WHEN isfinite({c.number}) THEN {c.number} END AS {f}" if c.is_float
                         else f"{c.number} AS {f}")
            if c.is_float:
                add(c, "nan", f"count_if(isnan({v}))")
                add(c, "inf", f"count_if(isinf({v}))")
            add(c, "min", f"min({v})" if c.is_int else f"min({f})")
            add(c, "max", f"max({v})" if c.is_int else f"max({f})")
            add(c, "mean", f"avg({f})")
            add(c, "std", f"stddev_samp({f})")
            add(c, "q", f"{qfn}({f}, {QUANTILES_SQL})")
        elif c.treatment == "datetime":
            add(c, "min", f"min({v})")
            add(c, "max", f"max({v})")
        elif c.treatment == "boolean":
            add(c, "true", f"count_if({v})")
        elif c.treatment == "text":
            inner.append(f"{c.number} AS {f}")
            add(c, "len", f"avg({f})")
        if c.dtype == "VARCHAR" and c.treatment in ("categorical", "text"):
            add(c, "spaces", f"count_if(contains({v}, ' '))")
    if hash_cols:
        inner.append(f"{row_hash(hash_cols)} AS h")
        parts.append("count(DISTINCT h)")
    return f"SELECT {', '.join(parts)} FROM (SELECT {', '.join(inner)} FROM data)", keys


def _distinct_sql(v: str, n_rows: int, exact: bool) -> str:
    if not exact:
        return f"approx_count_distinct({v})"
    # count(DISTINCT) holds a few MB per aggregate however short the table (100 of them overflow 256 MB);
    # list_unique(list(v)) holds the values instead, which is cheaper while the table is short.
    return f"list_unique(list({v}))" if n_rows <= sizing.LONG_MAX_ROWS else f"count(DISTINCT {v})"


def _long_numeric_stats(db, chunk: list[ColumnView]) -> dict[str, dict]:
    """Pass 1 for numeric columns of a short table, unpivoted: the same statistics as _stats_sql (exact)."""
    rows = db.rows(
        f"SELECT k, count(v), count(DISTINCT v), count_if(isnan(v)), count_if(isinf(v)), min(f), max(f), avg(f), "
        f"stddev_samp(f), quantile_cont(f, {QUANTILES_SQL}) FROM (SELECT k, v, CASE WHEN isfinite(v) THEN v END AS f "
        f"FROM {unpivot([c.number for c in chunk], include_nulls=True)}) GROUP BY k")
    out = {}
    for k, n, d, nan, inf, lo, hi, mean, std, q in rows:
        c = chunk[int(k)]
        if c.is_int and lo is not None:  # values went through DOUBLE: exact below 2**53
            lo, hi = int(lo), int(hi)
        out[c.name] = {"n": n, "distinct": d, "nan": nan, "inf": inf, "min": lo, "max": hi, "mean": mean,
                       "std": std, "q": q}
    return out


def row_hash(cols: list[ColumnView]) -> str:
    """SQL for one hash of a row's values, to count distinct rows."""
    # A 64-bit hash per row: a false duplicate needs a collision (~n^2 / 2^65: nil at 10M rows), and it keeps
    # the distinct set small. Hash calls are nested by 200 columns so very wide tables stay valid SQL.
    groups = [f"hash({', '.join(c.ident for c in cols[i:i + 200])})" for i in range(0, len(cols), 200)]
    return groups[0] if len(groups) == 1 else f"hash({', '.join(groups)})"


def top_values(db, cols, stats, n_rows, exact) -> dict[str, list]:
    """Pass 2: the most frequent values of categorical and text columns, with exact counts.

    Columns of one type are unpivoted and counted by one GROUP BY. On large data a column with very many values
    gets its candidates from a sketch (approx_top_k) and then exact counts.
    """
    cand = [c for c in cols if c.treatment in ("categorical", "text") and stats[c.name]["n"]]
    small = [c for c in cand if exact or stats[c.name]["distinct"] <= TOP_EXACT_DISTINCT]
    large = [c for c in cand if c not in small]
    tops: dict[str, list] = {}
    by_type: dict[str, list[ColumnView]] = {}
    for c in small:
        by_type.setdefault("VARCHAR" if c.value != c.ident else c.dtype, []).append(c)  # UNPIVOT needs one type

    def cost(c: ColumnView) -> float:
        return max(2 * n_rows / sizing.QUERY_BUDGET, stats[c.name]["distinct"] / sizing.DISTINCT_BUDGET,
                   n_rows / sizing.EXACT_CELLS)

    for group in by_type.values():
        for chunk in sizing.chunks(group, cost, sizing.LONG_MAX_COLUMNS):
            rows = db.rows(f"SELECT k, v, n, row_number() OVER (PARTITION BY k ORDER BY n DESC, v) AS rank FROM "
                           f"(SELECT k, v, count(*) AS n FROM {unpivot([c.value for c in chunk])} GROUP BY k, v) "
                           f"QUALIFY rank <= {N_TOP}")
            for k, v, n, _rank in sorted(rows, key=lambda r: (int(r[0]), r[3])):  # rows come in any order
                tops.setdefault(chunk[int(k)].name, []).append((v, int(n)))
    for chunk in sizing.chunks(large, lambda c: 2 * n_rows / sizing.QUERY_BUDGET, sizing.MAX_COLUMNS):
        cands = db.rows("SELECT " + ", ".join(f"approx_top_k({c.value}, {N_TOP})" for c in chunk) + " FROM data")[0]
        pairs = [(c, v) for c, values in zip(chunk, cands, strict=True) for v in (values or [])]
        if pairs:
            counts = db.rows("SELECT " + ", ".join(f"count_if({c.value} = ?)" for c, _ in pairs) + " FROM data",
                             [v for _, v in pairs])[0]
            for (c, v), n in zip(pairs, counts, strict=True):
                tops.setdefault(c.name, []).append((v, int(n)))
            for c in chunk:
                tops.get(c.name, []).sort(key=lambda vc: -vc[1])
    return tops


def outlier_fences(s: dict) -> tuple[float, float] | None:
    """(low, high) beyond which a value is an outlier: OUTLIER_IQR interquartile ranges past the quartiles."""
    qs = s.get("q")
    if not qs:
        return None
    q1, q3 = qs[QUANTILE_INDEX["p25"]], qs[QUANTILE_INDEX["p75"]]
    spread = q3 - q1
    if spread <= 0:
        # Mostly one value: the IQR is 0, so use the 5-95% range instead, or nothing is an outlier.
        spread = qs[QUANTILE_INDEX["p95"]] - qs[QUANTILE_INDEX["p05"]]
        if spread <= 0:
            return None
    return q1 - OUTLIER_IQR * spread, q3 + OUTLIER_IQR * spread


def outlier_counts(db, cols, fences, n_rows) -> dict[str, int]:
    """Pass 2: the values of each column outside its fences."""
    out: dict[str, int] = {}
    if n_rows <= sizing.LONG_MAX_ROWS:  # short and maybe wide: unpivot, and join each column's fences
        for chunk in sizing.chunks(cols, lambda c: n_rows / sizing.LONG_CELLS, sizing.LONG_MAX_COLUMNS):
            rows = db.rows(
                f"SELECT k, count_if(v < lo OR v > hi) FROM {unpivot([c.number for c in chunk])} "
                f"JOIN (SELECT unnest(?::VARCHAR[]) AS k, unnest(?::DOUBLE[]) AS lo, unnest(?::DOUBLE[]) AS hi) "
                f"USING (k) WHERE isfinite(v) GROUP BY k",
                [[str(i) for i in range(len(chunk))], [fences[c.name][0] for c in chunk],
                 [fences[c.name][1] for c in chunk]])
            out.update({chunk[int(k)].name: int(n) for k, n in rows})
        return out
    # One comparison a value.
    for chunk in sizing.chunks(cols, lambda c: n_rows / (2 * sizing.QUERY_BUDGET), sizing.MAX_COLUMNS):
        parts, params = [], []
        for c in chunk:
            fin = f"isfinite({c.number}) AND " if c.is_float else ""
            # count_if, not FILTER (see _stats_sql)
            parts.append(f"count_if({fin}({c.number} < ? OR {c.number} > ?))")
            params += list(fences[c.name])
        for c, n in zip(chunk, db.rows("SELECT " + ", ".join(parts) + " FROM data", params)[0], strict=True):
            out[c.name] = int(n)
    return out


def column_profile(c: ColumnView, s: dict, top: list, n_rows: int) -> ColumnProfile:
    """A column's statistics (from column_stats) and top values, as the profile shows them."""
    n = int(s["n"])
    qs = s.get("q")
    mean = s.get("mean")
    if c.treatment == "boolean":
        n_true = int(s["true"])
        mean = n_true / n if n else None
        top = sorted([(v, k) for v, k in ((True, n_true), (False, n - n_true)) if k], key=lambda vc: -vc[1])
    lo, hi = s.get("min"), s.get("max")
    if c.treatment == "numeric" and not c.is_int:
        lo, hi = float_or_none(lo), float_or_none(hi)
    return ColumnProfile(
        name=c.name, dtype=c.dtype, kind=c.treatment, n=n, n_missing=n_rows - n,
        n_distinct=min(int(s["distinct"] or 0), n),  # a sketch may overshoot
        min=lo, max=hi, mean=float_or_none(mean), std=float_or_none(s.get("std")),
        quantiles={k: float(qs[i]) for k, i in QUANTILE_INDEX.items()} if qs else {},
        top_values=list(top), n_nan=int(s.get("nan") or 0), n_inf=int(s.get("inf") or 0),
        mean_length=float_or_none(s.get("len")),
    )


def float_or_none(v) -> float | None:
    return None if v is None else float(v)
