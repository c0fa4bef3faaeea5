"""The data-quality warnings on columns: missing values, constant, mostly missing, ID-like, zeros that stand apart,
NaN and infinite values, outliers."""
from __future__ import annotations

import re
from dataclasses import dataclass

from recipe_core.data import sizing
from recipe_core.data.column_stats import ColumnProfile
from recipe_core.data.columns import ColumnView, unpivot

MIN_ROWS_ID = 20  # on tiny tables every column is unique; do not call that an ID
NAME_MAX_SPACES = 2.0  # unique strings of at most ~3 words on average are names of the rows (IDs), not prose
NAME_MAX_LENGTH = 40.0  # ... and this many characters on average
ZERO_MIN_POSITIVE = 5  # positive values needed before zeros can be told apart from them
ZERO_STEPS = 10  # the smallest distinct positive values whose mean gap is a column's step near 0
ZERO_SMALLEST = 200  # smallest positive values fetched to find them (ties included)
ZERO_APART = 3.0  # zeros stand apart when the smallest positive value is more than this many steps above 0
ZERO_MIN_SHARE = 0.2  # ... and at least this share of the positive values' median
MISSING_SHOWN = 10  # columns listed by name in the missing-values warning
ID_MAX_SPREAD = 10  # an unnamed integer ID spans at most this many times as many values as it has
_ID_NAME = re.compile(r"(?i)^(id|uuid|guid|key|index)$|[_\s.-](id|uuid|guid|key)$|[a-z]I[Dd]$")


@dataclass(frozen=True)
class DataWarning:
    kind: str  # duplicates, missing_values, constant, missing, id_like, zeros, nan_inf, imbalance, outliers, leakage
    column: str | None
    message: str  # one line with its numbers
    value: float  # the main number: a count, a share, a ratio or a score (see each check)


def is_unique(p: ColumnProfile, n_rows: int, exact: bool) -> bool:
    """Every row has its own value (within a sketch's error on large data)."""
    return p.n > 0 and (p.n_distinct == n_rows if exact else p.n_distinct >= 0.97 * n_rows)  # HLL: within a few %


def is_id_like(c: ColumnView, p: ColumnProfile, s: dict, n_rows: int, exact: bool, name_like: bool = False) -> bool:
    """Integer or code-like string columns whose every value differs (or named like an ID, mostly distinct).

    Strings with spaces are prose, not codes (unique free text is normal), unless they are as short as names:
    a car model or a person's name per row names the row, like an ID does."""
    prose = s.get("spaces") and not name_like
    if not (c.is_int or c.dtype == "VARCHAR") or n_rows < MIN_ROWS_ID or p.n == 0 or prose:
        return False
    named = bool(_ID_NAME.search(c.name)) and p.n_distinct >= 0.5 * p.n
    if named:
        return True
    # Unique integers spread far apart are counts or amounts (votes per district, prices), which a small table
    # holds once each; row numbers and codes are dense. A sparse ID is caught by its name.
    lo, hi = s.get("min"), s.get("max")
    sparse = c.is_int and lo is not None and hi is not None and hi - lo + 1 > ID_MAX_SPREAD * max(p.n_distinct, 1)
    return is_unique(p, n_rows, exact) and not sparse


def name_like_columns(db, cols: list[ColumnView]) -> set[str]:
    """Those of these text columns whose values are short like names: a few words, a few dozen characters."""
    out: set[str] = set()
    for chunk in sizing.chunks(cols, lambda c: 2 * max(db.n_rows, 1) / sizing.QUERY_BUDGET, sizing.MAX_COLUMNS):
        parts = [f"avg(length({c.ident}) - length(replace({c.ident}, ' ', ''))), avg(length({c.ident}))"
                 for c in chunk]
        row = db.rows("SELECT " + ", ".join(parts) + " FROM data")[0]
        for i, c in enumerate(chunk):
            spaces, length = row[2 * i], row[2 * i + 1]
            if spaces is not None and spaces <= NAME_MAX_SPACES and length <= NAME_MAX_LENGTH:
                out.add(c.name)
    return out


def zeros_apart(db, cols: list[ColumnView], n_rows: int, exact: bool) -> dict[str, tuple]:
    """Numeric columns whose zeros stand apart from otherwise positive values (a length of 0, a blood pressure of 0).

    Returns {column: (n_zero, smallest positive, median positive)} where no value is negative, there are
    ZERO_MIN_POSITIVE positive values or more, and the smallest positive value is both at least ZERO_MIN_SHARE of
    their median and more than ZERO_APART steps above 0, a step being the mean gap between the ZERO_STEPS smallest
    distinct positive values. Counts (0, 1, 2, ...), half stars (0, 0.5, 1, ...) and skewed amounts that reach
    down towards 0 (rain, money, the breast-cancer sample's concavity) keep their zeros."""
    first: dict[str, tuple] = {}
    qfn = "quantile_cont" if exact else "approx_quantile"
    if n_rows <= sizing.LONG_MAX_ROWS:  # short and maybe wide: unpivoted, like the outlier counts
        for chunk in sizing.chunks(cols, lambda c: max(n_rows, 1) / sizing.LONG_CELLS, sizing.LONG_MAX_COLUMNS):
            rows = db.rows(f"SELECT k, count_if(v = 0), count_if(v > 0), "
                           f"min(v, {ZERO_SMALLEST}) FILTER (WHERE v > 0), "
                           f"{qfn}(v, 0.5) FILTER (WHERE v > 0) FROM {unpivot([c.number for c in chunk])} "
                           f"WHERE isfinite(v) GROUP BY k")
            first.update({chunk[int(k)].name: tuple(r) for k, *r in rows})
    else:
        def cost(c: ColumnView) -> float:
            return max(4 * n_rows / sizing.QUERY_BUDGET, n_rows / sizing.EXACT_CELLS if exact else 0.0)

        for chunk in sizing.chunks(cols, cost, sizing.DISTINCT_MAX if exact else sizing.MAX_COLUMNS):
            parts = []
            for c in chunk:  # count_if and CASE, not FILTER (see _stats_sql)
                ok = f"isfinite({c.number}) AND " if c.is_float else ""
                pos = f"CASE WHEN {ok}{c.number} > 0 THEN {c.number} END"
                parts += [f"count_if({c.number} = 0)", f"count_if({ok}{c.number} > 0)",
                          f"min({pos}, {ZERO_SMALLEST})", f"{qfn}({pos}, 0.5)"]
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


def missing_values_warning(profiles: list[ColumnProfile]) -> list[DataWarning]:
    """One line with every column's count of missing values (NULLs), the largest first."""
    gaps = sorted(((p.n_missing, i, p.name) for i, p in enumerate(profiles) if p.n_missing),
                  key=lambda t: (-t[0], t[1]))
    if not gaps:
        return []
    total = sum(n for n, _, _ in gaps)
    listed = ", ".join(f"{shown(name)} {n:,}" for n, _, name in gaps[:MISSING_SHOWN])
    more = f", and {len(gaps) - MISSING_SHOWN:,} more columns" if len(gaps) > MISSING_SHOWN else ""
    return [DataWarning("missing_values", None, f"{total:,} missing {'value' if total == 1 else 'values'} in "
                        f"{len(gaps):,} {'column' if len(gaps) == 1 else 'columns'}: {listed}{more}", float(total))]


def column_warnings(p: ColumnProfile, n_rows, id_like, n_out, fence, zeros=None, name_like=False) -> list[DataWarning]:
    """The warnings on one column, from its profile and what the profile found about it."""
    out = []
    name = shown(p.name)
    if p.n_distinct == 1:
        only = p.top_values[0][0] if p.top_values else p.min
        out.append(DataWarning("constant", p.name, f"{name} is constant: its only value is {shown(only)}"
                               + (f" ({p.n_missing:,} missing)" if p.n_missing else ""), 1.0))
    if n_rows and p.n_missing / n_rows > 0.5:
        out.append(DataWarning("missing", p.name, f"{name} is mostly missing: {p.n_missing:,} of {n_rows:,} rows "
                               f"({percent(p.n_missing, n_rows)})", p.n_missing / n_rows))
    if id_like:
        what = "names each row, like an ID" if name_like else "looks like an ID"
        out.append(DataWarning("id_like", p.name, f"{name} {what}: {p.n_distinct:,} distinct values "
                               f"in {n_rows:,} rows", p.n_distinct / n_rows))
    if zeros:
        n_zero, lo, median = zeros
        out.append(DataWarning("zeros", p.name, f"{name} has {n_zero:,} zeros ({percent(n_zero, n_rows)} of rows) "
                               f"while its other values are all positive, from {lo:.4g} (median {median:.4g}): "
                               f"zeros that stand apart like this are often missing values coded as 0",
                               float(n_zero)))
    if p.n_nan or p.n_inf:
        bad = p.n_nan + p.n_inf
        out.append(DataWarning("nan_inf", p.name, f"{name} has {p.n_nan:,} NaN and {p.n_inf:,} infinite values "
                               f"({percent(bad, n_rows)} of rows)", float(bad)))
    if n_out:
        lo, hi = fence
        out.append(DataWarning("outliers", p.name, f"{name} has {n_out:,} outliers outside [{lo:.4g}, {hi:.4g}] "
                               f"(3 IQR beyond the quartiles), {percent(n_out, p.n)} of values", float(n_out)))
    return out


def percent(part: int, whole: int) -> str:
    """A share as a warning writes it: "12.5%"."""
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def shown(v, limit: int = 40) -> str:
    """A value or name quoted for a one-line message, cut to a readable length."""
    text = repr(v) if isinstance(v, str) else str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
