"""Each column as the profile's SQL reads it: how it is treated (numeric, categorical, text, boolean, datetime), the
value to group it by and the number to bin it by, and the unpivot that turns many columns into (column, value) rows."""
from __future__ import annotations

from dataclasses import dataclass

from recipe_core.data.db import DatasetDB
from recipe_core.data.sql import quote_ident
from recipe_core.data.types import DATETIME_TYPES, FLOAT_TYPES, INT_TYPES, is_numeric


@dataclass(frozen=True)
class ColumnView:
    """A column of the view: its name, its DuckDB type (after kind overrides) and how it is treated."""
    name: str
    dtype: str
    treatment: str  # numeric, categorical, text, boolean, datetime

    @property
    def ident(self) -> str:
        """The quoted identifier."""
        return quote_ident(self.name)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES

    @property
    def is_int(self) -> bool:
        return self.dtype in INT_TYPES

    @property
    def value(self) -> str:
        """The value to group and count by; nested values are compared as text."""
        nested = self.dtype.endswith("]") or self.dtype.startswith(("STRUCT", "MAP", "UNION"))
        return f"CAST({self.ident} AS VARCHAR)" if nested else self.ident

    @property
    def number(self) -> str:
        """A DOUBLE to bin or summarize: the number, the instant in microseconds, or the text length."""
        if self.treatment == "numeric":
            return self.ident if self.dtype == "DOUBLE" else f"CAST({self.ident} AS DOUBLE)"
        if self.treatment == "datetime":
            ts = self.ident if self.dtype == "TIMESTAMP WITH TIME ZONE" else f"CAST({self.ident} AS TIMESTAMP)"
            return f"CAST(epoch_us({ts}) AS DOUBLE)"
        return f"CAST(length(CAST({self.ident} AS VARCHAR)) AS DOUBLE)"

    @property
    def number_is_whole(self) -> bool:
        """number only takes whole values, so small ranges get one bin per value."""
        return self.is_int or self.dtype == "BOOLEAN" or self.treatment in ("text", "categorical", "boolean")


def treatment_of(kind: str, dtype: str) -> str:
    """How a column of this kind and type is summarized."""
    # A kind the stored type cannot honour (e.g. numeric on a DATE) falls back to counting values.
    if kind == "numeric" and (is_numeric(dtype) or dtype == "BOOLEAN"):
        return "numeric"
    if kind == "datetime" and dtype in DATETIME_TYPES:
        return "datetime"
    if kind == "boolean" and dtype == "BOOLEAN":
        return "boolean"
    if kind == "text":
        return "text"
    return "categorical"


def _view_of(db: DatasetDB, column) -> ColumnView:
    dtype = db.types[column.name]  # as the view shows it, after kind overrides
    return ColumnView(column.name, dtype, treatment_of(column.kind, dtype))


def column_views(db: DatasetDB) -> list[ColumnView]:
    return [_view_of(db, c) for c in db.record.columns]


def column_view(db: DatasetDB, name: str) -> ColumnView:
    return _view_of(db, db.record.column(name))  # NotFound with a clear message


def treatments(db: DatasetDB) -> dict[str, str]:
    """How each column is treated (numeric, categorical, text, boolean, datetime): the kind the stored type honours."""
    return {c.name: c.treatment for c in column_views(db)}


def unpivot(exprs: list[str], include_nulls: bool = False) -> str:
    """(k, v) rows from one projection of data: k is the expression's position as text ("0", "1", ...)."""
    inner = ", ".join(f'{e} AS "{i}"' for i, e in enumerate(exprs))
    names = ", ".join(f'"{i}"' for i in range(len(exprs)))
    nulls = " INCLUDE NULLS" if include_nulls else ""
    return f"(SELECT k, v FROM (SELECT {inner} FROM data) UNPIVOT{nulls} (v FOR k IN ({names})))"
