"""Rows of a dataset as a person browses them: counts, pages at any depth (file order, sorted, a seeded sample),
one row in full, whole columns for training, a column's extremes, and the CSV export of every matching row."""
from __future__ import annotations

import time
from dataclasses import dataclass
from numbers import Integral
from typing import Iterator

import pandas as pd

from recipe_core import csv_export
from recipe_core.data.db import DatasetDB
from recipe_core.data.filters import MAX_LIMIT, RowQuery, check_column, check_page_query, is_whole_number, predicate
from recipe_core.data.snapshot import ROW_ID
from recipe_core.data.sql import quote_ident
from recipe_core.data.types import FLOAT_TYPES, INT_TYPES, TIMESTAMP_TYPES, is_numeric
from recipe_core.errors import NotFound, QueryRejected

MAX_CELL_CHARS = 500  # page() shows at most this many characters of a string; row() gives it whole


@dataclass(frozen=True)
class Page:
    rows: pd.DataFrame  # index = row id (named "__row_id"), columns = user columns; long strings truncated
    n_total: int  # rows matching filters/where/search
    seconds: float


# -- pages -------------------------------------------------------------------------------------------------
def count(db: DatasetDB, q: RowQuery) -> int:
    pred, params = predicate(db, q)
    return _count(db, pred, params)


def _count(db: DatasetDB, pred: str, params: list) -> int:
    if not pred:
        return db.n_rows
    key = _count_key(pred, params)
    n = db.memo.count(key)
    if n is None:
        n = int(db.rows(f"SELECT count(*) FROM data WHERE {pred}", params)[0][0])
        db.memo.set_count(key, n)
    return n


def page(db: DatasetDB, q: RowQuery) -> Page:
    """One page of matching rows: file order, sorted, or a seeded random sample."""
    start = time.perf_counter()
    check_page_query(db, q)
    pred, params = predicate(db, q)
    limit, offset = int(q.limit), int(q.offset)
    ids = None
    if q.search.strip() and offset + limit <= ONE_SCAN_MAX and db.memo.count(_count_key(pred, params)) is None:
        ids, n_total = _first_ids_and_count(db, q, pred, params, offset + limit)
        ids = ids[offset:]
    else:
        n_total = _count(db, pred, params)
    if n_total == 0 or offset >= n_total:
        rows = _empty_rows(db)
    elif q.sample_seed is not None:
        rows = _fetch(db, ids if ids is not None else _sample_ids(db, pred, params, q.sample_seed, limit, offset))
        # The sample is shown in file order, or sorted as asked.
        if q.sort is None or q.sort == ROW_ID:
            rows = rows.sort_index(ascending=not q.descending)
        else:
            rows = rows.sort_values(q.sort, ascending=not q.descending, na_position="last", kind="stable")
    elif (q.sort is None or q.sort == ROW_ID) and not pred:
        # Row ids are 0..n-1 in file order: a page is an id range, which prunes to one or two row groups.
        lo = n_total - offset - limit if q.descending else offset
        rows = _file_range(db, max(lo, 0), min(lo + limit, n_total) - max(lo, 0))
        rows = rows.iloc[::-1] if q.descending else rows
    elif ids is not None:
        rows = _fetch(db, ids)
    elif q.sort is None or q.sort == ROW_ID:
        rows = _fetch(db, _file_order_ids(db, pred, params, limit, offset, q.descending, n_total))
    else:
        rows = _fetch(db, _sorted_ids(db, pred, params, q.sort, q.descending, limit, offset))
    return Page(rows=rows, n_total=n_total, seconds=time.perf_counter() - start)


# A search must read every text value of every row: on 10M rows that scan costs seconds. For the first pages of
# a new search, one scan yields both the count and the page (a bounded arg_min/arg_max list) instead of two.
ONE_SCAN_MAX = 1000


def _first_ids_and_count(db: DatasetDB, q: RowQuery, pred: str, params: list, k: int) -> tuple[list[int], int]:
    """The first k matching row ids in the page's order, and the number of matches, in one scan."""
    rid = quote_ident(ROW_ID)
    extra: list = []
    if q.sample_seed is not None:
        pick = f"arg_min({rid}, {{'h': hash({rid}, ?), 'r': {rid}}}, ?)"
        extra = [int(q.sample_seed)]
    elif q.sort is None or q.sort == ROW_ID:
        pick = f"arg_max({rid}, {rid}, ?)" if q.descending else f"arg_min({rid}, {rid}, ?)"
    else:
        # The same order as ORDER BY col NULLS LAST, row id (checked against ORDER BY in the tests).
        col = quote_ident(q.sort)
        pick = (f"arg_max({rid}, {{'m': {col} IS NOT NULL, 'v': {col}, 'r': -{rid}}}, ?)" if q.descending
                else f"arg_min({rid}, {{'m': {col} IS NULL, 'v': {col}, 'r': {rid}}}, ?)")
    # Parameter order: the ones inside the aggregate come before those of the WHERE.
    n, ids = db.rows(f"SELECT count(*), {pick} FROM data WHERE {pred}", [*extra, k, *params])[0]
    db.memo.set_count(_count_key(pred, params), int(n))
    return [int(i) for i in (ids or [])], int(n)


def _count_key(pred: str, params: list) -> tuple:
    return ("count", pred, _freeze(params))


def _freeze(params: list) -> tuple:
    return tuple((type(p).__name__, p) for p in params)


def _display_columns(db: DatasetDB) -> str:
    """User columns with long strings cut in SQL, so a 10 MB cell never reaches pandas for a page."""
    parts = [quote_ident(ROW_ID)]
    for c in db.columns:
        q = quote_ident(c)
        if db.types.get(c) == "VARCHAR":
            parts.append(f"CASE WHEN length({q}) > {MAX_CELL_CHARS} THEN left({q}, {MAX_CELL_CHARS}) || '…' "
                         f"ELSE {q} END AS {q}")
        else:
            parts.append(q)
    return ", ".join(parts)


def _indexed(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index(ROW_ID)


def _empty_rows(db: DatasetDB) -> pd.DataFrame:
    return _indexed(db.df(f"SELECT {_display_columns(db)} FROM data LIMIT 0"))


def _file_range(db: DatasetDB, offset: int, limit: int) -> pd.DataFrame:
    sql = (f"SELECT {_display_columns(db)} FROM data WHERE {quote_ident(ROW_ID)} >= ? AND {quote_ident(ROW_ID)} < ? "
           f"ORDER BY {quote_ident(ROW_ID)}")
    return _indexed(db.df(sql, [offset, offset + limit]))


def _fetch(db: DatasetDB, ids: list[int]) -> pd.DataFrame:
    """Late materialization: the page's rows by id, in the order of ids."""
    if not ids:
        return _empty_rows(db)
    rid = quote_ident(ROW_ID)
    # The BETWEEN lets DuckDB skip every row group outside the page's id range before it looks at the list.
    sql = (f"SELECT {_display_columns(db)} FROM data WHERE {rid} BETWEEN ? AND ? "
           f"AND {rid} IN ({', '.join(str(int(i)) for i in ids)})")
    return _indexed(db.df(sql, [min(ids), max(ids)])).reindex(ids)


def _sample_ids(db: DatasetDB, pred: str, params: list, seed: int, limit: int, offset: int) -> list[int]:
    # A seeded shuffle: hash(row id, seed) is the same on every machine and any thread count.
    where = f"WHERE {pred}" if pred else ""
    rid = quote_ident(ROW_ID)
    sql = f"SELECT {rid} FROM data {where} ORDER BY hash({rid}, ?), {rid} LIMIT ? OFFSET ?"
    return [r[0] for r in db.rows(sql, [*params, int(seed), limit, offset])]


def _file_order_ids(db: DatasetDB, pred: str, params: list, limit: int, offset: int, descending: bool,
                    n_total: int) -> list[int]:
    """Matching row ids in file order. Keyset: start from the nearest row id already known for this query."""
    rid = quote_ident(ROW_ID)
    if descending:  # file order backwards = file order forwards from the other end
        first = max(0, n_total - offset - limit)
        ids = _file_order_ids(db, pred, params, n_total - offset - first, first, False, n_total)
        return ids[::-1]
    key = ("file", pred, _freeze(params))
    anchor = db.memo.anchor(key, offset)
    base_offset, min_id = anchor if anchor else (0, 0)
    where = f"WHERE {pred}" + (f" AND {rid} >= ?" if min_id else "")
    extra = [min_id] if min_id else []
    # No ORDER BY: DuckDB keeps file order without it (insertion order is preserved) and the scan stops as
    # soon as the page is full, where ORDER BY ... LIMIT would have to read every matching row.
    sql = f"SELECT {rid} FROM data {where} LIMIT ? OFFSET ?"
    ids = [r[0] for r in db.rows(sql, [*params, *extra, limit, offset - base_offset])]
    if ids:
        db.memo.add_anchor(key, offset, ids[0])
        db.memo.add_anchor(key, offset + len(ids), ids[-1] + 1)
    return ids


# Sort values that survive the trip to Python and back as a parameter exactly (not TIMESTAMP_NS, lists, ...).
_KEYSET_TYPES = INT_TYPES | FLOAT_TYPES | {"VARCHAR", "BOOLEAN", "DATE"} | (TIMESTAMP_TYPES - {"TIMESTAMP_NS"})


def _sorted_ids(db: DatasetDB, pred: str, params: list, sort: str, descending: bool, limit: int,
                offset: int) -> list[int]:
    """Matching row ids ordered by a column (NULLs last, ties by row id).

    Only the row id and the sort column are read here; the rest of the page is fetched by id afterwards.
    A deep page starts from the nearest page boundary already seen for this query (keyset), so paging on
    from page k costs one page, not k.
    """
    rid, col = quote_ident(ROW_ID), quote_ident(sort)
    direction = "DESC" if descending else "ASC"
    keyset = db.types[sort] in _KEYSET_TYPES or db.types[sort].startswith("DECIMAL")
    key = ("sorted", pred, _freeze(params), sort, descending)
    anchor = db.memo.anchor(key, offset) if keyset else None
    conds, extra, base = ([pred] if pred else []), [], 0
    if anchor:
        base, (value, row_id) = anchor
        if value is None:
            conds.append(f"({col} IS NULL AND {rid} >= ?)")
            extra = [row_id]
        else:
            beyond = "<" if descending else ">"
            conds.append(f"({col} {beyond} ? OR ({col} = ? AND {rid} >= ?) OR {col} IS NULL)")
            extra = [value, value, row_id]
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    sql = (f"SELECT {rid}, {col} FROM data {where} ORDER BY {col} {direction} NULLS LAST, {rid} "
           f"LIMIT ? OFFSET ?")
    found = db.rows(sql, [*params, *extra, limit, offset - base])
    if found and keyset:
        db.memo.add_anchor(key, offset, (found[0][1], found[0][0]))
        db.memo.add_anchor(key, offset + len(found) - 1, (found[-1][1], found[-1][0]))
    return [r[0] for r in found]


def row(db: DatasetDB, row_id: int) -> dict:
    """Every value of one row, in full (no truncation)."""
    text = str(row_id).strip()
    whole = isinstance(row_id, Integral) or (text.isascii() and text.isdigit())  # isascii: "²" fails int()
    if isinstance(row_id, bool) or not whole or not 0 <= int(text) < 2**63:
        raise NotFound(f"no row {text[:40]!r} in dataset {db.record.name!r}")
    rid = int(text)
    cols = ", ".join(quote_ident(c) for c in db.columns)
    found = db.rows(f"SELECT {cols} FROM data WHERE {quote_ident(ROW_ID)} = ?", [rid])
    if not found:
        raise NotFound(f"no row {rid} in dataset {db.record.name!r}")
    return dict(zip(db.columns, found[0], strict=True))


def columns_frame(db: DatasetDB, columns: list[str]) -> pd.DataFrame:
    """Whole columns as the view shows them (kind overrides applied), indexed by row id: what training reads."""
    for name in columns:
        check_column(db, name, "column")
    select = ", ".join([quote_ident(ROW_ID)] + [quote_ident(c) for c in columns])
    return _indexed(db.df(f"SELECT {select} FROM data ORDER BY {quote_ident(ROW_ID)}"))


def extremes(db: DatasetDB, column: str, n: int = 10, largest: bool = True) -> pd.DataFrame:
    """The n rows with the largest (or smallest) values of a column; missing values (and NaN) left out."""
    if column not in db.columns:
        raise NotFound(f"dataset {db.record.name!r} has no column {column!r}")
    if not is_whole_number(n):
        raise QueryRejected(f"the number of extremes must be a whole number, not {str(n)[:40]!r}")
    n = max(1, min(n, MAX_LIMIT))
    col, rid = quote_ident(column), quote_ident(ROW_ID)
    cond = f"{col} IS NOT NULL" + (f" AND NOT isnan({col})" if db.types[column] in FLOAT_TYPES else "")
    sql = f"SELECT {rid} FROM data WHERE {cond} ORDER BY {col} {'DESC' if largest else 'ASC'}, {rid} LIMIT ?"
    ids = [r[0] for r in db.rows(sql, [n])]
    return _fetch(db, ids)


# -- CSV export ----------------------------------------------------------------------------------------------
def _export_columns(db: DatasetDB) -> str:
    """Numbers and booleans as they are; everything else as text (which the CSV writer neutralizes)."""
    parts = []
    for c in db.columns:
        q, dtype = quote_ident(c), db.types.get(c, "VARCHAR")
        if is_numeric(dtype) or dtype in ("BOOLEAN", "VARCHAR"):
            parts.append(q)
        else:
            parts.append(f"CAST({q} AS VARCHAR) AS {q}")
    return ", ".join(parts)


def iter_csv(db: DatasetDB, q: RowQuery) -> Iterator[bytes]:
    """Every matching row (no limit) as CSV, in chunks, so a large export never sits in pandas at once."""
    if q.sort is not None:
        check_column(db, q.sort, "sort")
    pred, params = predicate(db, q)
    where = f"WHERE {pred}" if pred else ""
    rid = quote_ident(ROW_ID)
    # Every matching row (a sample's seed and the page limit do not apply), in the chosen order.
    if q.sort is not None and q.sort != ROW_ID:
        order = f"ORDER BY {quote_ident(q.sort)} {'DESC' if q.descending else 'ASC'} NULLS LAST, {rid}"
    elif q.descending:
        order = f"ORDER BY {rid} DESC"
    else:
        order = ""  # file order is kept without sorting
    sql = f"SELECT {_export_columns(db)} FROM data {where} {order}"
    yield from csv_export.batches_csv(db.columns, db.batches(sql, params))


def export_csv(db: DatasetDB, q: RowQuery) -> bytes:
    """All matching rows (no limit) as CSV; cells starting with = + - @ are neutralized (prefix ')."""
    return b"".join(iter_csv(db, q))
