"""Writing the snapshot: one COPY of the source to Parquet that checks every value on the way, re-read with wider
types when a guess from the sample proves wrong."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from recipe_core.config import Settings
from recipe_core.data import csv_reader
from recipe_core.data.limits import cell_cap, check_width, over_cap, row_cap
from recipe_core.data.readers import read_error, scan_all_json
from recipe_core.data.source import KEEP_TYPES, Source, nested
from recipe_core.data.sql import quote_ident, quote_literal
from recipe_core.errors import BadInput

ROW_GROUP_SIZE = 100_000  # row-id ranges then prune whole row groups (fast deep pages)
COMPRESSION = "snappy"  # measured: zstd (level 1) made ingest ~25% slower for ~30% smaller files
CELL_MARK = "recipe-cell:"  # marks our own error for a value over settings.max_cell_bytes


def write_snapshot(con, src: Source, tmp: Path, settings: Settings) -> int:
    """COPY the source to Parquet, checking every text value's size on the way and stopping one row past the
    row and cell caps (a CSV of 500M short lines is refused after 20M, not written whole); a CSV is re-read
    when a type guess proves wrong."""
    check_width(len(src.names), settings)
    cap = row_cap(settings, len(src.names))
    # A LIMIT makes DuckDB write serially (measured, 5M-row CSV: 8.3-11.7 s, against 5.2-6.8 s without), so it
    # is there only when the file may hold more rows than the cap.
    limit = f"LIMIT {cap + 1}" if src.row_bound is None or src.row_bound > cap else ""
    for _ in range(len(src.names) + 3):  # each retry widens a column, or changes encoding or line limit once
        sql = (
            f"COPY (SELECT {_size_checked(src, settings)} FROM ({stored_rows_sql(src)} {limit})) "
            f"TO {quote_literal(str(tmp))} "
            f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE}, COMPRESSION {COMPRESSION})"
        )
        try:
            n_rows = int(con.execute(sql).fetchone()[0])
        except duckdb.InterruptException:
            raise  # stopped on purpose (the bytes are registered already): nothing to retry or to report
        except duckdb.Error as e:
            msg = str(e)
            too_big = re.search(CELL_MARK + r"(\d+)", msg)
            if too_big:
                name = src.names[int(too_big.group(1)) - 1]
                raise BadInput(f"column {name!r} has a value larger than {cell_cap(settings)}") from None
            if src.csv is not None:
                retry = csv_reader.reread(src, msg)
            else:  # a JSON record beyond the sample did not fit its types (e.g. a new key)
                try:
                    retry = scan_all_json(con, src)
                except duckdb.Error as again:
                    raise read_error(again, src) from None
            if not retry:
                raise read_error(e, src) from None
        else:
            if n_rows > cap:
                raise BadInput(over_cap(settings, len(src.names)))
            return n_rows
    raise BadInput("could not settle the column types of the file")


def stored_rows_sql(src: Source) -> str:
    """The rows as the snapshot stores them, before the size checks (which only ever stop the COPY)."""
    return f"SELECT {_select_list(src)} FROM {src.from_sql}"


def text_columns(src: Source) -> list[str]:
    """The columns the snapshot stores as text: text ones, and those of a type the app does not handle."""
    pairs = zip(src.names, src.types, strict=True)
    return [name for name, dtype in pairs if dtype == "VARCHAR" or not KEEP_TYPES.match(dtype)]


def _select_list(src: Source) -> str:
    parts = []  # no row id column: see snapshot.ROW_ID
    for i, (name, dtype) in enumerate(zip(src.names, src.types, strict=True), start=1):
        if src.check_integers and dtype == "BIGINT":
            expr = csv_reader.checked_integer(f"#{i}", i, exact=i - 1 in src.exact)
        else:
            expr = _stored(f"#{i}", dtype)
        parts.append(f"{expr} AS {quote_ident(name)}")
    return ", ".join(parts)


def _stored(expr: str, dtype: str) -> str:
    """Types the app does not handle are kept as text (nested values as JSON text)."""
    if KEEP_TYPES.match(dtype):
        return expr
    if nested(dtype):
        return f"CAST(to_json({expr}) AS VARCHAR)"
    return f"CAST({expr} AS VARCHAR)"


def _size_checked(src: Source, settings: Settings) -> str:
    """The stored columns, each text one stopped with a marked error when a value is over the cell cap
    (strlen of a DuckDB string is its stored length: no scan)."""
    parts = []
    for i, (name, dtype) in enumerate(zip(src.names, src.types, strict=True), start=1):
        col = quote_ident(name)
        if KEEP_TYPES.match(dtype) and dtype != "VARCHAR":
            parts.append(col)  # numbers, dates and booleans have a fixed size
        else:
            parts.append(f"CASE WHEN strlen({col}) > {settings.max_cell_bytes} THEN error('{CELL_MARK}{i}') "
                         f"ELSE {col} END AS {col}")
    return ", ".join(parts)

