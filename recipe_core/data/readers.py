"""Opening a file for the snapshot writer: its format sniffed from its bytes (never its name), gzip undone, and the
JSON and Parquet readers (CSV and Excel have their own modules)."""
from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import zlib
from pathlib import Path

import duckdb

from recipe_core.config import Settings
from recipe_core.data.csv_reader import csv_error, open_csv
from recipe_core.data.limits import NO_MEMORY, cell_cap, check_width, over_cap
from recipe_core.data.source import (
    CHUNK,
    MAX_LINE_BYTES,
    SAMPLE_BYTES,
    Source,
    error_line,
    text_notes,
    unique_names,
)
from recipe_core.data.sql import quote_ident, quote_literal
from recipe_core.data.types import INT_TYPES
from recipe_core.data.xlsx import open_xlsx
from recipe_core.errors import BadInput
from recipe_core.units import human_bytes

MAX_PARQUET_FOOTER = 64 << 20  # DuckDB and pyarrow decode the whole footer in memory


def open_source(con, path: Path, work: Path, settings: Settings) -> Source:
    """How to read the file, told by its first bytes; refuses what no reader takes or what is over a limit."""
    head = _head(path)
    if head.startswith(b"\x1f\x8b"):
        inner = work / "decompressed"
        _gunzip(path, inner, settings)
        inner_head = _head(inner)
        if not inner_head.strip():
            raise BadInput("the file is empty after decompression")
        if inner_head.startswith(b"\x1f\x8b"):
            raise BadInput("gzip inside gzip is not supported; decompress the outer layer first")
        src = _open_plain(con, inner, inner_head, work, settings)
        src.fmt += "+gzip"
        return src
    return _open_plain(con, path, head, work, settings)


def _open_plain(con, path: Path, head: bytes, work: Path, settings: Settings) -> Source:
    if head.startswith(b"PAR1"):
        return _open_parquet(con, path, settings)
    if head.startswith(b"PK\x03\x04"):
        return open_xlsx(path, work, settings)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput("old Excel .xls files are not supported; save the sheet as .xlsx or CSV")
    encoding, text = _decode_head(head)
    if not text.strip():
        raise BadInput("the file is empty")
    first = text.lstrip()[:1]
    if first in "[{":
        return _open_json(con, path, text, encoding)
    return open_csv(con, path, head, text, encoding, settings)


# -----------------------------------------------------------------------------------------------------------
# sniffing: bytes and text


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(SAMPLE_BYTES)


def _decode_head(head: bytes) -> tuple[str, str]:
    """(DuckDB encoding name, decoded sample). Refuse binary data that has no text encoding."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", head.decode("utf-16", errors="replace")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    if _looks_binary(head):
        raise BadInput("the file is not CSV, TSV, JSON, Parquet, Excel (.xlsx) or gzip: it looks like binary data")
    try:
        # final=False: the sample may end inside a multi-byte character
        return "utf-8", codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "latin-1", head.decode("latin-1")


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    control = sum(head.count(bytes([c])) for c in (*range(0, 9), 11, 12, *range(14, 32), 127))
    return control > 0.01 * len(head)


def _gunzip(path: Path, out_path: Path, settings: Settings) -> None:
    """Decompress streaming, counting decompressed bytes against the cap (a compression bomb stops early)."""
    total = 0
    try:
        with gzip.open(path, "rb") as src, open(out_path, "wb") as out:
            while chunk := src.read(CHUNK):
                total += len(chunk)
                if total > settings.max_upload_bytes:
                    raise BadInput(
                        f"the file decompresses to more than {human_bytes(settings.max_upload_bytes)} "
                        "(the RECIPE_MAX_UPLOAD_MB limit); refused as a possible compression bomb"
                    )
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise BadInput(f"the gzip data is corrupt or truncated ({error_line(e)})") from None


# -----------------------------------------------------------------------------------------------------------
# JSON


def _open_json(con, path: Path, text: str, encoding: str) -> Source:
    if encoding != "utf-8":
        raise BadInput("JSON must be UTF-8 encoded")
    stripped = text.strip()
    if stripped.startswith("["):
        if re.fullmatch(r"\[\s*\]", stripped):
            raise BadInput("the JSON array is empty: no rows")
        fmt, layout = "json", "array"
    elif _is_json_lines(stripped):
        fmt, layout = "jsonl", "newline_delimited"
    else:
        fmt, layout = "json", "unstructured"
    # One object may span the whole file when it is not an array or JSON Lines.
    max_object = MAX_LINE_BYTES if layout != "unstructured" else max(MAX_LINE_BYTES, path.stat().st_size + 1)
    reader = f"read_json({quote_literal(str(path))}, format='{layout}', records=true, maximum_object_size={max_object}"
    # every record is an object; one object of lists is unnested into rows, as many as it holds values
    bound = _occurrences(path, b"{") if layout != "unstructured" else None
    src = Source(fmt, path, f"{reader})", [], [], json=reader, row_bound=bound)
    try:
        keys, types = _describe(con, src.from_sql)  # types from DuckDB's sample of the records
        if layout == "unstructured" and types and all(t.endswith("[]") for t in types):
            # One object of lists, {"col": [values...]}: a table stored by column.
            if con.execute(f"SELECT count(*) FROM {src.from_sql}").fetchone()[0] == 1:
                scan_all_json(con, src)
                unnest = ", ".join(f"unnest({quote_ident(k)}) AS {quote_ident(k)}" for k in src.names)
                src.from_sql = f"(SELECT {unnest} FROM {src.from_sql})"
                keys, types = _describe(con, src.from_sql)
        elif _fractions_after_sample(con, reader, keys, types):
            scan_all_json(con, src)
            keys, types = _describe(con, src.from_sql)
    except duckdb.Error as e:
        raise _json_error(e, path) from None
    src.names, notes = unique_names(keys)
    src.types, src.notes = types, notes + text_notes(src.names, types)
    return src


def _occurrences(path: Path, byte: bytes) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            n += chunk.count(byte)
    return n


def _describe(con, from_sql: str) -> tuple[list[str], list[str]]:
    described = con.execute(f"DESCRIBE SELECT * FROM {from_sql}").fetchall()
    return [r[0] for r in described], [r[1] for r in described]


def _fractions_after_sample(con, reader: str, keys: list[str], types: list[str]) -> bool:
    """Whether an integer column (typed from a sample) holds a fraction or a huge number somewhere.

    From a sample, DuckDB would cut a later 2.5 to 2; this one parallel pass is ~4x cheaper than typing every
    record. (A key first seen after the sample makes the COPY fail instead, and that is retried in full.)
    """
    ints = [k for k, t in zip(keys, types, strict=True) if t in INT_TYPES]
    if not ints:
        return False
    columns = ", ".join(f"{quote_literal(k)}: 'DOUBLE'" for k in ints)
    checks = ", ".join(f"bool_or({c} <> trunc({c}) OR abs({c}) >= {2**53})" for c in map(quote_ident, ints))
    try:
        found = con.execute(f"SELECT {checks} FROM {reader}, columns={{{columns}}})").fetchone()
    except duckdb.Error:
        return True  # something else that is not a number: let the full pass sort it out
    return any(found)


def scan_all_json(con, src: Source) -> bool:
    """Type every record (a full extra pass), then read with those types given explicitly."""
    if src.json is None:
        return False
    keys, types = _describe(con, f"{src.json}, sample_size=-1)")
    columns = ", ".join(f"{quote_literal(k)}: {quote_literal(t)}" for k, t in zip(keys, types, strict=True))
    src.from_sql, src.json = f"{src.json}, columns={{{columns}}})", None
    src.names, notes = unique_names(keys)
    src.types, src.notes = types, notes + text_notes(src.names, types)
    return True


def _is_json_lines(text: str) -> bool:
    """One complete object on the first line, and another object after it."""
    first, _, rest = text.partition("\n")
    try:
        json.loads(first)
    except (ValueError, RecursionError):  # too deep for Python: DuckDB then refuses it by its own depth limit
        return False
    return rest.lstrip().startswith("{")


def _json_error(e: duckdb.Error, path: Path) -> BadInput:
    msg = str(e)
    if isinstance(e, duckdb.OutOfMemoryException) or "failed to allocate" in msg:
        return BadInput(NO_MEMORY)
    depth = re.search(r"maximum recursion depth of (\d+)", msg)
    if depth:
        return BadInput(f"the JSON is nested more than {depth.group(1)} levels deep")
    if "expected records" in msg:
        return BadInput("the JSON holds no objects: expected an array of objects, or one object per line")
    if "Malformed JSON" in msg:
        where = _json_error_place(path)
        if where is None:  # a large file: DuckDB's own place (a line, or a byte within a record)
            where = re.search(r"(at byte \d+ in (?:line|record/value) \d+)", msg)
            where = where.group(1).replace("record/value", "record") if where else "in the file"
        return BadInput(f"malformed JSON {where}")
    return BadInput(f"could not read the JSON: {error_line(e, drop_quoted_paths=True)}")


def _json_error_place(path: Path) -> str | None:
    """Where Python's parser first fails, as "at line L, column C: reason"; None for files too large to re-read."""
    if path.stat().st_size > 64 << 20:
        return None
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    try:
        json.loads(text)
        return "somewhere in the file"  # one valid document: then it is JSON Lines that failed
    except json.JSONDecodeError as e:
        whole = e
    except RecursionError:  # nested deeper than Python's parser goes: DuckDB's own place will do
        return None
    if not text.lstrip().startswith("["):
        for number, line in enumerate(text.splitlines(), start=1):  # JSON Lines: each line on its own
            try:
                if line.strip():
                    json.loads(line)
            except json.JSONDecodeError as e:
                return f"at line {number}, column {e.colno}: {e.msg}"
            except RecursionError:
                return None
    return f"at line {whole.lineno}, column {whole.colno}: {whole.msg}"


# -----------------------------------------------------------------------------------------------------------
# Parquet


def _open_parquet(con, path: Path, settings: Settings) -> Source:
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
    if tail[4:] != b"PAR1":
        raise BadInput("the Parquet file is truncated or corrupt (no footer)")
    if int.from_bytes(tail[:4], "little") > MAX_PARQUET_FOOTER:
        raise BadInput(f"the Parquet file's footer is larger than {human_bytes(MAX_PARQUET_FOOTER)}")
    from_sql = f"read_parquet({quote_literal(str(path))})"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {from_sql}").fetchall()
        n_rows = _check_parquet_footer(con, path, settings, len(described))
    except duckdb.Error as e:
        raise BadInput(f"the Parquet file is corrupt: {error_line(e, drop_quoted_paths=True)}") from None
    types = [r[1] for r in described]
    raw = _parquet_names(path)
    names, notes = unique_names(raw if len(raw) == len(types) else [r[0] for r in described])
    return Source("parquet", path, from_sql, names, types, notes + text_notes(names, types), row_bound=n_rows)


def _check_parquet_footer(con, path: Path, settings: Settings, n_columns: int) -> int:
    """The number of rows, refusing from the footer alone, before any data is read: a 168 KB file can declare
    100M rows, and a 10 KB one (zstd) a 300 MB string, which reading would first decompress whole."""
    file = quote_literal(str(path))
    check_width(n_columns, settings)
    (n_rows,) = con.execute(f"SELECT num_rows FROM parquet_file_metadata({file})").fetchone()
    n_values, column, per_value = con.execute(
        "SELECT sum(num_values), arg_max(path_in_schema, total_uncompressed_size / greatest(num_values, 1)), "
        f"max(total_uncompressed_size / greatest(num_values, 1)) FROM parquet_metadata({file})"
    ).fetchone()
    if n_rows > settings.max_rows:
        raise BadInput(over_cap(settings, 1))
    if max(n_rows * n_columns, n_values or 0) > settings.max_cells:  # list items count as cells: they are stored
        raise BadInput(over_cap(settings, n_columns))
    if (per_value or 0) > 2 * settings.max_cell_bytes:  # surely over, page headers and all; the COPY checks exactly
        raise BadInput(f"column {column!r} has a value larger than {cell_cap(settings)}")
    return n_rows


def _parquet_names(path: Path) -> list[str]:
    # DuckDB renames duplicate names while reading; the footer has the names as written.
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - DuckDB already validated the file; fall back to its names
        return []


# -----------------------------------------------------------------------------------------------------------
# errors


def read_error(e: duckdb.Error, src: Source) -> BadInput:
    """DuckDB's error while reading the source, as the one line a person can act on."""
    if isinstance(e, duckdb.OutOfMemoryException):
        return BadInput(NO_MEMORY)
    if src.csv is not None:
        return csv_error(e, src)
    if src.fmt.startswith("json"):
        return _json_error(e, src.path)
    if src.fmt.startswith("parquet"):
        return BadInput(f"the Parquet file is corrupt: {error_line(e, drop_quoted_paths=True)}")
    return BadInput(f"could not read the {src.fmt} file: {error_line(e, drop_quoted_paths=True)}")

