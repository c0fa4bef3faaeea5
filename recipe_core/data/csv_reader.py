"""Reading delimited text (CSV, TSV): the dialect and types sniffed, lines bounded before DuckDB reads them,
a wrong guess widened, and DuckDB's errors turned into the line of the file at fault."""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from pathlib import Path

import duckdb

from recipe_core.config import Settings
from recipe_core.data.limits import check_width
from recipe_core.data.source import (
    CHUNK,
    KEEP_TYPES,
    MAX_LINE_BYTES,
    NULL_STRINGS,
    SAMPLE_BYTES,
    Source,
    error_line,
    unique_names,
)
from recipe_core.data.sql import quote_literal
from recipe_core.data.types import INT_TYPES
from recipe_core.errors import BadInput
from recipe_core.units import human_bytes

DUCKDB_LINE_BYTES = 2_000_000  # DuckDB's default max_line_size
# Fields on one line of a CSV. DuckDB's CSV reader and sniffer take ~100 bytes per field of a line outside their
# memory limit (measured: one 25M-field line, 1.5-2.9 GB to read, 5 GB to sniff), so longer lines are refused first.
MAX_LINE_FIELDS = CHUNK  # _check_lines relies on it: a line inside one chunk cannot have more
SNIFF_ROWS = 20_480  # rows DuckDB's sniffer reads to guess types (its default sample_size)
WIDEN_MARK = "recipe-widen:"  # marks our own cast errors so the column can be widened and the file re-read
DELIMITERS = (",", "\t", ";", "|")


def open_csv(con, path: Path, head: bytes, text: str, encoding: str, settings: Settings) -> Source:
    complete = len(head) < SAMPLE_BYTES  # the sample holds the whole file
    if not complete:
        text = text[: text.rfind("\n") + 1] or text  # drop the cut-off last line
    delim = _sniff_delimiter(text)
    fmt = "tsv" if delim == "\t" else "csv"
    longest, line_ends = (len(head), text.count("\n") or text.count("\r")) if complete else _check_lines(path, delim)
    header_fields, modal = _sample_shape(text, delim)
    check_width(max(len(header_fields), modal), settings)  # before DuckDB's sniffer: a wide line exhausts it
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
    names, notes = unique_names(raw_names)
    options = {**base, "quote": quote, "escape": escape, "header": has_header, **extra}
    seen_all = complete and text.count("\n") < SNIFF_ROWS
    src = Source(fmt, path, "", names, list(types), notes, csv=options, ascii_head=head.isascii(),
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
                    raise BadInput(f"line {number:,} is longer than {human_bytes(MAX_LINE_BYTES)}")
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


def _csv_from(src: Source) -> str:
    types = [_read_type(src, i) for i in range(len(src.types))]
    pairs = zip(src.names, types, strict=True)
    columns = "{" + ", ".join(f"{quote_literal(n)}: {quote_literal(t)}" for n, t in pairs) + "}"
    return (
        f"read_csv({quote_literal(str(src.path))}, auto_detect=false, strict_mode=true, "
        f"{_options_sql(src.csv)}, columns={columns})"
    )


def _read_type(src: Source, i: int) -> str:
    """DuckDB's CSV reader rounds 2.5 to 3 in a BIGINT column, so a checked one is read as DOUBLE (fast; exact
    below 2**53) or, once a larger value shows up, as text; checked_integer then casts it."""
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


def csv_error(e: duckdb.Error, src: Source) -> BadInput:
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
        return BadInput(f"{where if record else 'a line'} is longer than {human_bytes(MAX_LINE_BYTES)}")
    if "unterminated quote" in msg:
        return BadInput(f"{where} has a quoted value that is never closed")
    if "Invalid unicode" in msg:
        return BadInput(f"{where} is not valid {src.csv['encoding'].upper()} text")
    return BadInput(f"could not read the file as {src.fmt.upper()}: {error_line(e, drop_quoted_paths=True)}")


def _ragged_line(src: Source, expected: int, record: int | None) -> int | None:
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


def checked_integer(expr: str, position: int, exact: bool) -> str:
    """Cast to BIGINT, or stop with a marked error naming the column and the value that does not fit."""
    if exact:  # read as text
        value = f"TRY_CAST({expr} AS BIGINT)"
        bad = f"contains({expr}, '.') OR ({value} IS NULL AND {expr} IS NOT NULL)"
    else:  # read as DOUBLE
        value = f"CAST({expr} AS BIGINT)"
        bad = f"{expr} <> trunc({expr}) OR abs({expr}) >= {2**53}"
    return f"CASE WHEN {bad} THEN error('{WIDEN_MARK}{position}:' || CAST({expr} AS VARCHAR)) ELSE {value} END"


def reread(src: Source, msg: str) -> bool:
    """Whether the COPY's error is one a changed read fixes (a wider type, Latin-1, longer lines); if so, src
    reads that way now."""
    retry = _widen(src, msg) or _fall_back_to_latin1(src, msg) or _allow_long_lines(src, msg)
    src.from_sql = _csv_from(src)
    return retry


def _widen(src: Source, msg: str) -> bool:
    """A value later in the file did not fit the type guessed from the sample: widen that column and retry."""
    marked = re.search(WIDEN_MARK + r"(\d+):(.*)", msg)
    if marked:
        i, value = int(marked.group(1)) - 1, marked.group(2)
        number = _float_or_none(value)
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
    new = "DOUBLE" if src.types[i] in INT_TYPES and _float_or_none(value) is not None else "VARCHAR"
    if new == src.types[i]:
        return False
    src.types[i] = new
    return True


def _fall_back_to_latin1(src: Source, msg: str) -> bool:
    """A plain ASCII start was read as UTF-8, then a Latin-1 byte came further down: read all as Latin-1."""
    if src.csv is None or src.csv["encoding"] != "utf-8" or not src.ascii_head or "Invalid unicode" not in msg:
        return False
    src.csv["encoding"] = "latin-1"
    return True


def _allow_long_lines(src: Source, msg: str) -> bool:
    if not _too_long(msg) or src.csv.get("max_line_size") == MAX_LINE_BYTES:
        return False
    src.csv["max_line_size"] = MAX_LINE_BYTES
    return True


def _too_long(msg: str) -> bool:
    # DuckDB says "Parallel CSV Reader ... does not support a full read" for a line longer than its 32 MB buffer
    return "Maximum line size" in msg or "Parallel CSV Reader" in msg


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

