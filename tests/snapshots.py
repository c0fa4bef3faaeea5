"""Datasets made by hand for the data and store tests, without the ingest: a snapshot written from SQL or from
columns and opened, a catalog record, and what a profile warned about."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recipe_core.config import Settings
from recipe_core.data.db import DatasetDB
from recipe_core.data.records import Column, DatasetRecord
from recipe_core.data.snapshot import ROW_ID


# -- a snapshot from SQL (the query tests) --------------------------------------------------------------------
def _sql_kind(dtype: str) -> str:
    if dtype == "BOOLEAN":
        return "boolean"
    if dtype == "VARCHAR":
        return "categorical"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return "datetime"
    return "numeric"


def make_db(home: Path, select_sql: str, name: str = "t", kinds: dict | None = None,
            **settings) -> DatasetDB:
    """Write `select_sql` (whose first column is __row_id) as a snapshot and open it."""
    s = Settings(home=home, store_url="sqlite://", max_upload_bytes=10**9, **settings)
    s.snapshots_dir.mkdir(parents=True, exist_ok=True)
    path = s.snapshots_dir / f"{name}.parquet"
    con = duckdb.connect()
    con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 100000)")
    described = con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()
    n_rows = con.execute(f"SELECT count(*) FROM '{path}'").fetchone()[0]
    con.close()
    assert described[0][0] == ROW_ID
    kinds = kinds or {}
    columns = tuple(Column(n, t, kinds.get(n, _sql_kind(t))) for n, t, *_ in described[1:])
    record = DatasetRecord(id=name, name=name, source_name=f"{name}.csv", fmt="csv", n_rows=n_rows,
                           columns=columns, snapshot=f"{name}.parquet")
    return DatasetDB(s, record)


# -- a snapshot from columns (the profile tests: conftest's `make` fixture) ----------------------------------
def _column_kind(dtype: str, values) -> str:
    if dtype == "BOOLEAN":
        return "boolean"
    if dtype.startswith(("TIMESTAMP", "DATE")):
        return "datetime"
    if dtype == "VARCHAR":
        s = pd.Series(values, dtype=object).dropna()
        small = s.nunique() <= max(20, 0.05 * len(values)) and (s.str.len().mean() if len(s) else 0) < 40
        return "categorical" if small else "text"
    return "numeric"


def columns_db(settings: Settings, columns: dict, kinds: dict | None = None, name: str = "t") -> DatasetDB:
    """Write `columns` (name -> values or a pyarrow array) as a snapshot with __row_id first, and open it."""
    n = len(next(iter(columns.values())))
    # pa.array keeps NaN as NaN (only None becomes NULL), like a CSV with "nan" in it.
    arrays = {ROW_ID: pa.array(np.arange(n, dtype=np.int64))}
    arrays.update({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    path = settings.snapshots_dir / f"{name}.parquet"
    pq.write_table(pa.table(arrays), path, row_group_size=100_000, compression="zstd")
    types = {r[0]: r[1] for r in duckdb.connect().execute("DESCRIBE SELECT * FROM read_parquet(?)",
                                                          [str(path)]).fetchall()}
    cols = tuple(Column(k, types[k], (kinds or {}).get(k) or _column_kind(types[k], v)) for k, v in columns.items())
    record = DatasetRecord(id=name, name=name, source_name=f"{name}.csv", fmt="csv", n_rows=n, columns=cols,
                           snapshot=path.name)
    return DatasetDB(settings, record)


def kinds_of(prof, kind):
    return [w for w in prof.warnings if w.kind == kind]


def warned(prof, kind, column):
    return any(w.kind == kind and w.column == column for w in prof.warnings)


# -- a catalog record (the store tests) -----------------------------------------------------------------------
def record(dataset_id="a1b2c3d4e5f60718", name="iris", **kw):
    cols = (Column("petal length", "DOUBLE", "numeric"), Column("species", "VARCHAR", "categorical"))
    return DatasetRecord(dataset_id, name, "iris.csv", "csv", 150, cols, f"{dataset_id}.parquet", **kw)
