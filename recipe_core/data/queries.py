"""DuckDB over one dataset snapshot, on a locked-down connection: rows, filters, search, sort, pages.

Every user-influenced query in the app runs here. User values reach SQL only as bound parameters, column names
only as quoted identifiers checked against the schema, and an expert WHERE only after validate_where.
"""
from __future__ import annotations

import bisect
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from numbers import Integral
from typing import Iterator

import duckdb
import pandas as pd
import pyarrow as pa

from recipe_core import csv_export
from recipe_core.config import Settings
from recipe_core.data import query_process
from recipe_core.data.snapshot import FILE_ROW_NUMBER, ROW_ID, snapshot_path
from recipe_core.errors import NotFound, QueryFailed, QueryRejected
from recipe_core.tracking.store import DatasetRecord

OPS = ("=", "!=", "<", "<=", ">", ">=", "contains", "starts with", "is missing", "is not missing")
MAX_CELL_CHARS = 500  # page() shows at most this many characters of a string; row() gives it whole
MAX_WHERE_CHARS = 10_000
MAX_SEARCH_CHARS = 10_000  # a search text or filter value (the page allows 1,000)
FILTER_VALUES = (str, int, float, Decimal, date, datetime, type(None))  # what a filter value may be (bool is an int)
MAX_LIMIT = 10_000  # rows per page; the UI shows 50
EXPORT_BATCH_ROWS = 50_000  # rows per Arrow batch while writing a CSV export

INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
             "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
FLOAT_TYPES = {"FLOAT", "DOUBLE"}
TIMESTAMP_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- the connection ------------------------------------------------------------------------------------------
class DatasetDB:
    """A locked-down DuckDB connection over one snapshot, with a view named data (kind overrides applied).

    isolated (the default, for the server and the CLI): the queries run in a worker process whose memory and
    time are bounded (query_process.py), shared by every DatasetDB of this dataset and view in this process.
    A training job reads its data in its own process instead (isolated=False): it is bounded already, and its
    whole columns need not cross a pipe.
    """

    def __init__(self, settings: Settings, record: DatasetRecord, isolated: bool = True):
        self.settings = settings
        self.record = record
        self.columns = record.column_names
        path = snapshot_path(settings, record)
        if not path.exists():
            raise NotFound(f"the snapshot of dataset {record.name!r} is missing")
        config = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": settings.duckdb_memory_limit,
            "threads": settings.duckdb_threads,
            # Spill under RECIPE_HOME, not into a ".tmp" folder in whatever directory the server started in.
            "temp_directory": str(settings.home / "duckdb_tmp"),
        }
        setup = [
            # DuckDB accepts allowed_paths only while external access is still on, hence this order.
            f"SET allowed_paths=[{quote_literal(str(path))}]",
            "SET enable_external_access=false",
            # The snapshot never changes, so its footer (row-group statistics) can be parsed once, not per query:
            # a page in file order on 10M rows drops from ~60 to ~30 ms. GLOBAL: a plain SET of this option is
            # session-local and would not reach the per-query cursors.
            "SET GLOBAL parquet_metadata_cache=true",
            f"CREATE VIEW data AS SELECT {_view_columns(record)} FROM {snapshot_scan(path)}",
            "SET lock_configuration=true",
        ]
        timeout = settings.query_timeout_s
        self._con = (query_process.shared_worker(config, setup, timeout, settings.query_memory_bytes) if isolated
                     else query_process.InProcess(config, setup, timeout))
        # Types as the view shows them (after kind overrides): filters coerce values to these.
        self.types = {name: dtype for name, dtype, *_ in self.rows("DESCRIBE data")}
        self.n_rows = int(self.rows("SELECT count(*) FROM data")[0][0])  # from the Parquet footer
        self.memo = _Memo()  # counts and page anchors; valid forever because the snapshot is immutable

    def close(self) -> None:
        """Let go of the connection (a shared worker ends with its last holder)."""
        if isinstance(self._con, query_process.InProcess):
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


def _view_columns(record: DatasetRecord) -> str:
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


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class _Memo:
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
            _put(self._counts, key, n, self.max_keys)

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
                _put(self._anchors, key, found, self.max_keys)
            i = bisect.bisect_left(found, offset, key=lambda a: a[0])
            if i < len(found) and found[i][0] == offset:
                return
            if len(found) < 10_000:
                found.insert(i, (offset, anchor))

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._anchors.clear()


def _put(cache: OrderedDict, key, value, max_keys: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > max_keys:
        cache.popitem(last=False)


# -- what the user asks for --------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Page:
    rows: pd.DataFrame  # index = row id (named "__row_id"), columns = user columns; long strings truncated
    n_total: int  # rows matching filters/where/search
    seconds: float


# -- the expert WHERE box ---------------------------------------------------------------------------------
# The expression is parsed by DuckDB itself (json_serialize_sql), so what is checked is exactly what would run.
# Only these expression classes may appear; anything else (SUBQUERY, WINDOW, PARAMETER, STAR, LAMBDA, ...) is
# refused by name.
_ALLOWED_CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "FUNCTION", "CAST",
                    "CASE", "BETWEEN", "TYPE"}
_REFUSED_CLASSES = {
    "SUBQUERY": "subqueries (SELECT, EXISTS, IN (SELECT ...))",
    "PARAMETER": "parameters ($1, ?)",
    "STAR": "* and COLUMNS(...)",
    "WINDOW": "window functions",
    "LAMBDA": "lambda functions",
    "LAMBDA_REF": "lambda functions",
    "COLLATE": "COLLATE",
    "POSITIONAL_REFERENCE": "positional references (#1)",
    "DEFAULT": "DEFAULT",
}
_ALLOWED_OPERATORS = {"OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN", "COMPARE_NOT_IN",
                      "OPERATOR_COALESCE", "ARRAY_EXTRACT", "ARRAY_SLICE", "STRUCT_EXTRACT", "ARRAY_CONSTRUCTOR",
                      "OPERATOR_TRY"}
# The functions a WHERE may call: those whose cost is bounded by their input (output no larger than a cell or the
# expression's own literals, time linear in them). DuckDB's memory_limit does not bound string building: one
# repeat(), lpad() or printf() built 22 GB, and levenshtein() ran past its interrupt. Everything else is refused by
# name. Operators appear here under their own names (`a + b` is the function "+", LIKE is "~~").
_ALLOWED_FUNCTIONS = frozenset("""
    + - * / // % ^ ** @ & | << >> ~ xor
    ~~ !~~ ~~* !~~* ~~~ like_escape not_like_escape ilike_escape not_ilike_escape regexp_matches regexp_full_match
    abs sign round floor ceil ceiling trunc sqrt cbrt exp ln log log2 log10 pow power greatest least
    isnan isinf isfinite even radians degrees sin cos tan asin acos atan atan2 pi
    length len strlen char_length character_length octet_length lower upper lcase ucase trim ltrim rtrim
    contains starts_with ends_with prefix suffix left right substring substr strpos instr position reverse
    split_part hash md5 sha256 nullif if
    date_part datepart year month day hour minute second millisecond microsecond dayofweek dayofmonth dayofyear
    week weekofyear yearweek quarter isodow isoyear epoch epoch_ms date_trunc datetrunc date_diff datediff
    date_sub datesub make_date make_timestamp strftime strptime try_strptime to_timestamp last_day dayname
    monthname now today current_date current_timestamp get_current_timestamp
    to_years to_months to_weeks to_days to_hours to_minutes to_seconds to_milliseconds to_microseconds
    list_value list_contains list_has array_contains array_has array_length
    json_extract json_extract_string json_valid json_type json_exists json_array_length -> ->>
""".split())
_BOUNDED = "only functions of bounded cost are (arithmetic, LIKE, length, lower, contains, round, date parts, ...)"
_WHERE_PREFIX = "SELECT * FROM data WHERE ("
_STATEMENTS = "the WHERE box takes one expression, not statements (no ';', SET, DROP, ...)"
_TOO_DEEP = "the WHERE expression is nested too deeply"
_parser_lock = threading.RLock()
_parser: duckdb.DuckDBPyConnection | None = None
_functions: dict[str, str] = {}  # name -> kind ("scalar", "macro", "aggregate", "table", ...)
_trivial: dict | None = None  # the statement of "SELECT * FROM data WHERE (TRUE)", locations removed


def validate_where(expr: str, columns: list[str]) -> str:
    """Return canonical SQL of a pure expression over `columns`; QueryRejected (one line) for anything else."""
    try:
        return _validate_where(expr, columns)
    except RecursionError:
        raise QueryRejected(_TOO_DEEP) from None


def _validate_where(expr: str, columns: list[str]) -> str:
    expr = expr.strip()
    if not expr:
        return ""
    if len(expr) > MAX_WHERE_CHARS:
        raise QueryRejected(f"the WHERE expression is too long ({len(expr):,} characters, at most {MAX_WHERE_CHARS:,})")
    # The newline ends a trailing "--" comment, so the closing parenthesis always counts.
    try:
        statement = _parse_one(_WHERE_PREFIX + expr + "\n)")
    except QueryRejected as e:
        _diagnose(expr, str(e))
        raise
    _check_shape(statement)
    where = statement["node"]["where_clause"]
    _check_expression(where, columns)
    canonical = _to_sql(statement)
    # The canonical text must parse back to the very same tree: what was checked is what runs.
    again = _parse_one(_WHERE_PREFIX + canonical + ")")["node"]["where_clause"]
    if _strip_locations(again) != _strip_locations(where):
        raise QueryRejected("the WHERE expression could not be checked; simplify it")
    return canonical


def _parser_con() -> duckdb.DuckDBPyConnection:
    global _parser, _trivial
    if _parser is None:
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                     "threads": 1, "memory_limit": "64MB"})
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
        kinds = con.execute("SELECT DISTINCT function_name, function_type FROM duckdb_functions()").fetchall()
        for name, kind in kinds:
            # A name can be both scalar and aggregate (rare); scalar wins because it can be used in WHERE.
            if _functions.get(name) not in ("scalar",):
                _functions[name] = kind
        text = con.execute("SELECT json_serialize_sql(?)", ["SELECT * FROM data WHERE (TRUE)"]).fetchone()[0]
        _trivial = _strip_locations(json.loads(text)["statements"][0])
        _trivial["node"].pop("where_clause")
        _parser = con
    return _parser


def _serialize(sql: str) -> dict:
    with _parser_lock:
        con = _parser_con()
        text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    try:
        return json.loads(text)
    except RecursionError:
        raise QueryRejected(_TOO_DEEP) from None


def _parse_one(sql: str) -> dict:
    try:
        doc = _serialize(sql)
    except duckdb.Error as e:
        raise QueryRejected(f"the WHERE expression does not parse: {_first_line(e)}") from None
    if doc.get("error"):
        message = str(doc.get("error_message", "")).strip().splitlines()[0] if doc.get("error_message") else ""
        if "Only SELECT statements" in message or "only a single statement" in message.lower():
            raise QueryRejected(_STATEMENTS)
        if "expression depth" in message:
            raise QueryRejected(_TOO_DEEP)
        raise QueryRejected(f"the WHERE expression does not parse: {message or 'syntax error'}")
    statements = doc.get("statements") or []
    if len(statements) != 1:
        raise QueryRejected(_STATEMENTS)
    return statements[0]


def _diagnose(expr: str, error: str) -> None:
    """Name what an injection attempt tried, for a clearer message; it is refused either way."""
    if 'near ";"' in error:
        raise QueryRejected(_STATEMENTS)
    try:
        # Without the newline, a "--" swallows our closing parenthesis: this is what the text was written for.
        statement = _parse_one(_WHERE_PREFIX + expr + ")")
    except QueryRejected as e:
        if str(e).startswith(_STATEMENTS):
            raise
        return
    _check_shape(statement)


def _check_shape(statement: dict) -> None:
    """Everything but the WHERE clause must be exactly the trivial SELECT * FROM data."""
    with _parser_lock:
        _parser_con()
    node = statement.get("node") or {}
    if node.get("type") != "SELECT_NODE":
        raise QueryRejected("the WHERE box takes one expression; UNION, EXCEPT and INTERSECT are refused")
    if node.get("where_clause") is None:
        raise QueryRejected("the WHERE box takes one expression")
    if statement.get("named_param_map"):
        raise QueryRejected(f"{_REFUSED_CLASSES['PARAMETER']} are not allowed in a WHERE expression")
    found = _strip_locations(statement)
    found["node"].pop("where_clause")
    if found == _trivial:
        return
    clauses = {"modifiers": "ORDER BY, LIMIT and OFFSET", "cte_map": "WITH", "group_expressions": "GROUP BY",
               "group_sets": "GROUP BY", "having": "HAVING", "qualify": "QUALIFY", "sample": "USING SAMPLE",
               "from_table": "another FROM", "select_list": "another select list",
               "aggregate_handling": "GROUP BY"}
    for key, what in clauses.items():
        if found["node"].get(key) != _trivial["node"].get(key):
            raise QueryRejected(f"the WHERE box takes one expression; {what} is refused")
    raise QueryRejected("the WHERE box takes one expression; anything around it is refused")


def _check_expression(root: dict, columns: list[str]) -> None:
    """Walk the expression tree (iteratively: a deep tree must not exhaust Python's stack)."""
    exact = set(columns)
    folded: dict[str, list[str]] = {}
    for c in columns:
        folded.setdefault(c.lower(), []).append(c)
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class")
        if cls is not None:
            if cls in _REFUSED_CLASSES:
                raise QueryRejected(f"{_REFUSED_CLASSES[cls]} are not allowed in a WHERE expression")
            if cls not in _ALLOWED_CLASSES:
                raise QueryRejected(f"{cls.lower()} expressions are not allowed in a WHERE expression")
            if cls == "COLUMN_REF":
                _resolve_column(node, exact, folded)
            elif cls == "FUNCTION":
                _check_function(node)
            elif cls == "OPERATOR" and node.get("type") not in _ALLOWED_OPERATORS:
                raise QueryRejected(f"the operator {node.get('type')} is not allowed in a WHERE expression")
        elif node.get("type") in ("SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"):
            raise QueryRejected(f"{_REFUSED_CLASSES['SUBQUERY']} are not allowed in a WHERE expression")
        stack.extend(node.values())


def _resolve_column(node: dict, exact: set[str], folded: dict[str, list[str]]) -> None:
    names = node.get("column_names") or []
    if len(names) != 1:
        dotted = ".".join(names)
        raise QueryRejected(f"qualified names like {dotted} are not allowed; "
                            f"write a column name with a dot in double quotes: \"{dotted}\"")
    name = names[0]
    if name in exact:
        return
    # DuckDB binds identifiers case-insensitively; accept that, but only when it is unambiguous.
    candidates = folded.get(name.lower(), [])
    if len(candidates) == 1:
        node["column_names"] = [candidates[0]]
        return
    raise QueryRejected(f"unknown column {name!r} (quote names with spaces or capitals in double quotes, "
                        f"text values in single quotes)")


def _check_function(node: dict) -> None:
    name = str(node.get("function_name", ""))
    low, shown = name.lower(), name[:40]
    if node.get("schema") or node.get("catalog"):
        prefix = str(node.get("schema") or node.get("catalog"))[:40]
        raise QueryRejected(f"qualified function names are not allowed ({prefix}.{shown})")
    if low in _ALLOWED_FUNCTIONS:
        if node.get("distinct") or node.get("filter") is not None or (node.get("order_bys") or {}).get("orders") \
                or node.get("export_state"):
            raise QueryRejected(f"DISTINCT, FILTER and ORDER BY are not allowed inside {shown}()")
        return
    kind = _functions.get(low) or _functions.get(name)
    if kind in ("table", "table_macro"):
        raise QueryRejected(f"{shown}() is a table function; table functions are not allowed in a WHERE expression")
    if kind in ("aggregate", "window"):
        raise QueryRejected(f"{shown}() is an aggregate; aggregates are not allowed in a WHERE expression")
    if kind is None and low == "count_star":
        raise QueryRejected("count(*) is an aggregate; aggregates are not allowed in a WHERE expression")
    if kind is None:
        raise QueryRejected(f"unknown function {shown}()")
    what = f"{shown}()" if name.replace("_", "a").isalnum() else f"the operator {shown}"
    raise QueryRejected(f"{what} is not allowed in a WHERE expression: {_BOUNDED}")


def _to_sql(statement: dict) -> str:
    doc = json.dumps({"error": False, "statements": [statement]})
    try:
        with _parser_lock:
            text = _parser_con().execute("SELECT json_deserialize_sql(?)", [doc]).fetchone()[0]
    except duckdb.Error as e:
        raise QueryRejected(f"the WHERE expression could not be checked: {_first_line(e)}") from None
    prefix = 'SELECT * FROM "data" WHERE '
    if not text.startswith(prefix):
        raise QueryRejected("the WHERE expression could not be checked; simplify it")
    return text[len(prefix):]


def _strip_locations(node):
    if isinstance(node, dict):
        return {k: _strip_locations(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_strip_locations(v) for v in node]
    return node


# -- filters, search, and the predicate they make ------------------------------------------------------------
def _column(db: DatasetDB, name: str, what: str) -> str:
    if name not in db.types:
        raise QueryRejected(f"{what}: no column {name!r} in dataset {db.record.name!r}")
    return name


def _is_numeric(dtype: str) -> bool:
    return dtype in INT_TYPES or dtype in FLOAT_TYPES or dtype.startswith("DECIMAL")


def coerce_value(value, dtype: str, column: str):
    """The typed text of a filter value as a Python value of the column's type (bound as a parameter)."""
    if isinstance(value, str):
        text = value.strip()
    else:
        text = value
    if text is None or text == "":
        raise QueryRejected(f"the filter on {column!r} needs a value")
    if _is_numeric(dtype):
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
    col = _column(db, f.column, "filter")
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
        if not _whole(value) or value >= 2**62:
            raise QueryRejected(f"{name} must be a whole number, not {str(value)[:40]!r}")
        if value < 0:
            raise QueryRejected(f"the page {name} must not be negative ({value})")
    if q.sample_seed is not None and (not _whole(q.sample_seed) or not 0 <= q.sample_seed < 2**63):
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


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _predicate(db: DatasetDB, q: RowQuery) -> tuple[str, list]:
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


def _check_query(db: DatasetDB, q: RowQuery) -> None:
    if q.sort is not None and q.sort != ROW_ID:
        _column(db, q.sort, "sort")
    _check_fields(q)
    if not 1 <= q.limit <= MAX_LIMIT:
        raise QueryRejected(f"rows per page must be between 1 and {MAX_LIMIT:,}, not {q.limit}")


# -- pages -------------------------------------------------------------------------------------------------
def count(db: DatasetDB, q: RowQuery) -> int:
    pred, params = _predicate(db, q)
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
    _check_query(db, q)
    pred, params = _predicate(db, q)
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
    if isinstance(row_id, bool) or not (isinstance(row_id, Integral) or text.isdigit()) or not 0 <= int(text) < 2**63:
        raise NotFound(f"no row {text[:40]!r} in dataset {db.record.name!r}")
    rid = int(text)
    cols = ", ".join(quote_ident(c) for c in db.columns)
    found = db.rows(f"SELECT {cols} FROM data WHERE {quote_ident(ROW_ID)} = ?", [rid])
    if not found:
        raise NotFound(f"no row {rid} in dataset {db.record.name!r}")
    return dict(zip(db.columns, found[0]))


def columns_frame(db: DatasetDB, columns: list[str]) -> pd.DataFrame:
    """Whole columns as the view shows them (kind overrides applied), indexed by row id: what training reads."""
    for name in columns:
        _column(db, name, "column")
    select = ", ".join([quote_ident(ROW_ID)] + [quote_ident(c) for c in columns])
    return _indexed(db.df(f"SELECT {select} FROM data ORDER BY {quote_ident(ROW_ID)}"))


def extremes(db: DatasetDB, column: str, n: int = 10, largest: bool = True) -> pd.DataFrame:
    """The n rows with the largest (or smallest) values of a column; missing values (and NaN) left out."""
    if column not in db.columns:
        raise NotFound(f"dataset {db.record.name!r} has no column {column!r}")
    if not _whole(n):
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
        if _is_numeric(dtype) or dtype in ("BOOLEAN", "VARCHAR"):
            parts.append(q)
        else:
            parts.append(f"CAST({q} AS VARCHAR) AS {q}")
    return ", ".join(parts)


def iter_csv(db: DatasetDB, q: RowQuery) -> Iterator[bytes]:
    """Every matching row (no limit) as CSV, in chunks, so a large export never sits in pandas at once."""
    if q.sort is not None:
        _column(db, q.sort, "sort")
    pred, params = _predicate(db, q)
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
