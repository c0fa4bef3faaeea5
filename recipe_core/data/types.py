"""The families of DuckDB types the queries and profiles tell apart, by the names DuckDB gives them."""
from __future__ import annotations

INT_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                       "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"})
# REAL is the SQL name of FLOAT: DuckDB's DESCRIBE says FLOAT, a file's own schema may say REAL.
FLOAT_TYPES = frozenset({"FLOAT", "REAL", "DOUBLE"})
TIMESTAMP_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"})
DATETIME_TYPES = frozenset({"DATE"}) | TIMESTAMP_TYPES


def is_numeric(dtype: str) -> bool:
    """Integers, floats and decimals (DECIMAL(p,s) carries its precision in the name)."""
    return dtype in INT_TYPES or dtype in FLOAT_TYPES or dtype.startswith("DECIMAL")
