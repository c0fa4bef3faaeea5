"""What a person asks of a dataset's rows (filters, an expert WHERE, a search, a sort, a page) and the SQL predicate
it makes. User values reach SQL only as bound parameters, column names only as quoted identifiers checked against
the schema, and an expert WHERE only after where.validate_where.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from numbers import Integral

from recipe_core.data.db import DatasetDB
from recipe_core.data.snapshot import ROW_ID
from recipe_core.data.sql import quote_ident
from recipe_core.data.types import TIMESTAMP_TYPES, is_numeric
from recipe_core.data.where import validate_where
from recipe_core.errors import QueryRejected

OPS = ("=", "!=", "<", "<=", ">", ">=", "contains", "starts with", "is missing", "is not missing")
MAX_SEARCH_CHARS = 10_000  # a search text or filter value (the page allows 1,000)
FILTER_VALUES = (str, int, float, Decimal, date, datetime, type(None))  # what a filter value may be (bool is an int)
MAX_LIMIT = 10_000  # rows per page; the UI shows 50


@dataclass(frozen=True)
class Filter:
    column: str
    op: str  # one of OPS
    value: str | float | int | None = None  # typed by the user as text; coerced to the column's type, bound


@dataclass(frozen=True)
class RowQuery:
    filters: tuple[Filter, ...] = ()
    where: str = ""  # expert WHERE box; validated by validate_where
    search: str = ""  # free text, case-insensitive substring over VARCHAR columns
    sort: str | None = None  # a column name (checked against the schema) or None = file order
    descending: bool = False
    limit: int = 50
    offset: int = 0  # page * limit; fast at any depth
    sample_seed: int | None = None  # random-sample mode: a seeded shuffle of the matching rows instead of a page


def check_column(db: DatasetDB, name: str, what: str) -> str:
    """name, when the view has such a column; else QueryRejected naming what asked for it."""
    if name not in db.types:
        raise QueryRejected(f"{what}: no column {name!r} in dataset {db.record.name!r}")
    return name


def coerce_value(value, dtype: str, column: str):
    """The typed text of a filter value as a Python value of the column's type (bound as a parameter)."""
    if isinstance(value, str):
        text = value.strip()
    else:
        text = value
    if text is None or text == "":
        raise QueryRejected(f"the filter on {column!r} needs a value")
    if is_numeric(dtype):
        if isinstance(text, bool):
            return int(text)
        if isinstance(text, int):
            return text if abs(text) < 2**63 else float(text)  # beyond BIGINT, as for typed text below
        if isinstance(text, (float, Decimal)):
            return text
        try:
            number = int(text)
            # Beyond BIGINT DuckDB cannot bind a Python int; as a float it still compares correctly.
            return number if abs(number) < 2**63 else float(number)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise QueryRejected(f"{value!r} is not a number (column {column!r} is numeric)") from None
    if dtype == "BOOLEAN":
        if isinstance(text, bool):
            return text
        word = str(text).lower()
        if word in ("true", "t", "yes", "y", "1"):
            return True
        if word in ("false", "f", "no", "n", "0"):
            return False
        raise QueryRejected(f"{value!r} is not true or false (column {column!r} is boolean)")
    if dtype == "DATE":
        try:
            return date.fromisoformat(str(text))
        except ValueError:
            raise QueryRejected(f"{value!r} is not a date like 2024-01-31 (column {column!r})") from None
    if dtype in TIMESTAMP_TYPES:
        try:
            return datetime.fromisoformat(str(text))
        except ValueError:
            raise QueryRejected(
                f"{value!r} is not a date and time like 2024-01-31 13:45:00 (column {column!r})") from None
    return str(text)


def _filter_sql(db: DatasetDB, f: Filter) -> tuple[str, list]:
    col = check_column(db, f.column, "filter")
    if f.op not in OPS:
        raise QueryRejected(f"unknown filter operator {f.op!r}; use one of: {', '.join(OPS)}")
    q = quote_ident(col)
    dtype = db.types[col]
    if f.op == "is missing":
        return f"{q} IS NULL", []
    if f.op == "is not missing":
        return f"{q} IS NOT NULL", []
    if f.op in ("contains", "starts with"):
        if f.value is None or str(f.value) == "":
            raise QueryRejected(f"the filter on {col!r} needs a value")
        text = q if dtype == "VARCHAR" else f"CAST({q} AS VARCHAR)"
        fn = "contains" if f.op == "contains" else "starts_with"
        return f"{fn}(lower({text}), ?)", [str(f.value).lower()]
    value = coerce_value(f.value, dtype, col)
    if isinstance(value, str) and dtype != "VARCHAR":  # lists, structs, blobs...: compare their text
        return f"CAST({q} AS VARCHAR) {f.op} ?", [value]
    if dtype in TIMESTAMP_TYPES and dtype != "TIMESTAMP":
        return f"{q} {f.op} CAST(? AS {dtype})", [value.isoformat(sep=" ")]
    return f"{q} {f.op} ?", [value]


# How search matches text, case-insensitively. bench/browse.py --search-methods on 10M rows (2 cores):
# contains(lower(col), needle) 2.1-3.4 s, ILIKE 2.3-4.8 s, regexp_matches with (?i) 3.6-7.5 s.
SEARCH_METHOD = "lower"


def _search_sql(db: DatasetDB, text: str) -> tuple[str, list]:
    cols = [c for c in db.columns if db.types.get(c) == "VARCHAR"]
    if not cols:
        raise QueryRejected("this dataset has no text columns to search; use a filter instead")
    if text.lower() == text.upper():
        # No letters: case cannot matter, and contains() is a plain (fast) substring scan.
        return "(" + " OR ".join(f"contains({quote_ident(c)}, ?)" for c in cols) + ")", [text] * len(cols)
    if SEARCH_METHOD == "ilike":
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        parts = [f"{quote_ident(c)} ILIKE ? ESCAPE '\\'" for c in cols]
        return "(" + " OR ".join(parts) + ")", [pattern] * len(cols)
    if SEARCH_METHOD == "regexp":
        pattern = "(?i)" + _re2_literal(text)
        return "(" + " OR ".join(f"regexp_matches({quote_ident(c)}, ?)" for c in cols) + ")", [pattern] * len(cols)
    return "(" + " OR ".join(f"contains(lower({quote_ident(c)}), ?)" for c in cols) + ")", [text.lower()] * len(cols)


def _re2_literal(text: str) -> str:
    return "".join("\\" + ch if ch in "\\.+*?()|[]{}^$" else ch for ch in text)


def _check_fields(q: RowQuery) -> None:
    """A RowQuery also comes from scripts (the API, the CLI): a value of the wrong type or size is one line."""
    for name in ("limit", "offset"):
        value = getattr(q, name)
        if not is_whole_number(value) or value >= 2**62:
            raise QueryRejected(f"{name} must be a whole number, not {str(value)[:40]!r}")
        if value < 0:
            raise QueryRejected(f"the page {name} must not be negative ({value})")
    if q.sample_seed is not None and (not is_whole_number(q.sample_seed) or not 0 <= q.sample_seed < 2**63):
        raise QueryRejected(f"the sample seed must be a whole number from 0, not {str(q.sample_seed)[:40]!r}")
    for name in ("where", "search"):
        if not isinstance(getattr(q, name), str):
            raise QueryRejected(f"{name} must be text, not {type(getattr(q, name)).__name__}")
    if len(q.search) > MAX_SEARCH_CHARS:
        raise QueryRejected(f"the search text is too long ({len(q.search):,} characters, at most {MAX_SEARCH_CHARS:,})")
    if not (q.sort is None or isinstance(q.sort, str)) or not isinstance(q.descending, bool):
        raise QueryRejected("sort must be a column name (or None) and descending true or false")
    if not isinstance(q.filters, (tuple, list)) or not all(isinstance(f, Filter) for f in q.filters):
        raise QueryRejected("filters must be a list of Filter(column, op, value)")
    for f in q.filters:
        if not isinstance(f.column, str) or not isinstance(f.op, str) or not isinstance(f.value, FILTER_VALUES):
            raise QueryRejected(f"a filter takes a column name, an operator and a text or number value, not "
                                f"{type(f.value).__name__}")
        if isinstance(f.value, str) and len(f.value) > MAX_SEARCH_CHARS:
            raise QueryRejected(f"a filter value has at most {MAX_SEARCH_CHARS:,} characters")


def is_whole_number(value) -> bool:
    """An int (or numpy integer), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def predicate(db: DatasetDB, q: RowQuery) -> tuple[str, list]:
    """The WHERE of a RowQuery as SQL and its parameters; "" when it matches every row."""
    _check_fields(q)
    parts, params = [], []
    for f in q.filters:
        sql, p = _filter_sql(db, f)
        parts.append(sql)
        params += p
    if q.where.strip():
        parts.append("(" + validate_where(q.where, [ROW_ID, *db.columns]) + ")")
    if q.search.strip():
        sql, p = _search_sql(db, q.search.strip())
        parts.append(sql)
        params += p
    return " AND ".join(parts), params


def check_page_query(db: DatasetDB, q: RowQuery) -> None:
    """Everything a page needs checked before a query runs: the fields, the sort column, the page size."""
    if q.sort is not None and q.sort != ROW_ID:
        check_column(db, q.sort, "sort")
    _check_fields(q)
    if not 1 <= q.limit <= MAX_LIMIT:
        raise QueryRejected(f"rows per page must be between 1 and {MAX_LIMIT:,}, not {q.limit}")

