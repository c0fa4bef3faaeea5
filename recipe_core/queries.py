"""DuckDB over one dataset snapshot, on a locked-down connection: rows, filters, search, sort, pages.

Every user-influenced query in the app runs here. User values reach SQL only as bound parameters, column names
only as quoted identifiers checked against the schema, and an expert WHERE only after validate_where.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import duckdb
import pandas as pd

from recipe_core.config import Settings
from recipe_core.errors import NotFound, QueryFailed
from recipe_core.snapshot import ROW_ID, snapshot_path
from recipe_core.store import DatasetRecord


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DatasetDB:
    """A locked-down DuckDB connection over one snapshot, with a view named data (kind overrides applied)."""

    def __init__(self, settings: Settings, record: DatasetRecord):
        self.settings = settings
        self.record = record
        self.columns = record.column_names
        path = snapshot_path(settings, record)
        if not path.exists():
            raise NotFound(f"the snapshot of dataset {record.name!r} is missing")
        con = duckdb.connect(
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": settings.duckdb_memory_limit,
                "threads": settings.duckdb_threads,
            }
        )
        # DuckDB accepts allowed_paths only while external access is still on, hence this order.
        con.execute(f"SET allowed_paths=[{_sql_string(str(path))}]")
        con.execute("SET enable_external_access=false")
        con.execute(f"CREATE VIEW data AS SELECT {_view_columns(record)} FROM read_parquet({_sql_string(str(path))})")
        con.execute("SET lock_configuration=true")
        self._con = con
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _cursor(self):
        # A cursor per query: safe to use from several Streamlit sessions' threads at once.
        with self._lock:
            cur = self._con.cursor()
        timer = threading.Timer(self.settings.query_timeout_s, cur.interrupt)
        timer.start()
        try:
            yield cur
        except duckdb.InterruptException:
            raise QueryFailed(
                f"the query took longer than {self.settings.query_timeout_s:g} s and was stopped"
            ) from None
        except duckdb.OutOfMemoryException:
            raise QueryFailed("the query needed more memory than allowed; narrow it down") from None
        except duckdb.Error as e:
            raise QueryFailed(f"the query failed: {_first_line(e)}") from None
        finally:
            timer.cancel()
            cur.close()

    def df(self, sql: str, params: list | tuple = ()) -> pd.DataFrame:
        """Run one statement over the view `data`; the result must be small (a page, a summary)."""
        with self._cursor() as cur:
            return cur.execute(sql, list(params)).df()

    def rows(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        with self._cursor() as cur:
            return cur.execute(sql, list(params)).fetchall()

    def timed_df(self, sql: str, params: list | tuple = ()) -> tuple[pd.DataFrame, float]:
        start = time.perf_counter()
        out = self.df(sql, params)
        return out, time.perf_counter() - start


def _view_columns(record: DatasetRecord) -> str:
    """Apply the user's kind overrides; the snapshot keeps its stored types."""
    casts = {"numeric": "DOUBLE", "datetime": "TIMESTAMP", "boolean": "BOOLEAN"}
    parts = [quote_ident(ROW_ID)]
    for col in record.columns:
        q = quote_ident(col.name)
        target = casts.get(col.kind)
        if col.dtype == "VARCHAR" and target is not None:
            parts.append(f"TRY_CAST({q} AS {target}) AS {q}")
        else:
            parts.append(q)
    return ", ".join(parts)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
