"""Every CSV the app writes goes through here: a cell a spreadsheet would run as a formula is neutralized.

A class named `@SUM(1+1)` or a run named `=HYPERLINK(...)` is live code in Excel, LibreOffice and Google Sheets
(OWASP "CSV injection"). Text cells and header names that start with a trigger get a leading apostrophe, which
the spreadsheet shows as text; numbers stay numbers (-1 is a number, not a formula).
"""
from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER = "^[=+\\-@\t\r]"


def neutralize(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote."""
    return "'" + text if text.startswith(FORMULA_START) else text


def frame_csv(frame: pd.DataFrame) -> bytes:
    """A DataFrame as CSV, through the same Arrow writer as the row exports (pandas' to_csv leaves a lone \r
    unquoted); a column of mixed values is written as text."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            column = column.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
        columns[str(name)] = pa.array(column, from_pandas=True)
    table = pa.table(columns) if columns else pa.table({})
    return b"".join(batches_csv(list(map(str, frame.columns)), table.to_batches()))


def batches_csv(header: list[str], batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Arrow batches as CSV chunks (a large export never sits in memory at once); text columns are neutralized
    with Arrow's vectorized string kernels, numbers and booleans written as they are."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([neutralize(str(c)) for c in header])
    yield out.getvalue().encode("utf-8")
    options = pa_csv.WriteOptions(include_header=False)
    for batch in batches:
        columns = [_neutralized(c) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c
                   for c in batch.columns]
        sink = io.BytesIO()
        pa_csv.write_csv(pa.RecordBatch.from_arrays(columns, names=batch.schema.names), sink, options)
        yield sink.getvalue()


def _neutralized(column: pa.Array) -> pa.Array:
    live = pc.fill_null(pc.match_substring_regex(column, _TRIGGER), False)
    quote, empty = pa.scalar("'", column.type), pa.scalar("", column.type)
    return pc.if_else(live, pc.binary_join_element_wise(quote, column, empty), column)
