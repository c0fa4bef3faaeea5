"""Hostile uploads: each is ingested in a child process whose peak memory (VmHWM) and time are measured, and each is
refused with one plain line or ingested in bounded memory, leaving nothing behind."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30
DUCKDB_WORDING = ("Parallel CSV Reader", "Possible Solution", "Error:", "/tmp", "recipe_home")

# Ingests argv[1] as a browser upload would be, then reports the outcome, what is left and the peak memory.
CHILD = """
import json, sys, time
from pathlib import Path
from recipe_core.config import load_settings
from recipe_core.data.ingest import ingest_bytes
from recipe_core.errors import BadInput
from recipe_core.tracking.store import Store

settings = load_settings()
store = Store(settings.store_url)
path = Path(sys.argv[1])
start = time.perf_counter()
try:
    with open(path, "rb") as upload:
        out = {"rows": ingest_bytes(settings, store, upload, source_name=path.name).n_rows}
except BadInput as e:
    out = {"refused": str(e)}
out["seconds"] = time.perf_counter() - start
folders = (settings.snapshots_dir, settings.home / "tmp")
out["left"] = [p.name for d in folders if d.exists() for p in d.iterdir()]
out["catalog"] = len(store.list_datasets())
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
out["peak_bytes"] = int(status["VmHWM"].split()[0]) * 1024
print(json.dumps(out))
"""


def ingest_in_child(tmp_path, path, **env):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    child_env = {**os.environ, "RECIPE_HOME": str(home), **{k: str(v) for k, v in env.items()}}
    child_env.pop("RECIPE_STORE_URL", None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=child_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["peak_bytes"] < GB, out
    return out


def assert_refused(out, *words, seconds):
    """One plain line naming the limit, quickly, and nothing half-written."""
    message = out.get("refused")
    assert message is not None, out
    assert "\n" not in message and not any(w in message for w in DUCKDB_WORDING), message
    assert all(w in message for w in words), message
    assert out["seconds"] < seconds, out
    assert out["left"] == [] and out["catalog"] == 0, out


def generate(code: str, *args):
    """Make a big hostile file in a child process, so this one stays small."""
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, timeout=120)


# -- Parquet: the footer tells -----------------------------------------------------------------------------
def test_a_100m_row_parquet_is_refused_from_its_footer(tmp_path):
    path = tmp_path / "rows.parquet"
    chunk = pa.table({"x": pa.nulls(10_000_000, pa.int64()).fill_null(1)})
    with pq.ParquetWriter(path, chunk.schema, compression="zstd") as writer:
        for _ in range(10):
            writer.write_table(chunk)
    assert path.stat().st_size < 1 << 20  # 100M rows in well under a megabyte
    out = ingest_in_child(tmp_path, path)
    assert_refused(out, "more than 20,000,000 rows", "RECIPE_MAX_ROWS", seconds=1)


@pytest.mark.parametrize("padding", [0, 1_000_000], ids=["alone", "among-1M-short-values"])
def test_a_300_mb_string_in_a_10_kb_parquet(tmp_path, padding):
    path = tmp_path / "string.parquet"
    generate(
        "import duckdb, sys; duckdb.execute(f\"COPY (SELECT CASE WHEN range = {sys.argv[2]} // 2 THEN "
        "repeat('a', 300000000) ELSE 'x' END AS s FROM range(greatest({sys.argv[2]}, 1))) TO '{sys.argv[1]}' "
        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 2000000)\")", path, padding)
    assert path.stat().st_size < 20_000
    out = ingest_in_child(tmp_path, path)
    if padding == 0:  # the footer's size per value gives it away
        assert_refused(out, "column 's' has a value larger than 16 MB", "RECIPE_MAX_CELL_MB", seconds=1)
    else:  # DuckDB cannot decompress the page within the ingest memory limit, or the COPY's check stops it
        assert_refused(out, seconds=15)


# -- CSV: long and wide lines, many rows -------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, message",
    [
        (b"x" * 70_000_000, "line 1 is longer than 64 MB"),  # DuckDB read it as a header: "no data rows"
        (b"a,b\n1," + b"x" * 70_000_000 + b"\n", "line 2 is longer than 64 MB"),  # silently dropped
        (b"a,b\n1,2\n" + b"1,2\n" * 30_000 + b"3," + b"y" * 40_000_000 + b"\n4,5\n",
         "column 'b' has a value larger than 16 MB"),  # "The Parallel CSV Reader currently does not support..."
        (b"a,b,c\n" + b"1,2,3\n" * 10 + b"1," * 25_000_000 + b"\n", "line 12 has more than 1,048,576 fields"),
    ],
    ids=["70-mb-first-line", "70-mb-data-line", "40-mb-cell-after-the-sample", "25m-fields"],
)
def test_long_and_wide_csv_lines(tmp_path, data, message):
    path = tmp_path / "upload.csv"
    path.write_bytes(data)
    out = ingest_in_child(tmp_path, path)  # the 25M-field line took DuckDB 3.2 GB before
    assert_refused(out, message, seconds=10)


def test_a_csv_over_the_row_cap_stops_reading_at_the_cap(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"x\n" + b"0\n" * 3_000_000)
    out = ingest_in_child(tmp_path, path, RECIPE_MAX_ROWS=1_000_000)
    assert_refused(out, "more than 1,000,000 rows", "RECIPE_MAX_ROWS", seconds=10)


def test_a_csv_over_the_cell_cap(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_bytes(b"a,b,c,d\n" + b"1,2,3,4\n" * 300_000)
    out = ingest_in_child(tmp_path, path, RECIPE_MAX_CELLS=1_000_000)
    assert_refused(out, "more than 1,000,000 cells", "RECIPE_MAX_CELLS", "allow 250,000 rows", seconds=10)


# -- Excel: streamed -----------------------------------------------------------------------------------------
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SHEET_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def raw_xlsx(path, rows, shared=(), dimension=True):
    """A minimal workbook written directly (openpyxl's writer takes ~20 us a cell); rows are <row> elements,
    shared the shared strings (or their XML, as bytes)."""
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{SHEET_CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{SHEET_CT}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHEET_CT}.sharedStrings+xml"/></Types>'),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
                            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>'),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, text in parts.items():
            zf.writestr(name, text)
        with zf.open("xl/sharedStrings.xml", "w") as f:
            f.write(f'<sst xmlns="{MAIN}">'.encode())
            f.write(shared if isinstance(shared, bytes) else "".join(f"<si><t>{s}</t></si>" for s in shared).encode())
            f.write(b"</sst>")
        with zf.open("xl/worksheets/sheet1.xml", "w") as f:
            # Excel writes the sheet's size first; without it openpyxl parses the sheet once more to find it
            size = '<dimension ref="A1"/>' if dimension else ""
            f.write(f'<worksheet xmlns="{MAIN}">{size}<sheetData>'.encode())
            for r in rows:
                f.write(r.encode())
            f.write(b"</sheetData></worksheet>")
    return path


def sheet_rows(n_rows):
    yield '<row><c t="s"><v>0</v></c><c t="s"><v>1</v></c><c t="s"><v>2</v></c><c t="s"><v>3</v></c></row>'
    for i in range(n_rows):
        yield (f'<row><c><v>{i}</v></c><c><v>{i * 0.25}</v></c><c t="inlineStr"><is><t>w{i % 97}</t></is></c>'
               f'<c t="b"><v>{i % 2}</v></c></row>')


def test_a_long_sheet_is_streamed(tmp_path):
    path = raw_xlsx(tmp_path / "long.xlsx", sheet_rows(100_000), shared=["id", "x", "word", "flag"])
    out = ingest_in_child(tmp_path, path)
    assert out.get("rows") == 100_000 and out["seconds"] < 30, out


def test_a_sheet_over_the_row_cap_is_refused_while_streaming(tmp_path):
    path = raw_xlsx(tmp_path / "long.xlsx", sheet_rows(100_000), shared=["id", "x", "word", "flag"])
    out = ingest_in_child(tmp_path, path, RECIPE_MAX_ROWS=20_000)  # pandas parsed all 100k rows first
    assert_refused(out, "more than 20,000 rows", "RECIPE_MAX_ROWS", seconds=10)


def test_a_sheet_of_more_rows_than_excel_allows_is_refused_before_parsing(tmp_path):
    # 6 MB of blank rows and no <dimension>: openpyxl would parse them twice, keeping ~140 bytes per row
    path = raw_xlsx(tmp_path / "blank.xlsx", ["<row/>"] * 1_100_000, dimension=False)
    out = ingest_in_child(tmp_path, path)
    assert_refused(out, "more than 1,048,576 rows, Excel's own limit", seconds=5)


def test_a_big_cell_in_a_sheet_is_refused_by_its_place(tmp_path):
    rows = ['<row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>', '<row><c><v>1</v></c><c><v>2</v></c></row>',
            f'<row><c><v>3</v></c><c t="inlineStr"><is><t>{"z" * 2_000_000}</t></is></c></row>']
    out = ingest_in_child(tmp_path, raw_xlsx(tmp_path / "cell.xlsx", rows, shared=["a", "b"]), RECIPE_MAX_CELL_MB=1)
    assert_refused(out, "the cell B3 holds more than 1 MB", "RECIPE_MAX_CELL_MB", seconds=10)


def test_shared_strings_too_large_to_hold_are_refused_before_parsing(tmp_path):
    # 4M tiny strings, 68 MB of XML: openpyxl would hold every one (~550 MB) and parse them for ~40 s
    rows = ['<row><c t="s"><v>0</v></c></row>', '<row><c t="s"><v>1</v></c></row>']
    path = raw_xlsx(tmp_path / "strings.xlsx", rows, shared=b"<si><t>a</t></si>" * 4_000_000)
    out = ingest_in_child(tmp_path, path)
    assert_refused(out, "'xl/sharedStrings.xml' decompresses to more than 64 MB", seconds=5)


def test_a_row_of_millions_of_cells_ends_the_workbook_reader_not_the_server(tmp_path):
    # openpyxl builds a whole row before any check of ours sees it: 2.5M cells in one <row> (40 MB of XML, 100 KB
    # zipped) grew the ingesting process past 1 GB. The sheet is parsed in a child with its own memory limit.
    path = raw_xlsx(tmp_path / "wide.xlsx", ['<row><c t="s"><v>0</v></c></row>',
                                             "<row>" + "<c><v>1</v></c>" * 2_500_000 + "</row>"], shared=["a"])
    out = ingest_in_child(tmp_path, path)  # asserts the ingesting process stayed under 1 GB
    assert_refused(out, seconds=60)
    assert "memory" in out["refused"] or "16,384 columns" in out["refused"], out
