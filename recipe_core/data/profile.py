"""The profile of a dataset: one summary per column and the data-quality warnings (with the target's, when given),
all computed in DuckDB, many columns per query; only small summaries reach pandas."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd

from recipe_core.data import sizing
from recipe_core.data.column_stats import (
    QUANTILE_INDEX,
    ColumnProfile,
    column_profile,
    column_stats,
    outlier_counts,
    outlier_fences,
    top_values,
)
from recipe_core.data.columns import column_view, column_views
from recipe_core.data.db import DatasetDB
from recipe_core.data.quality import (
    DataWarning,
    column_warnings,
    is_id_like,
    is_unique,
    missing_values_warning,
    name_like_columns,
    percent,
    zeros_apart,
)
from recipe_core.data.target import target_checks, task_from
from recipe_core.errors import NotFound, QueryFailed


@dataclass(frozen=True)
class Profile:
    n_rows: int
    columns: list[ColumnProfile]
    warnings: list[DataWarning]
    seconds: float
    approximate: bool = False  # distinct counts and quantiles are sketches (more than sizing.EXACT_MAX_ROWS rows)
    task: str | None = None  # of the target, when one was given
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise NotFound(f"the profile has no column {name!r}")


def profile(db: DatasetDB, target: str | None = None) -> Profile:
    """One ColumnProfile per user column, and the data-quality warnings (with the target's, when given)."""
    start = time.perf_counter()
    cols = column_views(db)
    tcol = column_view(db, target) if target is not None else None
    n_rows = db.n_rows
    exact = n_rows <= sizing.EXACT_MAX_ROWS
    notes: list[str] = []
    # Pass 1: counts, distincts, moments, quantiles, lengths, duplicate rows.
    stats, n_dup = column_stats(db, cols, exact, notes)

    # Pass 2: top values and outlier counts (both need pass 1's numbers).
    tops = top_values(db, cols, stats, n_rows, exact)
    fences = {c.name: f for c in cols
              if c.treatment == "numeric" and (f := outlier_fences(stats[c.name])) is not None}
    n_out = outlier_counts(db, [c for c in cols if c.name in fences], fences, n_rows)

    profiles = [column_profile(c, stats[c.name], tops.get(c.name, []), n_rows) for c in cols]
    by_name = {p.name: p for p in profiles}
    pairs = list(zip(cols, profiles, strict=True))
    names = name_like_columns(db, [c for c, p in pairs if is_unique(p, n_rows, exact) and c.dtype == "VARCHAR"
                                   and stats[c.name].get("spaces")])
    id_like = {c.name for c, p in pairs if is_id_like(c, p, stats[c.name], n_rows, exact, c.name in names)}
    zeros = zeros_apart(db, [c for c, p in pairs if c.treatment == "numeric" and p.min == 0 and p.n_distinct > 3],
                        n_rows, exact)

    warnings: list[DataWarning] = []
    if n_dup:
        warnings.append(DataWarning("duplicates", None, f"{n_dup:,} exact duplicate rows ({percent(n_dup, n_rows)})",
                                    float(n_dup)))
    warnings += missing_values_warning(profiles)
    task = None
    if tcol is not None:
        tprof = by_name[tcol.name]
        task = task_from(db, tcol, tprof.n_distinct, exact)
        edges = {name: st["q"] for name, st in stats.items() if st.get("q")}
        try:
            warnings += target_checks(db, tcol, tprof, task, cols, by_name, edges, id_like, n_rows, notes)
        except QueryFailed as e:
            notes.append(f"target checks not run: {e}")
    for c, p in pairs:
        warnings += column_warnings(p, n_rows, c.name in id_like, n_out.get(c.name), fences.get(c.name),
                                    zeros.get(c.name), c.name in names)
    return Profile(n_rows=n_rows, columns=profiles, warnings=warnings, seconds=time.perf_counter() - start,
                   approximate=not exact, task=task, notes=notes)


# -- presenting a profile ---------------------------------------------------------------------------------
def profile_table(prof: Profile) -> pd.DataFrame:
    """One row per column for display; min, max and top values as text (their types differ by column)."""
    rows = []
    for p in prof.columns:
        rows.append({
            "column": p.name, "type": p.dtype, "kind": p.kind, "count": p.n, "missing": p.n_missing,
            "missing_share": p.n_missing / prof.n_rows if prof.n_rows else 0.0, "distinct": p.n_distinct,
            "min": _as_text(p.min), "max": _as_text(p.max), "mean": p.mean, "std": p.std,
            **{k: p.quantiles.get(k) for k in QUANTILE_INDEX},
            "top_values": ", ".join(f"{_as_text(v)} ({n:,})" for v, n in p.top_values),
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


def _as_text(v) -> str:
    return "" if v is None else str(v)
