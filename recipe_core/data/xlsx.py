"""Excel workbooks: the first sheet staged as Parquet parts by a child process with memory and time limits
(python -m recipe_core.data.xlsx PATH WORK CAPS_JSON), then read like Parquet."""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from recipe_core.config import Settings
from recipe_core.data.limits import cell_cap, check_width, over_cap
from recipe_core.data.source import CHUNK, NULL_STRINGS, Source, error_line, unique_names
from recipe_core.data.sql import quote_literal
from recipe_core.errors import BadInput
from recipe_core.safetext import storable
from recipe_core.units import human_bytes

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


def open_xlsx(path: Path, work: Path, settings: Settings) -> Source:
    """The first sheet, streamed row by row into Parquet parts in the work folder (by a child process: see
    _stage_in_child), then read like a Parquet file: memory stays bounded however long the sheet (pandas.read_excel
    held a 1M-row sheet whole: 671 MB, 142 s)."""
    staged = _stage_in_child(path, work, settings)
    kept = [j for j, kinds in enumerate(staged.kinds) if kinds or staged.header[j] != ""]
    names, notes = unique_names([staged.header[j] for j in kept])
    types = [_excel_type(staged.kinds[j]) for j in kept]
    parts = "[" + ", ".join(quote_literal(str(p)) for p in staged.parts) + "]"
    casts = ", ".join(f"CAST(c{j} AS {t})" for j, t in zip(kept, types, strict=True))
    from_sql = f"(SELECT {casts} FROM read_parquet({parts}, union_by_name=true))"
    return Source("xlsx", path, from_sql, names, types, notes, row_bound=staged.n_rows)


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
        done = subprocess.run([sys.executable, "-m", "recipe_core.data.xlsx", str(path), str(work), json.dumps(caps)],
                              capture_output=True, text=True, timeout=XLSX_TIMEOUT_S, env=env, cwd=str(ROOT),
                              stdin=subprocess.DEVNULL)
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
            raise BadInput(f"the Excel workbook could not be read: {error_line(e)}") from None
        try:
            sheet = book.worksheets[0]
            sheet.reset_dimensions()  # the declared size may lie: rows then end at their last cell
            return _stage_sheet(sheet.iter_rows(values_only=True), work, settings)
        except (BadInput, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - a broken sheet fails while it is parsed
            raise BadInput(f"the Excel workbook could not be read: {error_line(e)}") from None
        finally:
            book.close()


def _stage_workbook_main(argv: list[str]) -> int:
    """python -m recipe_core.data.xlsx PATH WORK CAPS_JSON: one JSON line, the staged sheet or an error."""
    from recipe_core.config import load_settings
    from recipe_core.limits import limit_memory

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
                raise BadInput(f"the workbook decompresses to more than {human_bytes(settings.max_upload_bytes)} "
                               "(the RECIPE_MAX_UPLOAD_MB limit)")
            strings = _shared_strings_part(zf, sizes)
            for name, size in sizes.items():
                cap = XLSX_STRINGS_BYTES if name == strings else XLSX_PART_BYTES if _parsed_whole(name) else None
                if cap is not None and size > cap:
                    raise BadInput(f"the workbook's part {storable(name)[:100]!r} decompresses to more than "
                                   f"{human_bytes(cap)}")
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
                    raise BadInput(f"the cell {cell} holds more than {cell_cap(settings)}")
        if all(v is None for v in values):
            continue  # blank rows are dropped, as pandas did
        check_width(len(values), settings)
        if header is None:
            header = [_cell_name(v) for v in values]
            continue
        n_data += 1
        width = max(len(values), len(header), len(kinds))
        if n_data * width > settings.max_cells:
            raise BadInput(over_cap(settings, width))
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
    for j, values in enumerate(zip(*(r + [None] * (width - len(r)) for r in batch), strict=True)):
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



if __name__ == "__main__":
    sys.exit(_stage_workbook_main(sys.argv[1:]) if len(sys.argv) == 4 else 2)
