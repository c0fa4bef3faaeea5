"""Ingestion: a file or an upload becomes an immutable Parquet snapshot, named by content hash, in the catalog.

Content is sniffed, never trusted by extension. Bad input raises BadInput with one line and leaves nothing behind.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import statistics
import uuid
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

import duckdb

from recipe_core.config import Settings
from recipe_core.errors import BadInput, NotFound
from recipe_core.queries import quote_ident, quote_literal
from recipe_core.snapshot import RESERVED_NAMES
from recipe_core.store import Column, DatasetRecord, Store

ROW_GROUP_SIZE = 100_000  # row-id ranges then prune whole row groups (fast deep pages)
COMPRESSION = "snappy"  # measured: zstd (level 1) made ingest ~25% slower for ~30% smaller files
CHUNK = 1 << 20  # bytes per read when hashing, staging and decompressing
SAMPLE_BYTES = 1 << 20  # the head of a file that sniffing looks at
MAX_LINE_BYTES = 64 << 20  # one CSV line or JSON record; a 10 MB cell must fit
INGEST_MEMORY_LIMIT = "2GB"  # DuckDB spills to the work folder beyond this
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


# -----------------------------------------------------------------------------------------------------------
# public API


def ingest_file(
    settings: Settings, store: Store, path: Path, *, name: str | None = None, source_name: str | None = None
) -> DatasetRecord:
    """Ingest a file on disk (CLI, sample data). Re-ingesting identical bytes returns the existing record."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    size = path.stat().st_size
    _check_size(size, settings)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing (a full read) runs while DuckDB sniffs the file: both release the GIL.
        digest = pool.submit(_sha256_file, path)
        return _ingest(settings, store, path, digest, size, source_name or path.name, name)


def ingest_bytes(
    settings: Settings, store: Store, data: bytes | BinaryIO, *, source_name: str, name: str | None = None
) -> DatasetRecord:
    """Ingest a browser upload: streamed to a private temp file (hashed and capped on the way), then ingested."""
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
        return _ingest(settings, store, staged, digest, size, source_name, name)
    finally:
        staged.unlink(missing_ok=True)


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
        n_rows = _write_snapshot(con, src, tmp)
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
        return _open_parquet(con, path)
    if head.startswith(b"PK\x03\x04"):
        return _open_xlsx(con, path, settings)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput("old Excel .xls files are not supported; save the sheet as .xlsx or CSV")
    encoding, text = _decode_head(head)
    if not text.strip():
        raise BadInput("the file is empty")
    first = text.lstrip()[:1]
    if first in "[{":
        return _open_json(con, path, text, encoding)
    return _open_csv(con, path, head, text, encoding)


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


def _open_csv(con, path: Path, head: bytes, text: str, encoding: str) -> _Source:
    complete = len(head) < SAMPLE_BYTES  # the sample holds the whole file
    if not complete:
        text = text[: text.rfind("\n") + 1] or text  # drop the cut-off last line
    delim = _sniff_delimiter(text)
    fmt = "tsv" if delim == "\t" else "csv"
    header_fields, modal = _sample_shape(text, delim)
    base = {
        "delim": delim,
        "encoding": encoding,
        "nullstr": _null_strings(text, delim),
        "skip": 0,
        "comment": "",
    }
    sniffed = _duckdb_sniff(con, path, base)
    if sniffed is None:  # perhaps a line over DuckDB's default 2 MB; allowing longer ones always costs speed
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
        # first bad line is reported, rather than guessing a different dialect.
        has_header, types = True, ["VARCHAR"] * len(header_fields)
        quote, escape, extra = '"', '"', {}
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
                  check_integers=not seen_all)
    src.from_sql = _csv_from(src)
    return src


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
    if "unterminated quote" in msg:
        return BadInput(f"{where} has a quoted value that is never closed")
    if "Maximum line size" in msg:
        return BadInput(f"{where} is longer than {_mb(MAX_LINE_BYTES)}")
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
    src = _Source(fmt, path, f"{reader})", [], [], json=reader)
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
    except ValueError:
        return False
    return rest.lstrip().startswith("{")


def _json_error(e: duckdb.Error, path: Path) -> BadInput:
    msg = str(e)
    if isinstance(e, duckdb.OutOfMemoryException) or "failed to allocate" in msg:
        return BadInput(_NO_MEMORY)
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
    if not text.lstrip().startswith("["):
        for number, line in enumerate(text.splitlines(), start=1):  # JSON Lines: each line on its own
            try:
                if line.strip():
                    json.loads(line)
            except json.JSONDecodeError as e:
                return f"at line {number}, column {e.colno}: {e.msg}"
    return f"at line {whole.lineno}, column {whole.colno}: {whole.msg}"


def _open_parquet(con, path: Path) -> _Source:
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        tail = f.read(4)
    if tail != b"PAR1":
        raise BadInput("the Parquet file is truncated or corrupt (no footer)")
    from_sql = f"read_parquet({quote_literal(str(path))})"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {from_sql}").fetchall()
    except duckdb.Error as e:
        raise BadInput(f"the Parquet file is corrupt: {_first_line(e, drop_quoted_paths=True)}") from None
    types = [r[1] for r in described]
    raw = _parquet_names(path)
    names, notes = _unique_names(raw if len(raw) == len(types) else [r[0] for r in described])
    return _Source("parquet", path, from_sql, names, types, notes + _text_notes(names, types))


def _parquet_names(path: Path) -> list[str]:
    # DuckDB renames duplicate names while reading; the footer has the names as written.
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - DuckDB already validated the file; fall back to its names
        return []


def _open_xlsx(con, path: Path, settings: Settings) -> _Source:
    import pandas as pd

    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except zipfile.BadZipFile:
        raise BadInput("the file looks like a zip archive but is corrupt") from None
    if "xl/workbook.xml" not in {e.filename for e in entries}:
        raise BadInput("zip archives are supported only as Excel workbooks (.xlsx)")
    if sum(e.file_size for e in entries) > settings.max_upload_bytes:
        # zipfile never inflates past the declared sizes, so this bounds what openpyxl can expand
        raise BadInput(
            f"the workbook decompresses to more than {_mb(settings.max_upload_bytes)} (the RECIPE_MAX_UPLOAD_MB limit)"
        )
    try:
        raw = pd.read_excel(path, sheet_name=0, header=None, engine="openpyxl")
    except Exception as e:  # noqa: BLE001 - openpyxl raises many types for broken workbooks
        raise BadInput(f"the Excel workbook could not be read: {_first_line(e)}") from None
    raw = raw.dropna(how="all").dropna(axis=1, how="all")
    if raw.empty:
        raise BadInput("the first sheet of the workbook is empty")
    header = [_cell_name(v) for v in raw.iloc[0]]
    data = raw.iloc[1:].reset_index(drop=True)
    if len(data) == 0:
        raise BadInput("the first sheet has a header row but no data rows")
    names, notes = _unique_names(header)
    frame = pd.DataFrame({n: _excel_column(data.iloc[:, i]) for i, n in enumerate(names)})
    con.register("sheet", frame)
    types = [r[1] for r in con.execute("DESCRIBE sheet").fetchall()]
    return _Source("xlsx", path, "sheet", names, types, notes)


def _cell_name(value) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _excel_column(series):
    import pandas as pd

    series = series.convert_dtypes()
    if series.dtype == object:  # mixed cells (numbers and words): keep every value, as text
        series = series.map(lambda v: None if pd.isna(v) else str(v)).astype("string")
    return series


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


def _write_snapshot(con, src: _Source, tmp: Path) -> int:
    """COPY the source to Parquet with the row id first; a CSV is re-read when a guess proves wrong."""
    for _ in range(len(src.names) + 3):  # each retry widens a column, or changes encoding or line limit once
        sql = (
            f"COPY (SELECT {_select_list(src)} FROM {src.from_sql}) TO {quote_literal(str(tmp))} "
            f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE}, COMPRESSION {COMPRESSION})"
        )
        try:
            return int(con.execute(sql).fetchone()[0])
        except duckdb.Error as e:
            msg = str(e)
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
    raise BadInput("could not settle the column types of the file")


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
    if "Maximum line size" not in msg or src.csv.get("max_line_size") == MAX_LINE_BYTES:
        return False
    src.csv["max_line_size"] = MAX_LINE_BYTES
    return True


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
