"""A locked-down DuckDB connection over one dataset snapshot, with a view named data (kind overrides applied), and
its memo of counts and page anchors."""
from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from typing import Iterator

import pandas as pd
import pyarrow as pa

from recipe_core.config import Settings
from recipe_core.data import in_process, worker
from recipe_core.data.records import DatasetRecord
from recipe_core.data.snapshot import FILE_ROW_NUMBER, ROW_ID, snapshot_path
from recipe_core.data.sql import lockdown, locked_config, quote_ident, quote_literal
from recipe_core.errors import NotFound, QueryFailed

EXPORT_BATCH_ROWS = 50_000  # rows per Arrow batch while writing a CSV export


class DatasetDB:
    """A locked-down DuckDB connection over one snapshot, with a view named data (kind overrides applied).

    isolated (the default on the server): the queries run in a worker process whose memory and time are bounded
    (worker.py), shared by every DatasetDB of this dataset and view in this process. A process that is bounded
    itself reads on its own connection instead (isolated=False, or settings.queries_in_process): a training job,
    whose whole columns need not cross a pipe, and a CLI command, which skips a worker's start-up (~0.5 s).
    """

    def __init__(self, settings: Settings, record: DatasetRecord, isolated: bool | None = None):
        self.settings = settings
        self.record = record
        self.columns = record.column_names
        path = snapshot_path(settings, record)
        if not path.exists():
            raise NotFound(f"the snapshot of dataset {record.name!r} is missing")
        # Spill under RECIPE_HOME, not into a ".tmp" folder in whatever directory the server started in.
        config = locked_config(memory_limit=settings.duckdb_memory_limit, threads=settings.duckdb_threads,
                               temp_directory=str(settings.home / "duckdb_tmp"))
        setup = lockdown(allowed_paths=[str(path)], prepare=[
            # The snapshot never changes, so its footer (row-group statistics) can be parsed once, not per query:
            # a page in file order on 10M rows drops from ~60 to ~30 ms. GLOBAL: a plain SET of this option is
            # session-local and would not reach the per-query cursors.
            "SET GLOBAL parquet_metadata_cache=true",
            f"CREATE VIEW data AS SELECT {view_columns(record)} FROM {snapshot_scan(path)}",
        ])
        timeout = settings.query_timeout_s
        isolated = not settings.queries_in_process if isolated is None else isolated
        self._con = (worker.shared_worker(config, setup, timeout, settings.query_memory_bytes) if isolated
                     else in_process.InProcess(config, setup, timeout))
        # Types as the view shows them (after kind overrides): filters coerce values to these.
        self.types = {name: dtype for name, dtype, *_ in self.rows("DESCRIBE data")}
        self.n_rows = int(self.rows("SELECT count(*) FROM data")[0][0])  # from the Parquet footer
        self.memo = Memo()  # counts and page anchors; valid forever because the snapshot is immutable

    def close(self) -> None:
        """Let go of the connection (a shared worker ends with its last holder)."""
        if isinstance(self._con, in_process.InProcess):
            self._con.close()
        self._con = _Closed()

    def df(self, sql: str, params: list | tuple = ()) -> pd.DataFrame:
        """Run one statement over the view `data`; the result must be small (a page, a summary)."""
        return self._con.df(sql, list(params))

    def rows(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        return self._con.rows(sql, list(params))

    def batches(self, sql: str, params: list | tuple = (), batch_rows: int = EXPORT_BATCH_ROWS
                ) -> Iterator[pa.RecordBatch]:
        """Stream a large result as Arrow batches; the timeout limits the work per batch, not the whole."""
        return self._con.batches(sql, list(params), batch_rows)


class _Closed:
    def __getattr__(self, name):
        raise QueryFailed("the dataset's connection was closed")


def snapshot_scan(path) -> str:
    """The table function that reads a snapshot, numbering its rows (see snapshot.ROW_ID)."""
    return f"read_parquet({quote_literal(str(path))}, {FILE_ROW_NUMBER}=true)"


def view_columns(record: DatasetRecord) -> str:
    """Apply the user's kind overrides; the snapshot keeps its stored types."""
    casts = {"numeric": "DOUBLE", "datetime": "TIMESTAMP", "boolean": "BOOLEAN"}
    parts = [f"{FILE_ROW_NUMBER} AS {quote_ident(ROW_ID)}"]
    for col in record.columns:
        q = quote_ident(col.name)
        target = casts.get(col.kind)
        if col.dtype == "VARCHAR" and target is not None:
            parts.append(f"TRY_CAST({q} AS {target}) AS {q}")
        else:
            parts.append(q)
    return ", ".join(parts)


class Memo:
    """Small bounded caches per connection: match counts, and page anchors for keyset paging."""

    def __init__(self, max_keys: int = 256):
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._counts: OrderedDict = OrderedDict()
        self._anchors: OrderedDict = OrderedDict()  # key -> sorted list of (offset, anchor)

    def count(self, key):
        with self._lock:
            return self._counts.get(key)

    def set_count(self, key, n: int) -> None:
        with self._lock:
            _put_bounded(self._counts, key, n, self.max_keys)

    def anchor(self, key, offset: int):
        """The known anchor at the largest offset <= offset, as (offset, anchor), or None."""
        with self._lock:
            found = self._anchors.get(key)
            if not found:
                return None
            i = bisect.bisect_right(found, offset, key=lambda a: a[0]) - 1
            return found[i] if i >= 0 else None

    def add_anchor(self, key, offset: int, anchor) -> None:
        with self._lock:
            found = self._anchors.get(key)
            if found is None:
                found = []
                _put_bounded(self._anchors, key, found, self.max_keys)
            i = bisect.bisect_left(found, offset, key=lambda a: a[0])
            if i < len(found) and found[i][0] == offset:
                return
            if len(found) < 10_000:
                found.insert(i, (offset, anchor))

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._anchors.clear()


def _put_bounded(cache: OrderedDict, key, value, max_keys: int) -> None:
    """Set key, and drop the least recently set keys beyond max_keys."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > max_keys:
        cache.popitem(last=False)
