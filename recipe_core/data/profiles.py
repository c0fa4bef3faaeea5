"""Column profiles, data-quality warnings, histograms and feature-vs-target summaries, all computed in DuckDB.

Everything is SQL over the view `data` of a DatasetDB, many columns per query; only small summaries reach pandas.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import pandas as pd

from recipe_core.data.queries import FLOAT_TYPES, INT_TYPES, TIMESTAMP_TYPES, DatasetDB, quote_ident
from recipe_core.data.snapshot import ROW_ID
from recipe_core.errors import BadInput, NotFound, QueryFailed

# Up to this many rows, distinct counts and quantiles are exact; above it DuckDB's sketches (HyperLogLog,
# t-digest) keep memory bounded under the connection's memory_limit (exact ones hold every value).
EXACT_MAX_ROWS = 1_000_000
# Query sizing. Each query must stay far under the watchdog (20 s) and the memory limit (256 MB):
QUERY_BUDGET = 80_000_000  # weighted column-rows per query: a few seconds on 2 cores
EXACT_CELLS = 5_000_000  # exact quantiles and distinct counts buffer every value: column-rows per query
DISTINCT_BUDGET = 2_000_000  # distinct (column, value) groups per GROUP BY query
MAX_COLUMNS = 200  # columns per wide aggregate query (DuckDB's cost per aggregate expression grows with width)
DISTINCT_MAX = 24  # count(DISTINCT) holds a few MB per aggregate whatever the data: at most this many per query
# Short tables are unpivoted (column name, value) and aggregated with one GROUP BY: thousands of columns cost
# one small query instead of thousands of aggregate expressions (5,000 columns: 4x faster).
LONG_MAX_ROWS = 100_000
LONG_CELLS = 2_000_000  # unpivoted rows per query
LONG_MAX_COLUMNS = 1000
TOP_EXACT_DISTINCT = 100_000  # on large data, columns with more values get top values from a sketch
N_TOP = 5  # top values kept per column in the profile
MAX_CLASSES = 1000  # a classification target with more classes gets no imbalance or leakage check
REGRESSION_MIN_DISTINCT = 21  # a numeric target with more distinct values than 20 is a regression target
LEAK_BINS = 20  # numeric features are cut into this many quantile bins for the leakage lookup
LEAK_MIN_TEST = 30  # fewer held-out rows than this: no leakage verdict
MIN_ROWS_ID = 20  # on tiny tables every column is unique; do not call that an ID
NAME_MAX_SPACES = 2.0  # unique strings of at most ~3 words on average are names of the rows (IDs), not prose
NAME_MAX_LENGTH = 40.0  # ... and this many characters on average
ZERO_MIN_POSITIVE = 5  # positive values needed before zeros can be told apart from them
ZERO_STEPS = 10  # the smallest distinct positive values whose mean gap is a column's step near 0
ZERO_SMALLEST = 200  # smallest positive values fetched to find them (ties included)
ZERO_APART = 3.0  # zeros stand apart when the smallest positive value is more than this many steps above 0
ZERO_MIN_SHARE = 0.2  # ... and at least this share of the positive values' median
MISSING_SHOWN = 10  # columns listed by name in the missing-values warning
OUTLIER_IQR = 3.0
QUANTILES = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95; also the leakage bin edges
_QLIST = "[" + ", ".join(str(q) for q in QUANTILES) + "]"
_QI = {"p05": 0, "p25": 4, "p50": 9, "p75": 14, "p95": 18}  # positions in QUANTILES
OTHER = "(other)"

DATETIME_TYPES = {"DATE"} | TIMESTAMP_TYPES
_ID_NAME = re.compile(r"(?i)^(id|uuid|guid|key|index)$|[_\s.-](id|uuid|guid|key)$|[a-z]I[Dd]$")



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


@dataclass(frozen=True)
class DataWarning:
    kind: str  # duplicates, missing_values, constant, missing, id_like, zeros, nan_inf, imbalance, outliers, leakage
    column: str | None
    message: str  # one line with its numbers
    value: float  # the main number: a count, a share, a ratio or a score (see each check)


@dataclass(frozen=True)
class Profile:
    n_rows: int
    columns: list[ColumnProfile]
    warnings: list[DataWarning]
    seconds: float
    approximate: bool = False  # distinct counts and quantiles are sketches (more than EXACT_MAX_ROWS rows)
    task: str | None = None  # of the target, when one was given
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise NotFound(f"the profile has no column {name!r}")


# -- columns as the view sees them ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Col:
    name: str
    dtype: str
    treat: str  # numeric, categorical, text, boolean, datetime

    @property
    def q(self) -> str:
        return quote_ident(self.name)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES

    @property
    def is_int(self) -> bool:
        return self.dtype in INT_TYPES

    @property
    def v(self) -> str:
        """The value to group and count by; nested values are compared as text."""
        nested = self.dtype.endswith("]") or self.dtype.startswith(("STRUCT", "MAP", "UNION"))
        return f"CAST({self.q} AS VARCHAR)" if nested else self.q

    @property
    def x(self) -> str:
        """A DOUBLE to bin or summarize: the number, the instant in microseconds, or the text length."""
        if self.treat == "numeric":
            return self.q if self.dtype == "DOUBLE" else f"CAST({self.q} AS DOUBLE)"
        if self.treat == "datetime":
            ts = self.q if self.dtype == "TIMESTAMP WITH TIME ZONE" else f"CAST({self.q} AS TIMESTAMP)"
            return f"CAST(epoch_us({ts}) AS DOUBLE)"
        return f"CAST(length(CAST({self.q} AS VARCHAR)) AS DOUBLE)"

    @property
    def x_is_int(self) -> bool:
        """x only takes whole values, so small ranges get one bin per value."""
        return self.is_int or self.dtype == "BOOLEAN" or self.treat in ("text", "categorical", "boolean")


def _treatment(kind: str, dtype: str) -> str:
    # A kind the stored type cannot honour (e.g. numeric on a DATE) falls back to counting values.
    numeric_type = dtype in INT_TYPES or dtype in FLOAT_TYPES or dtype.startswith("DECIMAL") or dtype == "BOOLEAN"
    if kind == "numeric" and numeric_type:
        return "numeric"
    if kind == "datetime" and dtype in DATETIME_TYPES:
        return "datetime"
    if kind == "boolean" and dtype == "BOOLEAN":
        return "boolean"
    if kind == "text":
        return "text"
    return "categorical"


def _col(db: DatasetDB, column) -> _Col:
    dtype = db.types[column.name]  # as the view shows it, after kind overrides
    return _Col(column.name, dtype, _treatment(column.kind, dtype))


def _columns(db: DatasetDB) -> list[_Col]:
    return [_col(db, c) for c in db.record.columns]


def _column(db: DatasetDB, name: str) -> _Col:
    return _col(db, db.record.column(name))  # NotFound with a clear message


def treatments(db: DatasetDB) -> dict[str, str]:
    """How each column is treated (numeric, categorical, text, boolean, datetime): the kind the stored type honours."""
    return {c.name: c.treat for c in _columns(db)}


def _chunks(items: list, cost, max_items: int):
    """Split items into consecutive queries: each query's summed cost stays <= 1 and it has <= max_items."""
    chunk: list = []
    total = 0.0
    for it in items:
        w = cost(it)
        if chunk and (len(chunk) >= max_items or total + w > 1.0):
            yield chunk
            chunk, total = [], 0.0
        chunk.append(it)
        total += w
    if chunk:
        yield chunk


def _unpivot(exprs: list[str], include_nulls: bool = False) -> str:
    """(k, v) rows from one projection of data: k is the expression's position as text ("0", "1", ...)."""
    inner = ", ".join(f'{e} AS "{i}"' for i, e in enumerate(exprs))
    names = ", ".join(f'"{i}"' for i in range(len(exprs)))
    nulls = " INCLUDE NULLS" if include_nulls else ""
    return f"(SELECT k, v FROM (SELECT {inner} FROM data) UNPIVOT{nulls} (v FOR k IN ({names})))"


# -- the profile ------------------------------------------------------------------------------------

def profile(db: DatasetDB, target: str | None = None) -> Profile:
    """One ColumnProfile per user column, and the data-quality warnings (with the target's, when given)."""
    start = time.perf_counter()
    cols = _columns(db)
    tcol = _column(db, target) if target is not None else None
    n_rows = db.n_rows
    exact = n_rows <= EXACT_MAX_ROWS
    notes: list[str] = []

    # Pass 1: counts, distincts, moments, quantiles, lengths (and duplicate rows when one query holds it all).
    stats: dict[str, dict] = {}
    n_dup = None
    long = [c for c in cols if c.treat == "numeric"] if n_rows <= LONG_MAX_ROWS else []
    for chunk in _chunks(long, lambda c: max(n_rows, 1) / LONG_CELLS, LONG_MAX_COLUMNS):
        stats.update(_long_numeric_stats(db, chunk))
        stats.update({c.name: {"n": 0, "distinct": 0} for c in chunk if c.name not in stats})  # no rows at all
    wide = [c for c in cols if c not in long]
    per_query = DISTINCT_MAX if exact and n_rows > LONG_MAX_ROWS else MAX_COLUMNS

    def cost(c: _Col) -> float:
        w = {"numeric": 4, "text": 2}.get(c.treat, 1)  # quantiles dominate; text needs length()
        cells = n_rows / (LONG_CELLS if n_rows <= LONG_MAX_ROWS else EXACT_CELLS) if exact else 0.0
        return max(w * n_rows / QUERY_BUDGET, cells)

    chunks = list(_chunks(wide, cost, per_query))
    for chunk in chunks:
        one = len(chunks) == 1 and not long
        sql, keys = _stats_sql(chunk, n_rows, exact, cols if one else None)
        row = db.rows(sql)[0]
        for (name, stat), value in zip(keys, row):
            stats.setdefault(name, {})[stat] = value
        if one:
            n_dup = n_rows - int(row[-1])
    if n_dup is None:
        try:
            n_dup = n_rows - int(db.rows(f"SELECT count(DISTINCT {_row_hash(cols)}) FROM data")[0][0])
        except QueryFailed as e:
            notes.append(f"duplicate rows not checked: {e}")

    # Pass 2: top values and outlier counts (both need pass 1's numbers).
    tops = _top_values(db, cols, stats, n_rows, exact)
    fences = {c.name: f for c in cols if c.treat == "numeric" and (f := _fences(stats[c.name])) is not None}
    n_out = _outlier_counts(db, [c for c in cols if c.name in fences], fences, n_rows)

    profiles = [_column_profile(c, stats[c.name], tops.get(c.name, []), n_rows) for c in cols]
    by_name = {p.name: p for p in profiles}
    names = _name_like(db, [c for c, p in zip(cols, profiles) if _unique(p, n_rows, exact) and c.dtype == "VARCHAR"
                            and stats[c.name].get("spaces")])
    id_like = {c.name for c, p in zip(cols, profiles)
               if _id_like(c, p, stats[c.name], n_rows, exact, c.name in names)}
    zeros = _zeros(db, [c for c, p in zip(cols, profiles) if c.treat == "numeric" and p.min == 0
                        and p.n_distinct > 3], n_rows, exact)

    warnings: list[DataWarning] = []
    if n_dup:
        warnings.append(DataWarning("duplicates", None, f"{n_dup:,} exact duplicate rows ({_pct(n_dup, n_rows)})",
                                    float(n_dup)))
    warnings += _missing_values(profiles)
    task = None
    if tcol is not None:
        tprof = by_name[tcol.name]
        task = _task_from(db, tcol, tprof.n_distinct, exact)
        edges = {name: st["q"] for name, st in stats.items() if st.get("q")}
        try:
            warnings += _target_checks(db, tcol, tprof, task, cols, by_name, edges, id_like, n_rows, notes)
        except QueryFailed as e:
            notes.append(f"target checks not run: {e}")
    for c, p in zip(cols, profiles):
        warnings += _column_warnings(p, n_rows, c.name in id_like, n_out.get(c.name), fences.get(c.name),
                                     zeros.get(c.name), c.name in names)
    return Profile(n_rows=n_rows, columns=profiles, warnings=warnings, seconds=time.perf_counter() - start,
                   approximate=not exact, task=task, notes=notes)


def _stats_sql(chunk: list[_Col], n_rows: int, exact: bool,
               hash_cols: list[_Col] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """One aggregate query over a chunk of columns; keys name each output (column, statistic).

    No FILTER clauses: in an ungrouped aggregate each FILTER re-slices the whole input, which made 200-column
    queries 20x slower. An inner projection computes each value once (finite-or-NULL for floats), and the
    aggregates skip NULLs by themselves. With hash_cols, the last output counts distinct rows.
    """
    inner: list[str] = []
    parts: list[str] = []
    keys: list[tuple[str, str]] = []

    def add(c: _Col, stat: str, sql: str) -> None:
        parts.append(sql)
        keys.append((c.name, stat))

    qfn = "quantile_cont" if exact else "approx_quantile"
    for i, c in enumerate(chunk):
        v, f = f"c{i}", f"f{i}"  # the value, and the number (finite, else NULL)
        inner.append(f"{c.v} AS {v}")
        add(c, "n", f"count({v})")
        add(c, "distinct", _distinct_sql(v, n_rows, exact))
        if c.treat == "numeric":
            inner.append(f"CASE WHEN isfinite({c.x}) THEN {c.x} END AS {f}" if c.is_float else f"{c.x} AS {f}")
            if c.is_float:
                add(c, "nan", f"count_if(isnan({v}))")
                add(c, "inf", f"count_if(isinf({v}))")
            add(c, "min", f"min({v})" if c.is_int else f"min({f})")
            add(c, "max", f"max({v})" if c.is_int else f"max({f})")
            add(c, "mean", f"avg({f})")
            add(c, "std", f"stddev_samp({f})")
            add(c, "q", f"{qfn}({f}, {_QLIST})")
        elif c.treat == "datetime":
            add(c, "min", f"min({v})")
            add(c, "max", f"max({v})")
        elif c.treat == "boolean":
            add(c, "true", f"count_if({v})")
        elif c.treat == "text":
            inner.append(f"{c.x} AS {f}")
            add(c, "len", f"avg({f})")
        if c.dtype == "VARCHAR" and c.treat in ("categorical", "text"):
            add(c, "spaces", f"count_if(contains({v}, ' '))")
    if hash_cols:
        inner.append(f"{_row_hash(hash_cols)} AS h")
        parts.append("count(DISTINCT h)")
    return f"SELECT {', '.join(parts)} FROM (SELECT {', '.join(inner)} FROM data)", keys


def _distinct_sql(v: str, n_rows: int, exact: bool) -> str:
    if not exact:
        return f"approx_count_distinct({v})"
    # count(DISTINCT) holds a few MB per aggregate however short the table (100 of them overflow 256 MB);
    # list_unique(list(v)) holds the values instead, which is cheaper while the table is short.
    return f"list_unique(list({v}))" if n_rows <= LONG_MAX_ROWS else f"count(DISTINCT {v})"


def _long_numeric_stats(db, chunk: list[_Col]) -> dict[str, dict]:
    """Pass 1 for numeric columns of a short table, unpivoted: the same statistics as _stats_sql (exact)."""
    rows = db.rows(
        f"SELECT k, count(v), count(DISTINCT v), count_if(isnan(v)), count_if(isinf(v)), min(f), max(f), avg(f), "
        f"stddev_samp(f), quantile_cont(f, {_QLIST}) FROM (SELECT k, v, CASE WHEN isfinite(v) THEN v END AS f "
        f"FROM {_unpivot([c.x for c in chunk], include_nulls=True)}) GROUP BY k")
    out = {}
    for k, n, d, nan, inf, lo, hi, mean, std, q in rows:
        c = chunk[int(k)]
        if c.is_int and lo is not None:  # values went through DOUBLE: exact below 2**53
            lo, hi = int(lo), int(hi)
        out[c.name] = {"n": n, "distinct": d, "nan": nan, "inf": inf, "min": lo, "max": hi, "mean": mean,
                       "std": std, "q": q}
    return out


def _row_hash(cols: list[_Col]) -> str:
    # A 64-bit hash per row: a false duplicate needs a collision (~n^2 / 2^65: nil at 10M rows), and it keeps
    # the distinct set small. Hash calls are nested by 200 columns so very wide tables stay valid SQL.
    groups = [f"hash({', '.join(c.q for c in cols[i:i + 200])})" for i in range(0, len(cols), 200)]
    return groups[0] if len(groups) == 1 else f"hash({', '.join(groups)})"


def _top_values(db, cols, stats, n_rows, exact) -> dict[str, list]:
    """Most frequent values of categorical and text columns, with exact counts.

    Columns of one type are unpivoted and counted by one GROUP BY. On large data a column with very many values
    gets its candidates from a sketch (approx_top_k) and then exact counts.
    """
    cand = [c for c in cols if c.treat in ("categorical", "text") and stats[c.name]["n"]]
    small = [c for c in cand if exact or stats[c.name]["distinct"] <= TOP_EXACT_DISTINCT]
    large = [c for c in cand if c not in small]
    tops: dict[str, list] = {}
    by_type: dict[str, list[_Col]] = {}
    for c in small:
        by_type.setdefault("VARCHAR" if c.v != c.q else c.dtype, []).append(c)  # UNPIVOT needs one type

    def cost(c: _Col) -> float:
        return max(2 * n_rows / QUERY_BUDGET, stats[c.name]["distinct"] / DISTINCT_BUDGET, n_rows / EXACT_CELLS)

    for group in by_type.values():
        for chunk in _chunks(group, cost, LONG_MAX_COLUMNS):
            rows = db.rows(f"SELECT k, v, n, row_number() OVER (PARTITION BY k ORDER BY n DESC, v) AS rank FROM "
                           f"(SELECT k, v, count(*) AS n FROM {_unpivot([c.v for c in chunk])} GROUP BY k, v) "
                           f"QUALIFY rank <= {N_TOP}")
            for k, v, n, rank in sorted(rows, key=lambda r: (int(r[0]), r[3])):  # rows come in any order
                tops.setdefault(chunk[int(k)].name, []).append((v, int(n)))
    for chunk in _chunks(large, lambda c: 2 * n_rows / QUERY_BUDGET, MAX_COLUMNS):
        cands = db.rows("SELECT " + ", ".join(f"approx_top_k({c.v}, {N_TOP})" for c in chunk) + " FROM data")[0]
        pairs = [(c, v) for c, values in zip(chunk, cands) for v in (values or [])]
        if pairs:
            counts = db.rows("SELECT " + ", ".join(f"count_if({c.v} = ?)" for c, _ in pairs) + " FROM data",
                             [v for _, v in pairs])[0]
            for (c, v), n in zip(pairs, counts):
                tops.setdefault(c.name, []).append((v, int(n)))
            for c in chunk:
                tops.get(c.name, []).sort(key=lambda vc: -vc[1])
    return tops


def _fences(s: dict) -> tuple[float, float] | None:
    qs = s.get("q")
    if not qs:
        return None
    q1, q3 = qs[_QI["p25"]], qs[_QI["p75"]]
    spread = q3 - q1
    if spread <= 0:
        # Mostly one value: the IQR is 0, so use the 5-95% range instead, or nothing is an outlier.
        spread = qs[_QI["p95"]] - qs[_QI["p05"]]
        if spread <= 0:
            return None
    return q1 - OUTLIER_IQR * spread, q3 + OUTLIER_IQR * spread


def _outlier_counts(db, cols, fences, n_rows) -> dict[str, int]:
    out: dict[str, int] = {}
    if n_rows <= LONG_MAX_ROWS:  # short and maybe wide: unpivot, and join each column's fences
        for chunk in _chunks(cols, lambda c: n_rows / LONG_CELLS, LONG_MAX_COLUMNS):
            rows = db.rows(
                f"SELECT k, count_if(v < lo OR v > hi) FROM {_unpivot([c.x for c in chunk])} "
                f"JOIN (SELECT unnest(?::VARCHAR[]) AS k, unnest(?::DOUBLE[]) AS lo, unnest(?::DOUBLE[]) AS hi) "
                f"USING (k) WHERE isfinite(v) GROUP BY k",
                [[str(i) for i in range(len(chunk))], [fences[c.name][0] for c in chunk],
                 [fences[c.name][1] for c in chunk]])
            out.update({chunk[int(k)].name: int(n) for k, n in rows})
        return out
    for chunk in _chunks(cols, lambda c: n_rows / (2 * QUERY_BUDGET), MAX_COLUMNS):  # one comparison a value
        parts, params = [], []
        for c in chunk:
            fin = f"isfinite({c.x}) AND " if c.is_float else ""
            parts.append(f"count_if({fin}({c.x} < ? OR {c.x} > ?))")  # count_if, not FILTER (see _stats_sql)
            params += list(fences[c.name])
        for c, n in zip(chunk, db.rows("SELECT " + ", ".join(parts) + " FROM data", params)[0]):
            out[c.name] = int(n)
    return out


def _column_profile(c: _Col, s: dict, top: list, n_rows: int) -> ColumnProfile:
    n = int(s["n"])
    qs = s.get("q")
    mean = s.get("mean")
    if c.treat == "boolean":
        n_true = int(s["true"])
        mean = n_true / n if n else None
        top = sorted([(v, k) for v, k in ((True, n_true), (False, n - n_true)) if k], key=lambda vc: -vc[1])
    lo, hi = s.get("min"), s.get("max")
    if c.treat == "numeric" and not c.is_int:
        lo, hi = _float(lo), _float(hi)
    return ColumnProfile(
        name=c.name, dtype=c.dtype, kind=c.treat, n=n, n_missing=n_rows - n,
        n_distinct=min(int(s["distinct"] or 0), n),  # a sketch may overshoot
        min=lo, max=hi, mean=_float(mean), std=_float(s.get("std")),
        quantiles={k: float(qs[i]) for k, i in _QI.items()} if qs else {},
        top_values=list(top), n_nan=int(s.get("nan") or 0), n_inf=int(s.get("inf") or 0),
        mean_length=_float(s.get("len")),
    )


def _unique(p: ColumnProfile, n_rows: int, exact: bool) -> bool:
    return p.n > 0 and (p.n_distinct == n_rows if exact else p.n_distinct >= 0.97 * n_rows)  # HLL: within a few %


def _id_like(c: _Col, p: ColumnProfile, s: dict, n_rows: int, exact: bool, name_like: bool = False) -> bool:
    """Integer or code-like string columns whose every value differs (or named like an ID, mostly distinct).

    Strings with spaces are prose, not codes (unique free text is normal), unless they are as short as names:
    a car model or a person's name per row names the row, like an ID does."""
    prose = s.get("spaces") and not name_like
    if not (c.is_int or c.dtype == "VARCHAR") or n_rows < MIN_ROWS_ID or p.n == 0 or prose:
        return False
    named = bool(_ID_NAME.search(c.name)) and p.n_distinct >= 0.5 * p.n
    return _unique(p, n_rows, exact) or named


def _name_like(db, cols: list[_Col]) -> set[str]:
    """Those of these text columns whose values are short like names: a few words, a few dozen characters."""
    out: set[str] = set()
    for chunk in _chunks(cols, lambda c: 2 * max(db.n_rows, 1) / QUERY_BUDGET, MAX_COLUMNS):
        parts = [f"avg(length({c.q}) - length(replace({c.q}, ' ', ''))), avg(length({c.q}))" for c in chunk]
        row = db.rows("SELECT " + ", ".join(parts) + " FROM data")[0]
        for i, c in enumerate(chunk):
            spaces, length = row[2 * i], row[2 * i + 1]
            if spaces is not None and spaces <= NAME_MAX_SPACES and length <= NAME_MAX_LENGTH:
                out.add(c.name)
    return out


def _zeros(db, cols: list[_Col], n_rows: int, exact: bool) -> dict[str, tuple]:
    """Numeric columns whose zeros stand apart from otherwise positive values (a length of 0, a blood pressure of 0).

    Returns {column: (n_zero, smallest positive, median positive)} where no value is negative, there are
    ZERO_MIN_POSITIVE positive values or more, and the smallest positive value is both at least ZERO_MIN_SHARE of
    their median and more than ZERO_APART steps above 0, a step being the mean gap between the ZERO_STEPS smallest
    distinct positive values. Counts (0, 1, 2, ...), half stars (0, 0.5, 1, ...) and skewed amounts that reach
    down towards 0 (rain, money, the breast-cancer sample's concavity) keep their zeros."""
    first: dict[str, tuple] = {}
    qfn = "quantile_cont" if exact else "approx_quantile"
    if n_rows <= LONG_MAX_ROWS:  # short and maybe wide: unpivoted, like the outlier counts
        for chunk in _chunks(cols, lambda c: max(n_rows, 1) / LONG_CELLS, LONG_MAX_COLUMNS):
            rows = db.rows(f"SELECT k, count_if(v = 0), count_if(v > 0), min(v, {ZERO_SMALLEST}) FILTER (WHERE v > 0), "
                           f"{qfn}(v, 0.5) FILTER (WHERE v > 0) FROM {_unpivot([c.x for c in chunk])} "
                           f"WHERE isfinite(v) GROUP BY k")
            first.update({chunk[int(k)].name: tuple(r) for k, *r in rows})
    else:
        def cost(c: _Col) -> float:
            return max(4 * n_rows / QUERY_BUDGET, n_rows / EXACT_CELLS if exact else 0.0)

        for chunk in _chunks(cols, cost, DISTINCT_MAX if exact else MAX_COLUMNS):
            parts = []
            for c in chunk:  # count_if and CASE, not FILTER (see _stats_sql)
                ok = f"isfinite({c.x}) AND " if c.is_float else ""
                pos = f"CASE WHEN {ok}{c.x} > 0 THEN {c.x} END"
                parts += [f"count_if({c.x} = 0)", f"count_if({ok}{c.x} > 0)", f"min({pos}, {ZERO_SMALLEST})",
                          f"{qfn}({pos}, 0.5)"]
            row = db.rows("SELECT " + ", ".join(parts) + " FROM data")[0]
            first.update({c.name: tuple(row[4 * i:4 * i + 4]) for i, c in enumerate(chunk)})
    out: dict[str, tuple] = {}
    for name, (n_zero, n_pos, smallest, median) in first.items():
        steps = sorted({float(v) for v in smallest or []})[:ZERO_STEPS]
        if not n_zero or n_pos < ZERO_MIN_POSITIVE or len(steps) < 3:
            continue
        step = (steps[-1] - steps[0]) / (len(steps) - 1)
        if steps[0] > ZERO_APART * step and steps[0] >= ZERO_MIN_SHARE * float(median):
            out[name] = (int(n_zero), steps[0], float(median))
    return out


def _missing_values(profiles: list[ColumnProfile]) -> list[DataWarning]:
    """One line with every column's count of missing values (NULLs), the largest first."""
    gaps = sorted(((p.n_missing, i, p.name) for i, p in enumerate(profiles) if p.n_missing),
                  key=lambda t: (-t[0], t[1]))
    if not gaps:
        return []
    total = sum(n for n, _, _ in gaps)
    listed = ", ".join(f"{_show(name)} {n:,}" for n, _, name in gaps[:MISSING_SHOWN])
    more = f", and {len(gaps) - MISSING_SHOWN:,} more columns" if len(gaps) > MISSING_SHOWN else ""
    return [DataWarning("missing_values", None, f"{total:,} missing {'value' if total == 1 else 'values'} in "
                        f"{len(gaps):,} {'column' if len(gaps) == 1 else 'columns'}: {listed}{more}", float(total))]


def _column_warnings(p: ColumnProfile, n_rows, id_like, n_out, fence, zeros=None, name_like=False) -> list[DataWarning]:
    out = []
    name = _show(p.name)
    if p.n_distinct == 1:
        only = p.top_values[0][0] if p.top_values else p.min
        out.append(DataWarning("constant", p.name, f"{name} is constant: its only value is {_show(only)}"
                               + (f" ({p.n_missing:,} missing)" if p.n_missing else ""), 1.0))
    if n_rows and p.n_missing / n_rows > 0.5:
        out.append(DataWarning("missing", p.name, f"{name} is mostly missing: {p.n_missing:,} of {n_rows:,} rows "
                               f"({_pct(p.n_missing, n_rows)})", p.n_missing / n_rows))
    if id_like:
        what = "names each row, like an ID" if name_like else "looks like an ID"
        out.append(DataWarning("id_like", p.name, f"{name} {what}: {p.n_distinct:,} distinct values "
                               f"in {n_rows:,} rows", p.n_distinct / n_rows))
    if zeros:
        n_zero, lo, median = zeros
        out.append(DataWarning("zeros", p.name, f"{name} has {n_zero:,} zeros ({_pct(n_zero, n_rows)} of rows) "
                               f"while its other values are all positive, from {lo:.4g} (median {median:.4g}): "
                               f"zeros that stand apart like this are often missing values coded as 0",
                               float(n_zero)))
    if p.n_nan or p.n_inf:
        bad = p.n_nan + p.n_inf
        out.append(DataWarning("nan_inf", p.name, f"{name} has {p.n_nan:,} NaN and {p.n_inf:,} infinite values "
                               f"({_pct(bad, n_rows)} of rows)", float(bad)))
    if n_out:
        lo, hi = fence
        out.append(DataWarning("outliers", p.name, f"{name} has {n_out:,} outliers outside [{lo:.4g}, {hi:.4g}] "
                               f"(3 IQR beyond the quartiles), {_pct(n_out, p.n)} of values", float(n_out)))
    return out


# -- target checks: imbalance and leakage ------------------------------------------------------------

def _train(rid: str) -> str:
    # The held-out split for the leakage estimate: a fixed hash of the row id, so it is the same every time.
    return f"hash({rid}) % 2 = 0"


def _task_from(db, col: _Col, n_distinct: int, exact: bool) -> str:
    if col.treat != "numeric":
        return "classification"
    if not exact and 10 < n_distinct < 40:  # a sketch near the threshold: count exactly
        return task_of(db, col.name)
    return "regression" if n_distinct >= REGRESSION_MIN_DISTINCT else "classification"


def _target_checks(db, tcol, tprof, task, cols, by_name, edges, id_like, n_rows, notes) -> list[DataWarning]:
    # ID-like columns are left out: on held-out rows they score like the majority guess anyway, unless the
    # file is sorted by the target, and then it is the row order, not the column, that leaks.
    features = [(c, by_name[c.name], _leak_key(c, by_name[c.name], edges.get(c.name))) for c in cols
                if c.name != tcol.name and c.name not in id_like and _leak_candidate(c, by_name[c.name])]
    if task == "classification":
        if tprof.n_distinct > MAX_CLASSES:
            notes.append(f"target {tcol.name!r} has {tprof.n_distinct:,} classes: no imbalance or leakage check")
            return []
        return _classification_checks(db, tcol, features, n_rows)
    return _regression_checks(db, tcol, tprof, features, n_rows)


def _leak_candidate(c: _Col, p: ColumnProfile) -> bool:
    if p.n_distinct < 2:
        return False
    if c.treat == "numeric":
        return bool(p.quantiles) or p.n_distinct <= LEAK_BINS
    # A feature with a value per row or two cannot generalize to held-out rows; skip its big GROUP BY.
    return c.treat in ("categorical", "boolean") and p.n_distinct <= 0.5 * p.n


def _leak_key(c: _Col, p: ColumnProfile, qs: list | None) -> tuple[str, list | None]:
    """(a DOUBLE to look up by, the bin edges to cut it at or None): numbers are cut into quantile bins, other
    values are looked up by their hash (as DOUBLE so that all features unpivot together)."""
    if c.treat != "numeric" or p.n_distinct <= LEAK_BINS or not qs:
        return f"CASE WHEN {c.q} IS NOT NULL THEN CAST(hash({c.v}) AS DOUBLE) END", None
    return c.x, sorted({float(v) for v in qs if v is not None and math.isfinite(v)})


def _classification_checks(db, tcol, features, n_rows) -> list[DataWarning]:
    rid = quote_ident(ROW_ID)
    fin = f" AND isfinite({tcol.q})" if tcol.is_float else ""
    where = f"{tcol.q} IS NOT NULL{fin}"
    classes = db.rows(f"SELECT y, count(*) AS n, count_if(tr) AS n_tr FROM "
                      f"(SELECT {tcol.v} AS y, {_train(rid)} AS tr FROM data WHERE {where}) "
                      f"GROUP BY y ORDER BY n_tr DESC, y")
    out = []
    if len(classes) >= 2:
        counts = sorted(((int(n), y) for y, n, _ in classes), key=lambda t: -t[0])
        (n_max, y_max), (n_min, y_min) = counts[0], counts[-1]
        total = sum(n for n, _ in counts)
        ratio = n_max / n_min
        if ratio >= 5 or n_min / total < 0.05:
            out.append(DataWarning(
                "imbalance", tcol.name,
                f"target {_show(tcol.name)} is imbalanced: {_show(y_max)} has {n_max:,} rows, {_show(y_min)} "
                f"{n_min:,} (ratio {ratio:.1f}, minority {_pct(n_min, total)})", ratio))
    n_test = sum(int(n) - int(n_tr) for _, n, n_tr in classes)
    if len(classes) < 2 or n_test < LEAK_MIN_TEST or not features:
        return out
    majority = classes[0][0]  # the most frequent class on the training half
    base = (int(classes[0][1]) - int(classes[0][2])) / n_test

    correct = _leak_scores(db, features, n_rows, "classification", tcol, where, majority)
    for c, _, _ in features:
        acc = correct.get(c.name, 0.0) / n_test
        # Nearly perfect alone, and at most half the error of always guessing the majority class.
        if acc >= 0.95 and (1 - acc) <= 0.5 * (1 - base):
            out.append(DataWarning(
                "leakage", c.name,
                f"{_show(c.name)} alone predicts {_show(tcol.name)} with {acc:.1%} held-out accuracy "
                f"(majority class: {base:.1%}): a very strong feature or a leak; check it is not derived from the "
                "target", acc))
    return out


def _regression_checks(db, tcol, tprof, features, n_rows) -> list[DataWarning]:
    rid = quote_ident(ROW_ID)
    if tprof.mean is None or not features:
        return []
    where = f"isfinite({tcol.x})"
    center = float(tprof.mean)  # a centred target keeps the sums of squares precise
    n_tr, s_tr, n_te, s_te, q_te = db.rows(
        f"SELECT count_if(tr), sum(y) FILTER (WHERE tr), count_if(NOT tr), sum(y) FILTER (WHERE NOT tr), "
        f"sum(y * y) FILTER (WHERE NOT tr) FROM (SELECT {_train(rid)} AS tr, {tcol.x} - ? AS y "
        f"FROM data WHERE {where})", [center])[0]
    if not n_tr or not n_te or n_te < LEAK_MIN_TEST:
        return []
    sst = q_te - s_te * s_te / n_te
    if sst <= 0:
        return []
    sse = _leak_scores(db, features, n_rows, "regression", tcol, where, s_tr / n_tr, center=center)
    out = []
    for c, _, _ in features:
        if c.name in sse:
            r2 = 1 - sse[c.name] / sst
            if r2 >= 0.95:
                out.append(DataWarning(
                    "leakage", c.name,
                    f"{_show(c.name)} alone predicts {_show(tcol.name)} with held-out R² {r2:.3f}: a very "
                    "strong feature or a leak; check it is not derived from the target", r2))
    return out


def _leak_scores(db, features, n_rows, task, tcol, where, fallback, center=0.0) -> dict[str, float]:
    """Per feature: held-out correct predictions (classification) or squared error (regression) of a lookup
    table fitted on the training half, per value or per quantile bin of the feature.

    Features are unpivoted into (feature, key) rows so one GROUP BY serves hundreds of them. A key seen in
    training predicts its most frequent class (mean target) there; an unseen key the fallback: the training
    majority class (mean).
    """
    rid = quote_ident(ROW_ID)
    short = n_rows <= LONG_MAX_ROWS

    def cost(f) -> float:
        keys = f[1].n_distinct if f[2][1] is None else LEAK_BINS + 1  # groups it adds to the GROUP BY
        return max(2 * n_rows / QUERY_BUDGET, n_rows / LONG_CELLS if short else 0.0, keys / DISTINCT_BUDGET)

    out: dict[str, float] = {}
    for chunk in _chunks(features, cost, LONG_MAX_COLUMNS):
        names = ", ".join(f'"{i}"' for i in range(len(chunk)))
        y = f"{tcol.v} AS y" if task == "classification" else f"{tcol.x} - ? AS y"
        head = [] if task == "classification" else [center]
        if short:
            # Bin after unpivoting: one expression for all features. A CASE per feature costs ~1 ms each to
            # set up, which dominated on thousands of columns.
            inner = ", ".join(f'{expr} AS "{i}"' for i, (_, _, (expr, _)) in enumerate(chunk))
            u = (f"SELECT tr, y, f, CASE WHEN v IS NULL OR cuts IS NULL THEN v "
                 f"ELSE len(list_filter(cuts, lambda e: e <= v)) END AS k "
                 f"FROM (SELECT * FROM (SELECT {_train(rid)} AS tr, {y}, {inner} FROM data WHERE {where}) "
                 f"UNPIVOT INCLUDE NULLS (v FOR f IN ({names}))) "
                 f"JOIN (SELECT unnest(?::VARCHAR[]) AS f, unnest(?::DOUBLE[][]) AS cuts) USING (f)")
            params = head + [[str(i) for i in range(len(chunk))], [cuts for _, _, (_, cuts) in chunk]]
        else:
            # Few features on many rows: bin each in the projection, then unpivot the keys.
            keys, params = [], list(head)
            for i, (c, _, (expr, cuts)) in enumerate(chunk):
                if cuts is None:
                    keys.append(f'{expr} AS "{i}"')
                else:
                    whens = " ".join(f"WHEN {expr} < ? THEN {j}" for j in range(len(cuts)))
                    keys.append(f'CAST(CASE WHEN {expr} IS NULL THEN NULL {whens} ELSE {len(cuts)} END AS DOUBLE) '
                                f'AS "{i}"')
                    params += cuts
            u = (f"SELECT * FROM (SELECT {_train(rid)} AS tr, {y}, {', '.join(keys)} FROM data WHERE {where}) "
                 f"UNPIVOT INCLUDE NULLS (k FOR f IN ({names}))")
        if task == "classification":
            sql = (f"WITH g AS (SELECT f, k, y, count_if(tr) AS n_tr, count_if(NOT tr) AS n_te FROM ({u}) "
                   f"GROUP BY f, k, y), "
                   f"r AS (SELECT f, y, n_te, row_number() OVER w AS rn, max(n_tr) OVER w AS best FROM g "
                   f"WINDOW w AS (PARTITION BY f, k ORDER BY n_tr DESC, y)) "
                   f"SELECT f, sum(CASE WHEN best > 0 THEN (CASE WHEN rn = 1 THEN n_te ELSE 0 END) "
                   f"WHEN y = ? THEN n_te ELSE 0 END) FROM r GROUP BY f")
        else:
            sql = (f"WITH g AS (SELECT f, k, count_if(tr) AS n_tr, sum(y) FILTER (WHERE tr) AS s_tr, "
                   f"count_if(NOT tr) AS n_te, coalesce(sum(y) FILTER (WHERE NOT tr), 0) AS s_te, "
                   f"coalesce(sum(y * y) FILTER (WHERE NOT tr), 0) AS q_te FROM ({u}) GROUP BY f, k) "
                   f"SELECT f, sum(q_te - 2 * m * s_te + n_te * m * m) FROM "
                   f"(SELECT *, CASE WHEN n_tr > 0 THEN s_tr / n_tr ELSE ? END AS m FROM g) GROUP BY f")
        for f, value in db.rows(sql, params + [fallback]):
            out[chunk[int(f)][0].name] = float(value or 0)
    return out


# -- task, histograms, value counts, feature vs target -----------------------------------------------

def task_of(db: DatasetDB, target: str) -> str:
    """"classification", or "regression" for a numeric target with more than 20 distinct values."""
    col = _column(db, target)
    if col.treat != "numeric":
        return "classification"
    fin = f" FILTER (WHERE isfinite({col.x}))"
    # A sketch first (cheap on 10M rows); count exactly only when it lands near the threshold.
    d = int(db.rows(f"SELECT approx_count_distinct({col.x}){fin} FROM data")[0][0])
    if 10 < d < 40:
        d = int(db.rows(f"SELECT count(DISTINCT {col.x}){fin} FROM data")[0][0])
    return "regression" if d >= REGRESSION_MIN_DISTINCT else "classification"


def value_counts(db: DatasetDB, column: str, k: int = 20) -> pd.DataFrame:
    """The k most frequent values: columns [value, count], most frequent first (ties by value).

    attrs: n_missing, n_other (non-missing rows outside the top k), n_distinct.
    """
    col = _column(db, column)
    return _value_counts(db, col, k)


def _value_counts(db, col: _Col, k: int, where: str = "TRUE", params: list | tuple = ()) -> pd.DataFrame:
    # One scan: the NULL group rides along in the GROUP BY and window sums give the totals.
    rows = db.rows(
        f"SELECT v, n, total, missing, groups FROM (SELECT v, count(*) AS n, "
        f"sum(CASE WHEN v IS NOT NULL THEN count(*) END) OVER () AS total, "
        f"sum(CASE WHEN v IS NULL THEN count(*) END) OVER () AS missing, count(v) OVER () AS groups "
        f"FROM (SELECT {col.v} AS v FROM data WHERE {where}) GROUP BY v) "
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
    col = _column(db, column)
    if col.treat in ("categorical", "boolean"):
        df = _value_counts(db, col, 20)
        if df.attrs["n_other"] > 0:
            attrs = df.attrs
            df = pd.concat([df.astype({"value": object}),
                            pd.DataFrame({"value": [OTHER], "count": [attrs["n_other"]]})], ignore_index=True)
            df.attrs = attrs
        return df
    return _bins(db, col, bins)


def _range(db, col: _Col, where: str, params: list) -> dict:
    """Rows outside any bin (missing, NaN, inf) and the finite min and max of col.x."""
    lo, hi, n_values, n_all = db.rows(f"SELECT min({col.x}), max({col.x}), count({col.x}), count(*) FROM data "
                                      f"WHERE {where}", params)[0]
    # min and max alone are cheap (no filter to evaluate). A NaN makes max NaN and an inf shows up as min or max,
    # so finite ends mean every value is finite; only otherwise count NaN and inf and look again.
    if lo is None or (math.isfinite(lo) and math.isfinite(hi)):
        return {"n_missing": n_all - n_values, "n_nan": 0, "n_inf": 0, "lo": lo, "hi": hi, "n_finite": n_values}
    n_nan, n_inf, lo, hi = db.rows(
        f"SELECT count_if(isnan(v)), count_if(isinf(v)), min(v) FILTER (WHERE isfinite(v)), "
        f"max(v) FILTER (WHERE isfinite(v)) FROM (SELECT {col.x} AS v FROM data WHERE {where})", params)[0]
    return {"n_missing": n_all - n_values, "n_nan": n_nan, "n_inf": n_inf, "lo": lo, "hi": hi,
            "n_finite": n_values - n_nan - n_inf}


def _bin_counts(db, col: _Col, r: dict, grid: tuple, where: str = "TRUE", params: list = (), by: str = "NULL",
                by_params: list = ()) -> dict[tuple, int]:
    """Rows per (group, bin): the group is the SQL `by` (NULL: one group), the bin comes from grid."""
    start, width, last = grid
    fin = f" AND isfinite({col.x})" if r["n_nan"] or r["n_inf"] else ""  # no filter when all are finite: faster
    # Multiply by the inverse width and floor; the max lands on index last + 1 and is folded into the last bin.
    rows = db.rows(f"SELECT g, b, count(*) FROM (SELECT {by} AS g, CAST(floor(({col.x} - ?) * ?) AS INTEGER) AS b "
                   f"FROM data WHERE ({where}){fin} AND {col.x} IS NOT NULL) GROUP BY g, b",
                   list(by_params) + [start, 1.0 / width] + list(params))
    counts: dict[tuple, int] = {}
    for g, b, n in rows:
        key = (g, min(max(int(b), 0), last))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _bins(db, col: _Col, bins: int) -> pd.DataFrame:
    r = _range(db, col, "TRUE", [])
    if not r["n_finite"]:
        df = pd.DataFrame({"bin_start": pd.Series(dtype=float), "bin_end": pd.Series(dtype=float),
                           "count": pd.Series(dtype="int64")})
    else:
        grid = _bin_grid(r["lo"], r["hi"], bins, col.x_is_int)
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


def _as_datetimes(df: pd.DataFrame, col: _Col) -> pd.DataFrame:
    if col.treat == "datetime":
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
    fcol, tcol = _column(db, feature), _column(db, target)
    binned = fcol.treat in ("numeric", "datetime", "text")
    if task == "regression":
        if tcol.treat != "numeric":
            raise BadInput(f"{target!r} is not numeric, so it cannot be a regression target")
        return _regression_relation(db, fcol, tcol, binned)

    where = f"{tcol.q} IS NOT NULL"
    classes = _value_counts(db, tcol, 10)["value"].tolist()
    cls, cls_params = _pooled(tcol, classes)
    if binned:
        r = _range(db, fcol, where, [])
        if not r["n_finite"]:
            return pd.DataFrame(columns=["class", "bin_start", "bin_end", "count"])
        grid = _bin_grid(r["lo"], r["hi"], 30, fcol.x_is_int)
        raw = _bin_counts(db, fcol, r, grid, where, by=cls, by_params=cls_params)
        counts = {(_label(c), b): n for (c, b), n in raw.items()}
        starts, ends = _edges(r["lo"], r["hi"], grid)
        labels = _labels(classes, any(c is None for c, _ in raw))
        df = pd.DataFrame([(c, s, e, counts.get((c, i), 0)) for c in labels
                           for i, (s, e) in enumerate(zip(starts, ends))],
                          columns=["class", "bin_start", "bin_end", "count"])
        return _as_datetimes(df, fcol)
    values = _value_counts(db, fcol, 20, where)["value"].tolist()
    val, val_params = _pooled(fcol, values)
    rows = db.rows(f"SELECT c, v, count(*) FROM (SELECT {cls} AS c, {val} AS v FROM data "
                   f"WHERE {where} AND {fcol.q} IS NOT NULL) GROUP BY c, v", cls_params + val_params)
    counts = {(_label(c), _label(v)): int(n) for c, v, n in rows}
    labels = _labels(classes, any(c is None for c, _, _ in rows))
    vlabels = _labels(values, any(v is None for _, v, _ in rows))
    return pd.DataFrame([(c, v, counts.get((c, v), 0)) for c in labels for v in vlabels],
                        columns=["class", "value", "count"])


def _pooled(col: _Col, keep: list) -> tuple[str, list]:
    """SQL for col's value when among keep, else NULL (= "(other)"); the kept values are bound parameters."""
    if not keep:
        return "NULL", []
    return f"CASE WHEN {col.v} IN ({', '.join('?' for _ in keep)}) THEN {col.v} END", list(keep)


def _label(v) -> str:
    return OTHER if v is None else str(v)


def _labels(values: list, other: bool) -> list[str]:
    return [_label(v) for v in values] + ([OTHER] if other else [])


def _regression_relation(db, fcol: _Col, tcol: _Col, binned: bool) -> pd.DataFrame:
    y = tcol.x
    where = f"isfinite({y})"
    n = int(db.rows(f"SELECT count(*) FILTER (WHERE {where}) FROM data")[0][0])
    qfn = "quantile_cont" if n <= EXACT_MAX_ROWS else "approx_quantile"
    stats = f"count(*), avg(y), {qfn}(y, 0.25), {qfn}(y, 0.75)"
    if binned:
        qlist = "[" + ", ".join(str(q) for q in QUANTILES) + "]"
        cuts = db.rows(f"SELECT {qfn}({fcol.x}, {qlist}) FROM data WHERE {where} AND isfinite({fcol.x})")[0][0]
        cols = ["bin_start", "bin_end", "count", "mean", "q25", "q75"]
        if not cuts:
            return pd.DataFrame(columns=cols)
        cuts = sorted({float(c) for c in cuts})
        whens = " ".join(f"WHEN {fcol.x} < ? THEN {i}" for i in range(len(cuts)))
        rows = db.rows(f"SELECT b, min(x), max(x), {stats} FROM (SELECT CASE {whens} ELSE {len(cuts)} END AS b, "
                       f"{fcol.x} AS x, {y} AS y FROM data WHERE {where} AND isfinite({fcol.x})) GROUP BY b ORDER BY b",
                       cuts)
        df = pd.DataFrame([r[1:] for r in rows], columns=cols).astype({"count": "int64"})
        return _as_datetimes(df, fcol)
    values = _value_counts(db, fcol, 20, where)["value"].tolist()
    val, val_params = _pooled(fcol, values)
    rows = db.rows(f"SELECT v, {stats} FROM (SELECT {val} AS v, {y} AS y FROM data "
                   f"WHERE {where} AND {fcol.q} IS NOT NULL) GROUP BY v", val_params)
    order = {v: i for i, v in enumerate(_labels(values, True))}
    out = sorted(((_label(r[0]),) + tuple(r[1:]) for r in rows), key=lambda r: order[r[0]])
    return pd.DataFrame(out, columns=["value", "count", "mean", "q25", "q75"]).astype({"count": "int64"})


# -- presenting a profile ---------------------------------------------------------------------------------

def profile_table(prof: Profile) -> pd.DataFrame:
    """One row per column for display; min, max and top values as text (their types differ by column)."""
    rows = []
    for p in prof.columns:
        rows.append({
            "column": p.name, "type": p.dtype, "kind": p.kind, "count": p.n, "missing": p.n_missing,
            "missing_share": p.n_missing / prof.n_rows if prof.n_rows else 0.0, "distinct": p.n_distinct,
            "min": _text(p.min), "max": _text(p.max), "mean": p.mean, "std": p.std,
            **{k: p.quantiles.get(k) for k in _QI},
            "top_values": ", ".join(f"{_text(v)} ({n:,})" for v, n in p.top_values),
            "mean_length": p.mean_length, "nan": p.n_nan, "inf": p.n_inf,
        })
    return pd.DataFrame(rows)


def as_json(prof: Profile) -> dict:
    """A JSON-safe dict (for the CLI): values that JSON cannot hold become text or null."""
    def cell(v):
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        return str(v)

    return {
        "n_rows": prof.n_rows, "seconds": round(prof.seconds, 3), "approximate": prof.approximate, "task": prof.task,
        "columns": [{
            "name": p.name, "type": p.kind, "dtype": p.dtype, "n": p.n, "n_missing": p.n_missing,
            "n_distinct": p.n_distinct, "min": cell(p.min), "max": cell(p.max), "mean": cell(p.mean),
            "std": cell(p.std), "quantiles": {k: cell(v) for k, v in p.quantiles.items()},
            "top_values": [[cell(v), n] for v, n in p.top_values], "n_nan": p.n_nan, "n_inf": p.n_inf,
            "mean_length": cell(p.mean_length),
        } for p in prof.columns],
        "warnings": [{"kind": w.kind, "column": w.column, "message": w.message, "value": cell(w.value)}
                     for w in prof.warnings],
        "notes": list(prof.notes),
    }


def _float(v) -> float | None:
    return None if v is None else float(v)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _text(v) -> str:
    return "" if v is None else str(v)


def _show(v, limit: int = 40) -> str:
    """A value or name quoted for a one-line message, cut to a readable length."""
    text = repr(v) if isinstance(v, str) else str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
