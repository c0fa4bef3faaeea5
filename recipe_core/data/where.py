"""The expert WHERE box: an expression is parsed by DuckDB itself and checked against allow-lists of expression
classes, operators and functions of bounded cost, so what is checked is exactly what runs."""
from __future__ import annotations

import json
import threading

import duckdb

from recipe_core.data.sql import private_connection
from recipe_core.errors import QueryRejected, first_line

MAX_WHERE_CHARS = 10_000
# The expression is parsed with json_serialize_sql. Only these expression classes may appear; anything else
# (SUBQUERY, WINDOW, PARAMETER, STAR, LAMBDA, ...) is refused by name.
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


def _parser_connection() -> duckdb.DuckDBPyConnection:
    global _parser, _trivial
    if _parser is None:
        con = private_connection(threads=1, memory_limit="64MB")
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
        con = _parser_connection()
        text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    try:
        return json.loads(text)
    except RecursionError:
        raise QueryRejected(_TOO_DEEP) from None


def _parse_one(sql: str) -> dict:
    try:
        doc = _serialize(sql)
    except duckdb.Error as e:
        raise QueryRejected(f"the WHERE expression does not parse: {first_line(e)}") from None
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
        _parser_connection()
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
            text = _parser_connection().execute("SELECT json_deserialize_sql(?)", [doc]).fetchone()[0]
    except duckdb.Error as e:
        raise QueryRejected(f"the WHERE expression could not be checked: {first_line(e)}") from None
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

