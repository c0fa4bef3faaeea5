"""Ingestion: a file or an upload becomes an immutable Parquet snapshot, named by content hash, in the catalog.

Content is sniffed, never trusted by extension. Bad input raises BadInput with one line and leaves nothing behind.
"""
from __future__ import annotations

import codecs
import csv
import datetime
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import uuid
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

import duckdb

from recipe_core.config import Settings
from recipe_core.data.queries import quote_ident, quote_literal
from recipe_core.data.snapshot import RESERVED_NAMES
from recipe_core.errors import BadInput, NotFound
from recipe_core.safetext import check_text, storable
from recipe_core.tracking.store import Column, DatasetRecord, Store

ROW_GROUP_SIZE = 100_000  # row-id ranges then prune whole row groups (fast deep pages)
COMPRESSION = "snappy"  # measured: zstd (level 1) made ingest ~25% slower for ~30% smaller files
CHUNK = 1 << 20  # bytes per read when hashing, staging and decompressing
SAMPLE_BYTES = 1 << 20  # the head of a file that sniffing looks at
MAX_LINE_BYTES = 64 << 20  # one CSV line or JSON record; a 10 MB cell must fit
DUCKDB_LINE_BYTES = 2_000_000  # DuckDB's default max_line_size
# DuckDB spills to the work folder beyond this; with Python and pyarrow (~170 MB) the process stays under 1 GB.
# Measured: with 2GB a 100M-row Parquet peaked at 997 MB; with 512MB a 5M-row, 656 MB CSV peaks at 420-510 MB
# (560-700 MB with 2GB) and ingests as fast, within this shared machine's noise.
INGEST_MEMORY_LIMIT = "512MB"
MAX_PARQUET_FOOTER = 64 << 20  # DuckDB and pyarrow decode the whole footer in memory
# Fields on one line of a CSV. DuckDB's CSV reader and sniffer take ~100 bytes per field of a line outside their
# memory limit (measured: one 25M-field line, 1.5-2.9 GB to read, 5 GB to sniff), so longer lines are refused first.
MAX_LINE_FIELDS = CHUNK  # _check_lines relies on it: a line inside one chunk cannot have more
CELL_MARK = "recipe-cell:"  # marks our own error for a value over settings.max_cell_bytes
SNIFF_ROWS = 20_480  # rows DuckDB's sniffer reads to guess types (its default sample_size)
WIDEN_MARK = "recipe-widen:"  # marks our own cast errors so the column can be widened and the file re-read
DELIMITERS = (",", "\t", ";", "|")
NULL_STRINGS = ("", "NA", "N/A", "NULL", "null", "#N/A")  # what spreadsheets and R/pandas write for missing
SAMPLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson", ".xlsx", ".gz"}
KEEP_TYPES = re.compile(
    r"^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)|DATE|TIMESTAMP.*|VARCHAR)$"
)
NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|REAL|DOUBLE|DECIMAL.*)$"
)
INTEGER = re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$")
ROOT = Path(__file__).resolve().parents[2]
# The parts openpyxl loads whole, by their uncompressed size (measured: 64 MB of 3M tiny shared strings peaked at
# 520 MB and took 40 s to parse; a 53 MB styles.xml peaked at 853 MB). Excel's own styles.xml is rarely 1 MB.
XLSX_STRINGS_BYTES = 64 << 20
XLSX_PART_BYTES = 8 << 20
XLSX_PROCESS_BYTES = 2 << 30  # the child that parses a workbook: its address space (Python and Arrow map ~1 GB)
XLSX_TIMEOUT_S = 600.0  # openpyxl reads ~50k rows of 4 cells a second: a full 1M-row sheet takes ~80 s
EXCEL_ROWS = 1_048_576  # Excel's own limit
XML_ROW = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row[\s/>]")  # a <row> start tag, namespace prefix or not
XLSX_BATCH_CELLS = 200_000  # sheet cells per staged Parquet part: bounded memory, and few files
XLSX_BATCH_CHARS = 32 << 20  # and text per part: inline strings are held until their part is written
# openpyxl.cell.cell.ERROR_CODES, spelled out: importing openpyxl costs 0.2 s, and only workbooks need it
EXCEL_ERRORS = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")
EXCEL_MISSING = frozenset(NULL_STRINGS + EXCEL_ERRORS)  # pandas read both as missing
EXCEL_TYPES = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", datetime.datetime: "TIMESTAMP", str: "VARCHAR"}


# -----------------------------------------------------------------------------------------------------------
# public API


def ingest_file(
    settings: Settings, store: Store, path: Path, *, name: str | None = None, source_name: str | None = None
) -> DatasetRecord:
    """Ingest a file on disk (CLI, sample data). Re-ingesting identical bytes returns the existing record."""
    name = _checked_name(name)
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    size = path.stat().st_size
    _check_size(size, settings)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing (a full read) runs while DuckDB sniffs the file: both release the GIL.
        digest = pool.submit(_sha256_file, path)
        return _ingest(settings, store, path, digest, size, storable(source_name or path.name), name)


def ingest_bytes(
    settings: Settings, store: Store, data: bytes | BinaryIO, *, source_name: str, name: str | None = None
) -> DatasetRecord:
    """Ingest a browser upload: streamed to a private temp file (hashed and capped on the way), then ingested."""
    name = _checked_name(name)
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if hasattr(stream, "seek"):
        stream.seek(0)
    staged = _tmp_root(settings) / f"upload-{uuid.uuid4().hex}.part"
    try:
        h, size = hashlib.sha256(), 0
        with open(staged, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise BadInput(_too_big("the upload", settings))
                h.update(chunk)
                out.write(chunk)
        _check_size(size, settings)
        digest = Future()
        digest.set_result(h.hexdigest())
        return _ingest(settings, store, staged, digest, size, storable(source_name), name)
    finally:
        staged.unlink(missing_ok=True)


def _checked_name(name: str | None) -> str | None:
    """A name the store can hold, checked before anything is written (a NUL fails PostgreSQL mid-transaction)."""
    return None if name is None else check_text(name, "the dataset name", max_chars=200)


def ensure_samples(settings: Settings, store: Store, sample_dir: Path) -> list[DatasetRecord]:
    """Register every data file in sample_dir; cheap when already registered (hash, then skip)."""
    files = sorted(p for p in Path(sample_dir).iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    return [ingest_file(settings, store, p) for p in files]


def infer_kind(dtype: str, n_rows: int, n_distinct: int, avg_len: float | None) -> str:
    """How the app treats a column by default: one of store.KINDS."""
    dtype = dtype.upper()
    if dtype == "BOOLEAN":
        return "boolean"
    if NUMERIC.match(dtype):
        return "numeric"  # integer 0/1 columns too: a model can use them as numbers
    if dtype == "DATE" or dtype.startswith("TIMESTAMP"):
        return "datetime"
    few_values = n_distinct <= max(20, 0.05 * n_rows)
    return "categorical" if few_values and (avg_len or 0.0) < 40 else "text"


# -----------------------------------------------------------------------------------------------------------
# the ingestion pipeline


@dataclass
class _Source:
    """What to read with DuckDB: a FROM clause, its columns by position, and how to store each one."""

    fmt: str
    path: Path
    from_sql: str
    names: list[str]  # final user column names, in file order
    types: list[str]  # DuckDB types as read
    notes: list[str] = field(default_factory=list)
    csv: dict | None = None  # explicit read_csv options, so a failed type guess can be widened and retried
    ascii_head: bool = False  # the sniffed sample was plain ASCII: UTF-8 was a guess, Latin-1 is as likely
    check_integers: bool = False  # rows beyond the sniffer's sample: a later 2.5 must not become 3
    json: str | None = None  # read_json call (no closing parenthesis) while its types come from a sample
    exact: set[int] = field(default_factory=set)  # checked BIGINT columns whose values a double cannot hold
    row_bound: int | None = None  # the file cannot hold more rows than this (None: unknown before reading)


def _ingest(settings, store, path: Path, digest: Future, size: int, source_name: str, name: str | None):
    if size <= 64 << 20:
        # Hashing a small file takes milliseconds: a re-upload then skips all work (ensure_samples on start).
        found = _existing(settings, store, digest.result())
        if found is not None:
            return found
    work = _tmp_root(settings) / f"ingest-{uuid.uuid4().hex}"
    work.mkdir()
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.snapshots_dir / f".ingest-{uuid.uuid4().hex}.tmp"  # same folder: os.link/replace is atomic
    con = duckdb.connect(
        config={
            # Ingestion reads only files we chose; still, nothing may be fetched or loaded behind our back.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": INGEST_MEMORY_LIMIT,
            "temp_directory": str(work / "spill"),
        }
    )
    try:
        src = _open_source(con, path, work, settings)
        found = _existing(settings, store, digest.result())
        if found is not None:
            return found
        dataset_id = digest.result()[:16]
        final = settings.snapshots_dir / f"{dataset_id}.parquet"
        n_rows = _write_snapshot(con, src, tmp, settings)
        if n_rows == 0:
            raise BadInput(_no_rows(src))
        columns = _columns(con, tmp, n_rows)
        _publish(tmp, final)
        record = DatasetRecord(
            id=dataset_id,
            name=name or _default_name(source_name) or dataset_id,
            source_name=source_name,
            fmt=src.fmt,
            n_rows=n_rows,
            columns=columns,
            snapshot=final.name,
            notes=tuple(src.notes),
            size_bytes=size,
        )
        # Store.add_dataset settles a race with another process: the loser gets the winner's record.
        return store.add_dataset(record)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _open_source(con, path: Path, work: Path, settings: Settings) -> _Source:
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


def _open_plain(con, path: Path, head: bytes, work: Path, settings: Settings) -> _Source:
    if head.startswith(b"PAR1"):
        return _open_parquet(con, path, settings)
    if head.startswith(b"PK\x03\x04"):
        return _open_xlsx(path, work, settings)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput("old Excel .xls files are not supported; save the sheet as .xlsx or CSV")
    encoding, text = _decode_head(head)
    if not text.strip():
        raise BadInput("the file is empty")
    first = text.lstrip()[:1]
    if first in "[{":
        return _open_json(con, path, text, encoding)
    return _open_csv(con, path, head, text, encoding, settings)


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
                        f"the file decompresses to more than {_mb(settings.max_upload_bytes)} "
                        "(the RECIPE_MAX_UPLOAD_MB limit); refused as a possible compression bomb"
                    )
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise BadInput(f"the gzip data is corrupt or truncated ({_first_line(e)})") from None


# -----------------------------------------------------------------------------------------------------------
# delimited text


def _open_csv(con, path: Path, head: bytes, text: str, encoding: str, settings: Settings) -> _Source:
    complete = len(head) < SAMPLE_BYTES  # the sample holds the whole file
    if not complete:
        text = text[: text.rfind("\n") + 1] or text  # drop the cut-off last line
    delim = _sniff_delimiter(text)
    fmt = "tsv" if delim == "\t" else "csv"
    longest, line_ends = (len(head), text.count("\n") or text.count("\r")) if complete else _check_lines(path, delim)
    header_fields, modal = _sample_shape(text, delim)
    _check_width(max(len(header_fields), modal), settings)  # before DuckDB's sniffer: a wide line exhausts it
    base = {
        "delim": delim,
        "encoding": encoding,
        "nullstr": _null_strings(text, delim),
        "skip": 0,
        "comment": "",
    }
    if longest > DUCKDB_LINE_BYTES:  # sniffing a 70 MB line with the default first costs DuckDB 3-17 s
        base["max_line_size"] = MAX_LINE_BYTES
    sniffed = _duckdb_sniff(con, path, base)
    if sniffed is None and "max_line_size" not in base:
        # perhaps a quoted value over DuckDB's default 2 MB; allowing longer ones always costs speed
        sniffed = _duckdb_sniff(con, path, {**base, "max_line_size": MAX_LINE_BYTES})
        if sniffed is not None:
            base["max_line_size"] = MAX_LINE_BYTES
    if delim == ";" and sniffed is not None:
        # Semicolon files usually come from locales that write 1,5 for 1.5.
        comma = _duckdb_sniff(con, path, {**base, "decimal_separator": ","})
        if comma is not None and comma["types"].count("VARCHAR") < sniffed["types"].count("VARCHAR"):
            sniffed, base = comma, {**base, "decimal_separator": ","}
    if sniffed is not None and len(sniffed["types"]) == len(header_fields) == modal:
        has_header = sniffed["has_header"]
        types = [t if KEEP_TYPES.match(t) else "VARCHAR" for t in sniffed["types"]]  # e.g. TIME: keep the text
        quote, escape = sniffed["quote"], sniffed["escape"]
        extra = {k: v for k, v in sniffed.items() if k in ("dateformat", "timestampformat")}
    else:
        # DuckDB's sniffer gave up or disagrees (typically ragged rows): read strictly as text so the
        # first bad line is reported, rather than guessing a different dialect. Long lines are allowed: with
        # its 2 MB default, DuckDB 2.0.1 skips a 70 MB line without a word.
        has_header, types = True, ["VARCHAR"] * len(header_fields)
        quote, escape, extra = '"', '"', {}
        base["max_line_size"] = MAX_LINE_BYTES
    if has_header:
        raw_names = _parse_header(text, delim, quote, escape)
        if len(raw_names) != len(types):
            raw_names = [""] * len(types)
    else:
        raw_names = [f"column_{i + 1}" for i in range(len(types))]
    names, notes = _unique_names(raw_names)
    options = {**base, "quote": quote, "escape": escape, "header": has_header, **extra}
    seen_all = complete and text.count("\n") < SNIFF_ROWS
    src = _Source(fmt, path, "", names, list(types), notes, csv=options, ascii_head=head.isascii(),
                  check_integers=not seen_all, row_bound=line_ends + 1)
    src.from_sql = _csv_from(src)
    return src


def _check_lines(path: Path, delim: str) -> tuple[int, int]:
    """The longest line's length in bytes (exact above CHUNK) and the number of line ends, refusing a line over
    MAX_LINE_BYTES or with more than MAX_LINE_FIELDS delimiters (quoted ones too) before DuckDB reads it.

    DuckDB 2.0.1 skips a header line over its max_line_size without a word (a 70 MB one gave "no data rows"),
    and takes ~100 bytes per field of a line outside its memory limit. A line within one chunk cannot break
    either limit, so only the runs across chunk ends are measured; counting the line ends (so that the COPY
    needs no LIMIT) makes it one pass as fast as hashing: 0.66 s for 656 MB.
    """
    sep, fields, start, offset, longest, ends = delim.encode(), 0, 0, 0, 0, 0  # start: where this line begins
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            ends += chunk.count(b"\n") or chunk.count(b"\r")
            first = min((i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0), default=len(chunk))
            fields += chunk.count(sep, 0, first)
            longest = max(longest, offset + first - start)
            if longest > MAX_LINE_BYTES or fields > MAX_LINE_FIELDS:
                number = _line_number(path, start)
                if longest > MAX_LINE_BYTES:
                    raise BadInput(f"line {number:,} is longer than {_mb(MAX_LINE_BYTES)}")
                raise BadInput(f"line {number:,} has more than {MAX_LINE_FIELDS:,} fields")
            if first < len(chunk):
                last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                fields, start = chunk.count(sep, last + 1), offset + last + 1
            offset += len(chunk)
    return longest, ends


def _line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line that starts at this byte offset (\n, or \r alone, ends a line)."""
    lf = cr = done = 0
    with open(path, "rb") as f:
        while done < offset and (chunk := f.read(min(CHUNK, offset - done))):
            lf, cr, done = lf + chunk.count(b"\n"), cr + chunk.count(b"\r"), done + len(chunk)
    return 1 + (lf or cr)


def _null_strings(text: str, delim: str) -> list[str]:
    """The missing-value markers seen in the sample; DuckDB parses ~15% slower with several than with ''."""
    d = re.escape(delim)
    return ["", *(m for m in NULL_STRINGS[1:] if re.search(rf"(^|{d}){re.escape(m)}({d}|\r?$)", text, re.MULTILINE))]


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the first lines into the most consistent number (>1) of fields."""
    best, best_key = ",", None
    for delim in DELIMITERS:
        counts = [len(row) for row in _rows(text, delim, limit=500) if row]
        if not counts:
            continue
        modal = statistics.mode(counts)
        consistency = counts.count(modal) / len(counts)
        key = (modal > 1, consistency, modal)
        if best_key is None or key > best_key:
            best, best_key = delim, key
    return best


def _sample_shape(text: str, delim: str) -> tuple[list[str], int]:
    rows = [row for row in _rows(text, delim, limit=500) if row]
    return rows[0], statistics.mode(len(r) for r in rows)


def _csv_dialect(delim: str, quote: str = '"', escape: str = '"') -> dict:
    """Python csv module arguments matching a DuckDB dialect (the header and ragged-line finder use them)."""
    csv.field_size_limit(MAX_LINE_BYTES)  # a 10 MB cell must parse here too
    kwargs = {"delimiter": delim, "strict": False, "quotechar": quote or '"'}
    if escape and escape != quote:
        kwargs.update(escapechar=escape, doublequote=False)
    return kwargs


def _rows(text: str, delim: str, limit: int, quote: str = '"', escape: str = '"'):
    reader = csv.reader(io.StringIO(text, newline=""), **_csv_dialect(delim, quote, escape))
    try:
        for i, row in enumerate(reader):
            if i >= limit:
                return
            yield row
    except csv.Error:
        return


def _parse_header(text: str, delim: str, quote: str, escape: str) -> list[str]:
    for row in _rows(text, delim, limit=1, quote=quote, escape=escape):
        return row
    return []


def _duckdb_sniff(con, path: Path, base: dict) -> dict | None:
    try:
        row = con.execute(
            f"SELECT Quote, Escape, HasHeader, Columns, DateFormat, TimestampFormat "
            f"FROM sniff_csv({quote_literal(str(path))}, {_options_sql(base)})"
        ).fetchone()
    except duckdb.Error:
        return None
    quote, escape, has_header, columns, date_fmt, ts_fmt = row
    quote = "" if quote == "(empty)" else quote
    escape = "" if escape == "(empty)" else escape
    if not quote:
        # No quotes in the sample; a quoted field later in the file must still parse (RFC 4180).
        quote, escape = '"', '"'
    out = {"quote": quote, "escape": escape or quote, "has_header": bool(has_header),
           "types": [c["type"] for c in columns]}
    if date_fmt:
        out["dateformat"] = date_fmt
    if ts_fmt:
        out["timestampformat"] = ts_fmt
    return out


def _csv_from(src: _Source) -> str:
    types = [_read_type(src, i) for i in range(len(src.types))]
    columns = "{" + ", ".join(f"{quote_literal(n)}: {quote_literal(t)}" for n, t in zip(src.names, types)) + "}"
    return (
        f"read_csv({quote_literal(str(src.path))}, auto_detect=false, strict_mode=true, "
        f"{_options_sql(src.csv)}, columns={columns})"
    )


def _read_type(src: _Source, i: int) -> str:
    """DuckDB's CSV reader rounds 2.5 to 3 in a BIGINT column, so a checked one is read as DOUBLE (fast; exact
    below 2**53) or, once a larger value shows up, as text; _checked_integer then casts it."""
    if src.check_integers and src.types[i] == "BIGINT":
        return "VARCHAR" if i in src.exact else "DOUBLE"
    return src.types[i]


def _options_sql(options: dict) -> str:
    parts = []
    for key, value in options.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{key}={value}")
        elif isinstance(value, list):
            parts.append(f"{key}=[{', '.join(quote_literal(v) for v in value)}]")
        else:
            parts.append(f"{key}={quote_literal(value)}")
    return ", ".join(parts)


def _csv_error(e: duckdb.Error, src: _Source) -> BadInput:
    """Turn DuckDB's CSV error into one line naming the place in the file."""
    msg = str(e)
    line = re.search(r"CSV Error on Line: (\d+)", msg)
    record = int(line.group(1)) if line else None
    found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", msg)
    if found:
        expected, got = int(found.group(1)), int(found.group(2))
        physical = _ragged_line(src, expected, record) or record
        return BadInput(f"line {physical} has {got} field{'s' * (got != 1)}, expected {expected}")
    where = f"line {record}" if record else "the file"
    if _too_long(msg):
        return BadInput(f"{where if record else 'a line'} is longer than {_mb(MAX_LINE_BYTES)}")
    if "unterminated quote" in msg:
        return BadInput(f"{where} has a quoted value that is never closed")
    if "Invalid unicode" in msg:
        return BadInput(f"{where} is not valid {src.csv['encoding'].upper()} text")
    return BadInput(f"could not read the file as {src.fmt.upper()}: {_first_line(e, drop_quoted_paths=True)}")


def _ragged_line(src: _Source, expected: int, record: int | None) -> int | None:
    """The physical line (1-based) where the first row with the wrong number of fields starts.

    DuckDB counts records, not lines, so quoted newlines would shift its number; this re-reads the file up to
    that record (only when there is an error to report).
    """
    opts = src.csv
    encoding = "utf-8-sig" if opts["encoding"] == "utf-8" else opts["encoding"]
    with open(src.path, encoding=encoding, errors="replace", newline="") as f:
        reader = csv.reader(f, **_csv_dialect(opts["delim"], opts["quote"], opts["escape"]))
        start = 1
        for n, row in enumerate(reader, start=1):
            if row and len(row) != expected:
                return start
            if record is not None and n > record + 1000:
                return None  # the two parsers disagree; DuckDB's record number is the better answer
            start = reader.line_num + 1
    return None


# -----------------------------------------------------------------------------------------------------------
# JSON, Parquet, Excel


def _open_json(con, path: Path, text: str, encoding: str) -> _Source:
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
    src = _Source(fmt, path, f"{reader})", [], [], json=reader, row_bound=bound)
    try:
        keys, types = _describe(con, src.from_sql)  # types from DuckDB's sample of the records
        if layout == "unstructured" and types and all(t.endswith("[]") for t in types):
            # One object of lists, {"col": [values...]}: a table stored by column.
            if con.execute(f"SELECT count(*) FROM {src.from_sql}").fetchone()[0] == 1:
                _scan_all_json(con, src)
                unnest = ", ".join(f"unnest({quote_ident(k)}) AS {quote_ident(k)}" for k in src.names)
                src.from_sql = f"(SELECT {unnest} FROM {src.from_sql})"
                keys, types = _describe(con, src.from_sql)
        elif _fractions_after_sample(con, reader, keys, types):
            _scan_all_json(con, src)
            keys, types = _describe(con, src.from_sql)
    except duckdb.Error as e:
        raise _json_error(e, path) from None
    src.names, notes = _unique_names(keys)
    src.types, src.notes = types, notes + _text_notes(src.names, types)
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
    ints = [k for k, t in zip(keys, types) if INTEGER.match(t)]
    if not ints:
        return False
    columns = ", ".join(f"{quote_literal(k)}: 'DOUBLE'" for k in ints)
    checks = ", ".join(f"bool_or({quote_ident(k)} <> trunc({quote_ident(k)}) OR abs({quote_ident(k)}) >= {2**53})" for k in ints)
    try:
        found = con.execute(f"SELECT {checks} FROM {reader}, columns={{{columns}}})").fetchone()
    except duckdb.Error:
        return True  # something else that is not a number: let the full pass sort it out
    return any(found)


def _scan_all_json(con, src: _Source) -> bool:
    """Type every record (a full extra pass), then read with those types given explicitly."""
    if src.json is None:
        return False
    keys, types = _describe(con, f"{src.json}, sample_size=-1)")
    columns = ", ".join(f"{quote_literal(k)}: {quote_literal(t)}" for k, t in zip(keys, types))
    src.from_sql, src.json = f"{src.json}, columns={{{columns}}})", None
    src.names, notes = _unique_names(keys)
    src.types, src.notes = types, notes + _text_notes(src.names, types)
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
        return BadInput(_NO_MEMORY)
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
    return BadInput(f"could not read the JSON: {_first_line(e, drop_quoted_paths=True)}")


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


def _open_parquet(con, path: Path, settings: Settings) -> _Source:
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
    if tail[4:] != b"PAR1":
        raise BadInput("the Parquet file is truncated or corrupt (no footer)")
    if int.from_bytes(tail[:4], "little") > MAX_PARQUET_FOOTER:
        raise BadInput(f"the Parquet file's footer is larger than {_mb(MAX_PARQUET_FOOTER)}")
    from_sql = f"read_parquet({quote_literal(str(path))})"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {from_sql}").fetchall()
        n_rows = _check_parquet_footer(con, path, settings, len(described))
    except duckdb.Error as e:
        raise BadInput(f"the Parquet file is corrupt: {_first_line(e, drop_quoted_paths=True)}") from None
    types = [r[1] for r in described]
    raw = _parquet_names(path)
    names, notes = _unique_names(raw if len(raw) == len(types) else [r[0] for r in described])
    return _Source("parquet", path, from_sql, names, types, notes + _text_notes(names, types), row_bound=n_rows)


def _check_parquet_footer(con, path: Path, settings: Settings, n_columns: int) -> int:
    """The number of rows, refusing from the footer alone, before any data is read: a 168 KB file can declare
    100M rows, and a 10 KB one (zstd) a 300 MB string, which reading would first decompress whole."""
    file = quote_literal(str(path))
    _check_width(n_columns, settings)
    (n_rows,) = con.execute(f"SELECT num_rows FROM parquet_file_metadata({file})").fetchone()
    n_values, column, per_value = con.execute(
        "SELECT sum(num_values), arg_max(path_in_schema, total_uncompressed_size / greatest(num_values, 1)), "
        f"max(total_uncompressed_size / greatest(num_values, 1)) FROM parquet_metadata({file})"
    ).fetchone()
    if n_rows > settings.max_rows:
        raise BadInput(_over_cap(settings, 1))
    if max(n_rows * n_columns, n_values or 0) > settings.max_cells:  # list items count as cells: they are stored
        raise BadInput(_over_cap(settings, n_columns))
    if (per_value or 0) > 2 * settings.max_cell_bytes:  # surely over, page headers and all; the COPY checks exactly
        raise BadInput(f"column {column!r} has a value larger than {_cell_cap(settings)}")
    return n_rows


def _parquet_names(path: Path) -> list[str]:
    # DuckDB renames duplicate names while reading; the footer has the names as written.
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - DuckDB already validated the file; fall back to its names
        return []


def _open_xlsx(path: Path, work: Path, settings: Settings) -> _Source:
    """The first sheet, streamed row by row into Parquet parts in the work folder (by a child process: see
    _stage_in_child), then read like a Parquet file: memory stays bounded however long the sheet (pandas.read_excel
    held a 1M-row sheet whole: 671 MB, 142 s)."""
    staged = _stage_in_child(path, work, settings)
    kept = [j for j, kinds in enumerate(staged.kinds) if kinds or staged.header[j] != ""]
    names, notes = _unique_names([staged.header[j] for j in kept])
    types = [_excel_type(staged.kinds[j]) for j in kept]
    parts = "[" + ", ".join(quote_literal(str(p)) for p in staged.parts) + "]"
    casts = ", ".join(f"CAST(c{j} AS {t})" for j, t in zip(kept, types))
    from_sql = f"(SELECT {casts} FROM read_parquet({parts}, union_by_name=true))"
    return _Source("xlsx", path, from_sql, names, types, notes, row_bound=staged.n_rows)


def _stage_in_child(path: Path, work: Path, settings: Settings) -> _StagedSheet:
    """Stage the sheet in a child process with an address-space limit and a time limit.

    openpyxl parses whatever XML a workbook holds, and a crafted part (one row of tens of millions of cells, a huge
    merged-cells list) can grow it before any check of ours runs: in a child, that ends the child, never the server.
    """
    caps = {name: getattr(settings, name)
            for name in ("max_rows", "max_cells", "max_cell_bytes", "max_columns", "max_upload_bytes")}
    caps["process_bytes"] = XLSX_PROCESS_BYTES
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, "-m", "recipe_core.data.datasets", "stage-xlsx", str(path), str(work),
                               json.dumps(caps)], capture_output=True, text=True, timeout=XLSX_TIMEOUT_S, env=env,
                              cwd=str(ROOT), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BadInput(f"the Excel workbook took longer than {XLSX_TIMEOUT_S:.0f} s to read; save the sheet as "
                       "CSV") from None
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    if result is None:  # killed at its memory limit, or worse: say what is known
        raise BadInput("the Excel workbook needs more memory to read than this server allows; save the sheet as CSV")
    if not result["ok"]:
        raise BadInput(result["error"])
    return _StagedSheet(result["header"], [set(k) for k in result["kinds"]], [Path(p) for p in result["parts"]],
                        result["n_rows"])


def _stage_workbook(path: Path, work: Path, settings: Settings) -> _StagedSheet:
    """What the child process of _stage_in_child does."""
    import openpyxl

    _check_workbook_parts(path, settings)
    with open(path, "rb") as file:  # a file, not a path: openpyxl refuses an upload's temp name (not .xlsx)
        try:
            book = openpyxl.load_workbook(file, read_only=True, data_only=True, keep_links=False)
        except Exception as e:  # noqa: BLE001 - openpyxl raises many types for broken workbooks
            raise BadInput(f"the Excel workbook could not be read: {_first_line(e)}") from None
        try:
            sheet = book.worksheets[0]
            sheet.reset_dimensions()  # the declared size may lie: rows then end at their last cell
            return _stage_sheet(sheet.iter_rows(values_only=True), work, settings)
        except (BadInput, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - a broken sheet fails while it is parsed
            raise BadInput(f"the Excel workbook could not be read: {_first_line(e)}") from None
        finally:
            book.close()


def _stage_workbook_main(argv: list[str]) -> int:
    """python -m recipe_core.datasets stage-xlsx PATH WORK CAPS_JSON: one JSON line, the staged sheet or an error."""
    from recipe_core.config import load_settings
    from recipe_core.training.capacity import limit_memory

    path, work, caps = Path(argv[0]), Path(argv[1]), json.loads(argv[2])
    limit_memory(caps.pop("process_bytes"))
    settings = replace(load_settings({"RECIPE_HOME": str(work)}), **caps)
    try:
        staged = _stage_workbook(path, work, settings)
        out = {"ok": True, "header": staged.header, "kinds": [sorted(k) for k in staged.kinds],
               "parts": [str(p) for p in staged.parts], "n_rows": staged.n_rows}
    except BadInput as e:
        out = {"ok": False, "error": str(e)}
    except MemoryError:
        out = {"ok": False, "error": "the Excel workbook needs more memory to read than this server allows; "
                                     "save the sheet as CSV"}
    print(json.dumps(out))
    return 0


def _check_workbook_parts(path: Path, settings: Settings) -> None:
    """Bound what openpyxl inflates (zipfile never reads past a part's declared size): the whole workbook by the
    upload cap, each part that openpyxl's read-only mode parses whole by XLSX_PART_BYTES (the shared strings by
    XLSX_STRINGS_BYTES), and each streamed sheet by Excel's row limit."""
    try:
        with zipfile.ZipFile(path) as zf:
            sizes = {e.filename: e.file_size for e in zf.infolist()}
            if "xl/workbook.xml" not in sizes:
                raise BadInput("zip archives are supported only as Excel workbooks (.xlsx)")
            if sum(sizes.values()) > settings.max_upload_bytes:
                raise BadInput(f"the workbook decompresses to more than {_mb(settings.max_upload_bytes)} "
                               "(the RECIPE_MAX_UPLOAD_MB limit)")
            strings = _shared_strings_part(zf, sizes)
            for name, size in sizes.items():
                cap = XLSX_STRINGS_BYTES if name == strings else XLSX_PART_BYTES if _parsed_whole(name) else None
                if cap is not None and size > cap:
                    raise BadInput(f"the workbook's part {storable(name)[:100]!r} decompresses to more than "
                                   f"{_mb(cap)}")
            for name in sizes:
                if _streamed_sheet(name):
                    _check_sheet_rows(zf, name)
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise BadInput("the file looks like a zip archive but is corrupt") from None


def _shared_strings_part(zf: zipfile.ZipFile, sizes: dict[str, int]) -> str | None:
    """Where the content types put the shared strings, as openpyxl finds them (None: openpyxl will say why)."""
    from openpyxl.packaging.manifest import Manifest
    from openpyxl.xml.constants import ARC_CONTENT_TYPES, SHARED_STRINGS
    from openpyxl.xml.functions import fromstring

    if sizes.get(ARC_CONTENT_TYPES, 0) > XLSX_PART_BYTES:
        return None  # refused as a part parsed whole
    try:
        found = Manifest.from_tree(fromstring(zf.read(ARC_CONTENT_TYPES))).find(SHARED_STRINGS)
    except (KeyError, SyntaxError, TypeError, ValueError):
        return None
    return found.PartName[1:] if found is not None else None


def _streamed_sheet(name: str) -> bool:
    return name.startswith("xl/worksheets/") and name.endswith(".xml") and "/_rels/" not in name


def _parsed_whole(name: str) -> bool:
    """XML that openpyxl's read-only mode parses at once: all but the streamed sheets and the pivot caches it
    skips; pictures and embedded files it never reads."""
    return name.endswith((".xml", ".rels")) and not _streamed_sheet(name) and not name.startswith("xl/pivotCache/")


def _check_sheet_rows(zf: zipfile.ZipFile, name: str) -> None:
    """Refuse a sheet of more rows than Excel allows before openpyxl parses it: openpyxl keeps every parsed <row>
    element (cleared, but still attached: ~140 bytes each), and parses a sheet without <dimension> twice.
    One inflate-and-regex pass, 1.8 s for a 1M-row sheet that openpyxl then parses in ~70 s."""
    n_rows, tail = 0, b""
    with zf.open(name) as f:
        while n_rows <= EXCEL_ROWS and (chunk := f.read(CHUNK)):
            data = tail + chunk
            n_rows += len(XML_ROW.findall(data)) - len(XML_ROW.findall(tail))  # tail: counted last time
            tail = data[-64:]
    if n_rows > EXCEL_ROWS:
        raise BadInput(f"the workbook's sheet {storable(name)[:100]!r} has more than {EXCEL_ROWS:,} rows, "
                       "Excel's own limit")


@dataclass
class _StagedSheet:
    header: list[str]  # the first non-blank row, as names
    kinds: list[set[str]]  # per column: the DuckDB types of the values seen below the header
    parts: list[Path]  # Parquet files of text columns c0, c1, ... (a part may be narrower than the sheet)
    n_rows: int


def _stage_sheet(rows, work: Path, settings: Settings) -> _StagedSheet:
    """Write the sheet's non-blank rows below the header as text, applying the caps as the rows arrive."""
    import openpyxl.utils

    header, kinds, parts, batch, batch_cells, batch_chars, n_data = None, [], [], [], 0, 0, 0
    for number, row in enumerate(rows, start=1):
        if number > settings.max_rows + 1:  # blank rows too: each one costs a parse
            raise BadInput(f"the sheet has more than {settings.max_rows:,} rows (the RECIPE_MAX_ROWS limit)")
        values = [_excel_value(v) for v in row]
        for j, v in enumerate(values):
            if type(v) is str:
                batch_chars += len(v)
                if len(v) * 4 > settings.max_cell_bytes and len(v.encode()) > settings.max_cell_bytes:
                    cell = f"{openpyxl.utils.get_column_letter(j + 1)}{number}"
                    raise BadInput(f"the cell {cell} holds more than {_cell_cap(settings)}")
        if all(v is None for v in values):
            continue  # blank rows are dropped, as pandas did
        _check_width(len(values), settings)
        if header is None:
            header = [_cell_name(v) for v in values]
            continue
        n_data += 1
        width = max(len(values), len(header), len(kinds))
        if n_data * width > settings.max_cells:
            raise BadInput(_over_cap(settings, width))
        kinds.extend(set() for _ in range(width - len(kinds)))
        batch.append(values)
        batch_cells += len(values)
        if batch_cells >= XLSX_BATCH_CELLS or batch_chars >= XLSX_BATCH_CHARS:
            parts.append(_write_sheet_part(batch, kinds, work / f"sheet-{len(parts)}.parquet"))
            batch, batch_cells, batch_chars = [], 0, 0
    if header is None:
        raise BadInput("the first sheet of the workbook is empty")
    if n_data == 0:
        raise BadInput("the first sheet has a header row but no data rows")
    if batch:
        parts.append(_write_sheet_part(batch, kinds, work / f"sheet-{len(parts)}.parquet"))
    return _StagedSheet(header + [""] * (len(kinds) - len(header)), kinds, parts, n_data)


def _excel_value(v):
    """A cell as pandas.read_excel read it: missing markers and error values are None, whole numbers are ints."""
    if type(v) is str:
        return None if v in EXCEL_MISSING else v
    if type(v) is float and v.is_integer():
        return int(v)
    return v


def _write_sheet_part(batch: list[list], kinds: list[set[str]], path: Path) -> Path:
    """One Parquet part of text columns (a value's text casts back exactly); notes the types each column holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    width = len(kinds)
    columns = {}
    for j, values in enumerate(zip(*(r + [None] * (width - len(r)) for r in batch))):
        kinds[j] |= _excel_kinds(values)
        columns[f"c{j}"] = pa.array([None if v is None else str(v) for v in values], pa.string())
    pq.write_table(pa.table(columns), path, compression="none")
    return path


def _excel_kinds(values) -> set[str]:
    types = set(map(type, values)) - {type(None)}
    kinds = {EXCEL_TYPES.get(t, "VARCHAR") for t in types}
    if int in types and not all(-(2**63) <= v < 2**63 for v in values if type(v) is int):
        kinds.add("VARCHAR")  # beyond BIGINT: pandas kept such a column as objects, then text
    return kinds


def _excel_type(kinds: set[str]) -> str:
    """One type per column, as pandas' convert_dtypes gave: mixed cells (numbers and words) are kept as text."""
    if kinds == {"BIGINT", "DOUBLE"}:
        return "DOUBLE"
    return next(iter(kinds)) if len(kinds) == 1 else "VARCHAR"


def _cell_name(value) -> str:
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# -----------------------------------------------------------------------------------------------------------
# names, snapshot, kinds, catalog


def _unique_names(raw: list[str]) -> tuple[list[str], list[str]]:
    """Keep names exactly; fill blanks; suffix duplicates _2, _3 (DuckDB names are case-insensitive)."""
    taken = {n.lower() for n in raw} | set(RESERVED_NAMES)
    seen: set[str] = set(RESERVED_NAMES)
    names, notes = [], []
    for i, name in enumerate(raw):
        if name == "":
            new = f"column_{i + 1}"
            while new.lower() in taken or new.lower() in seen:
                new += "_"
            notes.append(f"column {i + 1} has no name; named it {new!r}")
        elif name.lower() in seen:
            n = 2
            while f"{name}_{n}".lower() in taken or f"{name}_{n}".lower() in seen:
                n += 1
            new = f"{name}_{n}"
            why = "is reserved for the row id" if name.lower() in RESERVED_NAMES else "is a duplicate"
            notes.append(f"column name {name!r} {why}; renamed to {new!r}")
        else:
            new = name
        seen.add(new.lower())
        names.append(new)
    return names, notes


def _select_list(src: _Source) -> str:
    parts = []  # no row id column: see snapshot.ROW_ID
    for i, (name, dtype) in enumerate(zip(src.names, src.types), start=1):
        if src.check_integers and dtype == "BIGINT":
            expr = _checked_integer(f"#{i}", i, exact=i - 1 in src.exact)
        else:
            expr = _stored(f"#{i}", dtype)
        parts.append(f"{expr} AS {quote_ident(name)}")
    return ", ".join(parts)


def _checked_integer(expr: str, position: int, exact: bool) -> str:
    """Cast to BIGINT, or stop with a marked error naming the column and the value that does not fit."""
    if exact:  # read as text
        value = f"TRY_CAST({expr} AS BIGINT)"
        bad = f"contains({expr}, '.') OR ({value} IS NULL AND {expr} IS NOT NULL)"
    else:  # read as DOUBLE
        value = f"CAST({expr} AS BIGINT)"
        bad = f"{expr} <> trunc({expr}) OR abs({expr}) >= {2**53}"
    return f"CASE WHEN {bad} THEN error('{WIDEN_MARK}{position}:' || CAST({expr} AS VARCHAR)) ELSE {value} END"


def _stored(expr: str, dtype: str) -> str:
    """Types the app does not handle are kept as text (nested values as JSON text)."""
    if KEEP_TYPES.match(dtype):
        return expr
    if _nested(dtype):
        return f"CAST(to_json({expr}) AS VARCHAR)"
    return f"CAST({expr} AS VARCHAR)"


def _text_notes(names: list[str], types: list[str]) -> list[str]:
    return [
        f"column {n!r} ({t}) is stored as text" + (" (JSON)" if _nested(t) else "")
        for n, t in zip(names, types)
        if not KEEP_TYPES.match(t)
    ]


def _nested(dtype: str) -> bool:
    return dtype.endswith("]") or dtype.startswith(("STRUCT", "MAP", "UNION"))


def _write_snapshot(con, src: _Source, tmp: Path, settings: Settings) -> int:
    """COPY the source to Parquet, checking every text value's size on the way and stopping one row past the
    row and cell caps (a CSV of 500M short lines is refused after 20M, not written whole); a CSV is re-read
    when a type guess proves wrong."""
    _check_width(len(src.names), settings)
    cap = _row_cap(settings, len(src.names))
    # A LIMIT makes DuckDB write serially (measured, 5M-row CSV: 8.3-11.7 s, against 5.2-6.8 s without), so it
    # is there only when the file may hold more rows than the cap.
    limit = f"LIMIT {cap + 1}" if src.row_bound is None or src.row_bound > cap else ""
    for _ in range(len(src.names) + 3):  # each retry widens a column, or changes encoding or line limit once
        sql = (
            f"COPY (SELECT {_size_checked(src, settings)} FROM (SELECT {_select_list(src)} FROM {src.from_sql} "
            f"{limit})) TO {quote_literal(str(tmp))} "
            f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE}, COMPRESSION {COMPRESSION})"
        )
        try:
            n_rows = int(con.execute(sql).fetchone()[0])
        except duckdb.Error as e:
            msg = str(e)
            too_big = re.search(CELL_MARK + r"(\d+)", msg)
            if too_big:
                name = src.names[int(too_big.group(1)) - 1]
                raise BadInput(f"column {name!r} has a value larger than {_cell_cap(settings)}") from None
            if src.csv is not None:
                retry = _widen(src, msg) or _fall_back_to_latin1(src, msg) or _allow_long_lines(src, msg)
                src.from_sql = _csv_from(src)
            else:  # a JSON record beyond the sample did not fit its types (e.g. a new key)
                try:
                    retry = _scan_all_json(con, src)
                except duckdb.Error as again:
                    raise _read_error(again, src) from None
            if not retry:
                raise _read_error(e, src) from None
        else:
            if n_rows > cap:
                raise BadInput(_over_cap(settings, len(src.names)))
            return n_rows
    raise BadInput("could not settle the column types of the file")


def _size_checked(src: _Source, settings: Settings) -> str:
    """The stored columns, each text one stopped with a marked error when a value is over the cell cap
    (strlen of a DuckDB string is its stored length: no scan)."""
    parts = []
    for i, (name, dtype) in enumerate(zip(src.names, src.types), start=1):
        col = quote_ident(name)
        if KEEP_TYPES.match(dtype) and dtype != "VARCHAR":
            parts.append(col)  # numbers, dates and booleans have a fixed size
        else:
            parts.append(f"CASE WHEN strlen({col}) > {settings.max_cell_bytes} THEN error('{CELL_MARK}{i}') "
                         f"ELSE {col} END AS {col}")
    return ", ".join(parts)


def _row_cap(settings: Settings, n_columns: int) -> int:
    return min(settings.max_rows, settings.max_cells // max(1, n_columns))


def _over_cap(settings: Settings, n_columns: int) -> str:
    if _row_cap(settings, n_columns) == settings.max_rows:
        return f"the file has more than {settings.max_rows:,} rows (the RECIPE_MAX_ROWS limit)"
    return (f"the file has more than {settings.max_cells:,} cells, rows x columns "
            f"(the RECIPE_MAX_CELLS limit; {n_columns:,} columns allow {_row_cap(settings, n_columns):,} rows)")


def _cell_cap(settings: Settings) -> str:
    return f"{_mb(settings.max_cell_bytes)} (the RECIPE_MAX_CELL_MB limit)"


def _check_width(n_columns: int, settings: Settings) -> None:
    if n_columns > settings.max_columns:
        raise BadInput(f"the file has more than {settings.max_columns:,} columns (the RECIPE_MAX_COLUMNS limit)")


def _widen(src: _Source, msg: str) -> bool:
    """A value later in the file did not fit the type guessed from the sample: widen that column and retry."""
    marked = re.search(WIDEN_MARK + r"(\d+):(.*)", msg)
    if marked:
        i, value = int(marked.group(1)) - 1, marked.group(2)
        number = _float(value)
        if i not in src.exact and (number is None or not math.isfinite(number) or abs(number) >= 2**53):
            src.exact.add(i)  # too large for a double to tell an integer: check the text instead
            return True
    else:
        found = [i for i, n in enumerate(src.names) if f'converting column "{n}".' in msg]
        if not found:
            return False
        i = found[0]
        value = re.search(r'Could not convert string "(.*)" to', msg)
        value = value.group(1) if value else ""
    new = "DOUBLE" if INTEGER.match(src.types[i]) and _float(value) is not None else "VARCHAR"
    if new == src.types[i]:
        return False
    src.types[i] = new
    return True


def _fall_back_to_latin1(src: _Source, msg: str) -> bool:
    """A plain ASCII start was read as UTF-8, then a Latin-1 byte came further down: read all as Latin-1."""
    if src.csv is None or src.csv["encoding"] != "utf-8" or not src.ascii_head or "Invalid unicode" not in msg:
        return False
    src.csv["encoding"] = "latin-1"
    return True


def _allow_long_lines(src: _Source, msg: str) -> bool:
    if not _too_long(msg) or src.csv.get("max_line_size") == MAX_LINE_BYTES:
        return False
    src.csv["max_line_size"] = MAX_LINE_BYTES
    return True


def _too_long(msg: str) -> bool:
    # DuckDB says "Parallel CSV Reader ... does not support a full read" for a line longer than its 32 MB buffer
    return "Maximum line size" in msg or "Parallel CSV Reader" in msg


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _read_error(e: duckdb.Error, src: _Source) -> BadInput:
    if isinstance(e, duckdb.OutOfMemoryException):
        return BadInput(_NO_MEMORY)
    if src.csv is not None:
        return _csv_error(e, src)
    if src.fmt.startswith("json"):
        return _json_error(e, src.path)
    if src.fmt.startswith("parquet"):
        return BadInput(f"the Parquet file is corrupt: {_first_line(e, drop_quoted_paths=True)}")
    return BadInput(f"could not read the {src.fmt} file: {_first_line(e, drop_quoted_paths=True)}")


def _columns(con, snapshot: Path, n_rows: int) -> tuple[Column, ...]:
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(snapshot))})").fetchall()
    types = {r[0]: r[1] for r in described}
    stats = _text_stats(con, snapshot, [n for n, t in types.items() if t == "VARCHAR"], n_rows)
    return tuple(
        Column(name, dtype, infer_kind(dtype, n_rows, *stats.get(name, (0, None)))) for name, dtype in types.items()
    )


def _text_stats(con, snapshot: Path, names: list[str], n_rows: int) -> dict[str, tuple[int, float | None]]:
    """Distinct count and mean length of text columns, to tell categories from free text.

    Distinct counts cover every row (exact up to 200k rows, HyperLogLog beyond); the mean length comes from
    the first 100k rows, enough for a threshold and much cheaper on long texts.
    """
    distinct = "count(DISTINCT {})" if n_rows <= 200_000 else "approx_count_distinct({})"
    parquet = f"read_parquet({quote_literal(str(snapshot))})"
    out = {}
    for start in range(0, len(names), 200):  # bounded statement size for very wide files
        batch = [quote_ident(n) for n in names[start : start + 200]]
        counts = con.execute(f"SELECT {', '.join(distinct.format(c) for c in batch)} FROM {parquet}").fetchone()
        lengths = con.execute(
            f"SELECT {', '.join(f'avg(length({c}))' for c in batch)} "
            f"FROM (SELECT {', '.join(batch)} FROM {parquet} LIMIT 100000)"
        ).fetchone()
        for name, count, length in zip(names[start : start + 200], counts, lengths):
            out[name] = (int(count), None if length is None else float(length))
    return out


def _publish(tmp: Path, final: Path) -> None:
    """Make the snapshot visible atomically; a snapshot that exists is never replaced (it is immutable)."""
    try:
        os.link(tmp, final)  # fails if another process published the same bytes first: theirs is identical
    except FileExistsError:
        pass
    except OSError:
        if not final.exists():
            os.replace(tmp, final)


def _existing(settings: Settings, store: Store, digest: str) -> DatasetRecord | None:
    """The dataset for these bytes if it is registered and its snapshot is in place."""
    found = _registered(store, digest[:16])
    if found is not None and (settings.snapshots_dir / found.snapshot).exists():
        return found
    return None


def _registered(store: Store, dataset_id: str) -> DatasetRecord | None:
    try:
        found = store.get_dataset(dataset_id)
    except NotFound:
        return None
    return found if found.id == dataset_id else None


_NO_MEMORY = "the file needs more memory to ingest than this server allows"


def _tmp_root(settings: Settings) -> Path:
    root = settings.home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_size(size: int, settings: Settings) -> None:
    if size == 0:
        raise BadInput("the file is empty")
    if size > settings.max_upload_bytes:
        raise BadInput(_too_big(f"the file ({_mb(size)})", settings))


def _too_big(what: str, settings: Settings) -> str:
    return f"{what} is larger than the {_mb(settings.max_upload_bytes)} limit (RECIPE_MAX_UPLOAD_MB)"


def _mb(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _no_rows(src: _Source) -> str:
    if src.csv is not None and src.csv.get("header"):
        return "the file has a header row but no data rows"
    return "the file has no data rows"


def _default_name(source_name: str) -> str:
    """The file name without folders (either slash) and without .gz and the format's extension."""
    base = PureWindowsPath(source_name).name
    if base.lower().endswith(".gz"):
        base = base[:-3]
    return Path(base).stem


def _first_line(e: Exception, drop_quoted_paths: bool = False) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    line = re.sub(r"^[A-Za-z ]*Error: ", "", line)
    if drop_quoted_paths:
        # our temp paths mean nothing to the person who uploaded the file
        line = re.sub(r"""(in )?file ["'][^"']*["'],?\s*""", "", line)
    return line


if __name__ == "__main__":
    sys.exit(_stage_workbook_main(sys.argv[2:]) if sys.argv[1:2] == ["stage-xlsx"] else 2)
