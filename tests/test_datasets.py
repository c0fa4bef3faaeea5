"""Ingestion: every format, encoding and sniffing case, names kept exactly, and every bad input refused cleanly."""
import codecs
import gzip
import hashlib
import io
import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipe_core.data.db import snapshot_scan
from recipe_core.data.ingest import ensure_samples, infer_kind, ingest_bytes, ingest_file
from recipe_core.data.snapshot import FILE_ROW_NUMBER, ROW_ID, snapshot_path
from recipe_core.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"


# -- helpers ------------------------------------------------------------------------------------------------
def write(tmp_path, name, data, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def rows(settings, record, columns="*"):
    """The snapshot as the app reads it, in file order (the row id is the file's row number)."""
    scan = snapshot_scan(snapshot_path(settings, record))
    return duckdb.execute(
        f"SELECT {columns} FROM (SELECT {FILE_ROW_NUMBER} AS {ROW_ID}, * EXCLUDE ({FILE_ROW_NUMBER}) FROM {scan}) "
        f"ORDER BY {ROW_ID}"
    ).fetchall()


def snapshot_names(settings, record):
    path = snapshot_path(settings, record)
    return [r[0] for r in duckdb.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]


def dtypes(record):
    return {c.name: c.dtype for c in record.columns}


def kinds(record):
    return {c.name: c.kind for c in record.columns}


def assert_nothing_left(settings, store):
    assert store.list_datasets() == []
    for folder in (settings.snapshots_dir, settings.home / "tmp"):
        assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


def parquet_bytes(table):
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def xlsx(path, sheet_rows):
    wb = openpyxl.Workbook()
    for r in sheet_rows:
        wb.active.append(r)
    wb.save(path)
    return path


# -- kinds --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype, n_rows, n_distinct, avg_len, kind",
    [
        ("BIGINT", 100, 2, None, "numeric"),  # 0/1 integers stay numeric
        ("DOUBLE", 100, 100, None, "numeric"),
        ("DECIMAL(10,2)", 100, 5, None, "numeric"),
        ("UTINYINT", 100, 5, None, "numeric"),
        ("BOOLEAN", 100, 2, None, "boolean"),
        ("DATE", 100, 100, None, "datetime"),
        ("TIMESTAMP", 100, 100, None, "datetime"),
        ("TIMESTAMP WITH TIME ZONE", 100, 100, None, "datetime"),
        ("VARCHAR", 100, 20, 5.0, "categorical"),  # max(20, 5% of rows) = 20
        ("VARCHAR", 100, 21, 5.0, "text"),
        ("VARCHAR", 10_000, 500, 5.0, "categorical"),  # 5% of rows = 500
        ("VARCHAR", 10_000, 501, 5.0, "text"),
        ("VARCHAR", 100, 3, 40.0, "text"),  # long values are text even when few
        ("VARCHAR", 100, 3, 39.9, "categorical"),
        ("VARCHAR", 100, 0, None, "categorical"),  # all missing
    ],
)
def test_infer_kind(dtype, n_rows, n_distinct, avg_len, kind):
    assert infer_kind(dtype, n_rows, n_distinct, avg_len) == kind


# -- CSV: the common case, and what the snapshot looks like -------------------------------------------------
def test_csv_snapshot_record_and_row_ids(settings, store, tmp_path):
    text = "id,price,city,flag,day,note\n" + "".join(
        f"{i},{i * 1.5},{['paris', 'rome', 'oslo'][i % 3]},{'true' if i % 2 else 'false'},2024-01-{i % 28 + 1:02d},"
        f"free text number {i} that is long enough to be prose rather than a category\n"
        for i in range(60)
    )
    path = write(tmp_path, "shop.csv", text)
    record = ingest_file(settings, store, path)
    data = path.read_bytes()
    assert record.id == hashlib.sha256(data).hexdigest()[:16]
    assert (record.name, record.source_name, record.fmt, record.n_rows) == ("shop", "shop.csv", "csv", 60)
    assert record.size_bytes == len(data) and record.notes == ()
    assert dtypes(record) == {"id": "BIGINT", "price": "DOUBLE", "city": "VARCHAR", "flag": "BOOLEAN",
                              "day": "DATE", "note": "VARCHAR"}
    assert kinds(record) == {"id": "numeric", "price": "numeric", "city": "categorical", "flag": "boolean",
                             "day": "datetime", "note": "text"}
    assert snapshot_names(settings, record) == ["id", "price", "city", "flag", "day", "note"]
    stored = rows(settings, record, f"{ROW_ID}, id, city")
    assert [r[0] for r in stored] == list(range(60)) and [r[1] for r in stored] == list(range(60))
    assert stored[4][2] == "rome"
    assert store.get_dataset(record.id) == record
    assert snapshot_path(settings, record).name == f"{record.id}.parquet"
    assert list((settings.home / "tmp").iterdir()) == []  # no staging left behind on success either


def test_row_groups_of_about_100k_rows_in_file_order(settings, store, tmp_path):
    path = write(tmp_path, "long.csv", "i,x\n" + "".join(f"{i},{i % 7}\n" for i in range(250_000)))
    record = ingest_file(settings, store, path)
    meta = pq.ParquetFile(snapshot_path(settings, record)).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == 250_000 and len(sizes) == 3
    assert all(100_000 <= n <= 105_000 for n in sizes[:-1])  # DuckDB closes a group at a chunk boundary
    # The row id is the file's row number, so the snapshot must keep the file's order.
    assert duckdb.execute(
        f"SELECT bool_and({FILE_ROW_NUMBER} = i) FROM {snapshot_scan(snapshot_path(settings, record))}"
    ).fetchone()[0]


@pytest.mark.parametrize(
    "text, fmt, expected",
    [
        ("a\tb\tc\n1\tx, y\t2.5\n2\tz\t3.5\n", "tsv", [(1, "x, y", 2.5), (2, "z", 3.5)]),
        ("a;b;c\n1;x, y;2,5\n2;z;3,5\n", "csv", [(1, "x, y", 2.5), (2, "z", 3.5)]),  # decimal comma
        ("a|b|c\n1|x; y|2.5\n2|z|3.5\n", "csv", [(1, "x; y", 2.5), (2, "z", 3.5)]),
        ('a,b,c\n1,"x, ""quoted"" y",2.5\n2,"multi\nline\r\nvalue",3.5\n', "csv",
         [(1, 'x, "quoted" y', 2.5), (2, "multi\nline\r\nvalue", 3.5)]),
        ("a,b,c\r\n1,x,2.5\r\n2,z,3.5\r\n", "csv", [(1, "x", 2.5), (2, "z", 3.5)]),
        ("a,b,c\n1,NA,2.5\n2,z,\n", "csv", [(1, None, 2.5), (2, "z", None)]),  # NA and empty are missing
    ],
    ids=["tab", "semicolon-decimal-comma", "pipe", "quotes-and-newlines", "crlf", "missing"],
)
def test_delimiters_and_quoting_are_sniffed(settings, store, tmp_path, text, fmt, expected):
    record = ingest_file(settings, store, write(tmp_path, "data.txt", text))
    assert record.fmt == fmt and record.column_names == ["a", "b", "c"]
    assert [r[1:] for r in rows(settings, record)] == expected
    assert dtypes(record)["c"] == "DOUBLE"


@pytest.mark.parametrize(
    "data, fmt",
    [
        ("größe,stadt\n1,Zürich\n2,Québec\n".encode("utf-8"), "csv"),
        (codecs.BOM_UTF8 + "größe,stadt\n1,Zürich\n2,Québec\n".encode("utf-8"), "csv"),
        ("größe,stadt\n1,Zürich\n2,Québec\n".encode("latin-1"), "csv"),
        ("größe\tstadt\n1\tZürich\n2\tQuébec\n".encode("utf-16"), "tsv"),  # Excel's "Unicode text"
    ],
    ids=["utf-8", "utf-8-bom", "latin-1", "utf-16"],
)
def test_encodings(settings, store, tmp_path, data, fmt):
    record = ingest_file(settings, store, write(tmp_path, "cities.csv", data))
    assert record.fmt == fmt and record.column_names == ["größe", "stadt"]  # no BOM glued to the first name
    assert [r[1:] for r in rows(settings, record)] == [(1, "Zürich"), (2, "Québec")]


def test_latin1_after_a_long_ascii_start(settings, store, tmp_path):
    # The first megabyte is plain ASCII, so the sniffer says UTF-8; the Latin-1 byte comes later.
    head = "name,n\n" + "plain,1\n" * 200_000
    record = ingest_file(settings, store, write(tmp_path, "late.csv", head.encode() + "café,2\n".encode("latin-1")))
    assert rows(settings, record, "name")[-1] == ("café",)


def test_header_is_sniffed(settings, store, tmp_path):
    numbers = ingest_file(settings, store, write(tmp_path, "n.csv", "1,2.5\n3,4.5\n"))
    assert numbers.column_names == ["column_1", "column_2"] and numbers.n_rows == 2
    words = ingest_file(settings, store, write(tmp_path, "w.csv", "name,city\nann,paris\nbob,rome\n"))
    assert words.column_names == ["name", "city"] and words.n_rows == 2


def test_names_are_kept_exactly(settings, store, tmp_path):
    names = ["sépal length (cm)", 'say "hi"', "it's", "select", "from", "order", " padded ", "数据", "a,b", "x\ny"]
    header = ",".join('"' + n.replace('"', '""') + '"' for n in names)
    record = ingest_file(settings, store, write(tmp_path, "names.csv", header + "\n" + ",".join("1" * 10) + "\n"))
    assert record.column_names == names and record.notes == ()
    assert snapshot_names(settings, record) == names


def test_duplicate_blank_and_reserved_names_are_renamed_with_a_note(settings, store, tmp_path):
    record = ingest_file(settings, store, write(tmp_path, "d.csv", "a,a,A,__row_id,,b,a_2,file_row_number\n"
                                                                  "1,2,3,4,5,6,7,8\n"))
    # case-insensitive: DuckDB identifiers ignore case, so "A" would be ambiguous with "a"
    assert record.column_names == ["a", "a_3", "A_4", "__row_id_2", "column_5", "b", "a_2", "file_row_number_2"]
    assert rows(settings, record)[0] == (0, 1, 2, 3, 4, 5, 6, 7, 8)
    assert len(record.notes) == 5
    assert any("'a' is a duplicate; renamed to 'a_3'" in n for n in record.notes)
    assert any("reserved" in n for n in record.notes)


def test_a_value_beyond_the_sniffed_sample_widens_the_column(settings, store, tmp_path):
    # DuckDB's sniffer reads 20,480 rows; its CSV reader would round a later 2.5 to 3 in a BIGINT column.
    body = "a,b,c,d,e\n" + "1,2,x,3,4\n" * 30_000 + f"oops,2.5,y,{2**53 + 1},{2**63}\n"
    record = ingest_file(settings, store, write(tmp_path, "late.csv", body))
    assert dtypes(record) == {"a": "VARCHAR", "b": "DOUBLE", "c": "VARCHAR", "d": "BIGINT", "e": "DOUBLE"}
    assert rows(settings, record)[-1] == (30_000, "oops", 2.5, "y", 2**53 + 1, float(2**63))  # nothing rounded
    assert rows(settings, record)[0] == (0, "1", 2.0, "x", 3, 4.0)


def test_a_10_mb_field(settings, store, tmp_path):
    big = "x" * 10_000_000
    record = ingest_file(settings, store, write(tmp_path, "long.csv", f"id,text\n1,short\n2,{big}\n3,end\n"))
    assert record.n_rows == 3 and kinds(record)["text"] == "text"
    assert rows(settings, record, "length(text)") == [(5,), (10_000_000,), (3,)]


def test_a_long_line_after_the_sniffed_sample(settings, store, tmp_path):
    body = "id,text\n" + "1,short\n" * 30_000 + "2," + "y" * 3_000_000 + "\n"  # over DuckDB's 2 MB default
    record = ingest_file(settings, store, write(tmp_path, "late_long.csv", body))
    assert rows(settings, record, "id, length(text)")[-1] == (2, 3_000_000)


def test_5000_columns(settings, store, tmp_path):
    header = ",".join(f"c{i}" for i in range(5000))
    body = "".join(",".join(str(r * 5000 + i) for i in range(5000)) + "\n" for r in range(3))
    record = ingest_file(settings, store, write(tmp_path, "wide.csv", header + "\n" + body))
    assert len(record.columns) == 5000 and record.n_rows == 3
    assert rows(settings, record, "c0, c4999") == [(0, 4999), (5000, 9999), (10000, 14999)]


# -- other formats ------------------------------------------------------------------------------------------
def test_json_array_with_nested_values(settings, store, tmp_path):
    text = json.dumps([{"a": 1, "b": "x", "n": {"k": [1, 2]}}, {"a": 2.5, "b": "y", "c": True}])
    record = ingest_file(settings, store, write(tmp_path, "d.json", text))
    assert record.fmt == "json" and record.column_names == ["a", "b", "n", "c"]
    assert dtypes(record) == {"a": "DOUBLE", "b": "VARCHAR", "n": "VARCHAR", "c": "BOOLEAN"}
    assert rows(settings, record) == [(0, 1.0, "x", '{"k":[1,2]}', None), (1, 2.5, "y", None, True)]
    assert record.notes and "stored as text" in record.notes[0]


@pytest.mark.parametrize(
    "last, stored",
    [('{"a": 2.5}', (30_000, 2.5)), ('{"a": 1, "late key": "z"}', (30_000, 1, "z")), ('{"a": "x"}', (30_000, '"x"'))],
    ids=["fraction", "new-key", "word"],
)
def test_json_records_beyond_the_sample_are_not_lost(settings, store, tmp_path, last, stored):
    # DuckDB samples 20,480 records for types; a later record that does not fit makes us read all of them.
    record = ingest_file(settings, store, write(tmp_path, "d.jsonl", '{"a": 1}\n' * 30_000 + last + "\n"))
    assert record.fmt == "jsonl" and record.n_rows == 30_001
    assert rows(settings, record)[-1] == stored
    assert rows(settings, record)[0][1] in (1, 1.0, "1")


def test_json_single_object_and_columns_object(settings, store, tmp_path):
    one = ingest_file(settings, store, write(tmp_path, "one.json", '{\n  "a": 1,\n  "b": "x"\n}\n'))
    assert one.fmt == "json" and rows(settings, one) == [(0, 1, "x")]
    cols = ingest_file(settings, store, write(tmp_path, "cols.json", '{"a": [1, 2, 3], "b": ["x", "y", "z"]}'))
    assert rows(settings, cols) == [(0, 1, "x"), (1, 2, "y"), (2, 3, "z")]


def test_parquet_keeps_names_even_duplicates(settings, store, tmp_path):
    table = pa.table({"x": [1, 2, 3], "naïve name": ["a", "b", "c"]})
    table = table.append_column("x", pa.array([7, 8, 9]))  # duplicate names are legal in Parquet
    record = ingest_file(settings, store, write(tmp_path, "data.bin", parquet_bytes(table)))
    assert record.fmt == "parquet" and record.column_names == ["x", "naïve name", "x_2"]
    assert rows(settings, record) == [(0, 1, "a", 7), (1, 2, "b", 8), (2, 3, "c", 9)]


def test_xlsx(settings, store, tmp_path):
    import datetime

    path = xlsx(tmp_path / "book.xlsx", [
        ["name", "age", "when", "mixed", None],
        ["ann", 31, datetime.datetime(2020, 1, 2), 1, 5],
        ["bob", None, datetime.datetime(2021, 3, 4), "two", 6],
        [None, None, None, None, None],  # blank rows are dropped
        ["cy", 40.5, None, None, 7],
    ])
    record = ingest_file(settings, store, path)
    assert record.fmt == "xlsx" and record.column_names == ["name", "age", "when", "mixed", "column_5"]
    assert dtypes(record)["when"].startswith("TIMESTAMP") and dtypes(record)["mixed"] == "VARCHAR"
    assert [r[1:3] + r[4:] for r in rows(settings, record)] == [
        ("ann", 31.0, "1", 5), ("bob", None, "two", 6), ("cy", 40.5, None, 7)]


@pytest.mark.parametrize("inner, fmt", [("a,b\n1,x\n2,y\n", "csv+gzip"), ('{"a":1,"b":"x"}\n{"a":2,"b":"y"}\n', "jsonl+gzip")])
def test_gzip(settings, store, tmp_path, inner, fmt):
    record = ingest_file(settings, store, write(tmp_path, "d.gz", gzip.compress(inner.encode(), mtime=0)))
    assert record.fmt == fmt and [r[1:] for r in rows(settings, record)] == [(1, "x"), (2, "y")]


def test_content_decides_not_the_extension(settings, store, tmp_path):
    record = ingest_file(settings, store, write(tmp_path, "looks.xlsx", "a,b\n1,2\n"))
    assert record.fmt == "csv"


# -- identity, uploads, concurrency -------------------------------------------------------------------------
def test_identical_bytes_are_one_dataset(settings, store, tmp_path):
    data = b"a,b\n1,2\n3,4\n"
    first = ingest_file(settings, store, write(tmp_path, "one.csv", data))
    again = ingest_file(settings, store, write(tmp_path, "two.csv", data), name="other")
    uploaded = ingest_bytes(settings, store, io.BytesIO(data), source_name="three.csv")
    raw = ingest_bytes(settings, store, data, source_name="four.csv")
    assert first == again == uploaded == raw
    assert len(store.list_datasets()) == 1 and len(list(settings.snapshots_dir.iterdir())) == 1


def test_upload_names_are_never_paths(settings, store, tmp_path):
    record = ingest_bytes(settings, store, b"a\n1\n", source_name="../../etc/passwd.csv")
    assert record.source_name == "../../etc/passwd.csv" and record.name == "passwd"
    assert snapshot_path(settings, record).parent == settings.snapshots_dir
    assert list((settings.home / "tmp").iterdir()) == []


def test_a_missing_snapshot_is_rebuilt(settings, store, tmp_path):
    path = write(tmp_path, "d.csv", "a\n1\n")
    record = ingest_file(settings, store, path)
    snapshot_path(settings, record).unlink()
    assert ingest_file(settings, store, path) == record
    assert snapshot_path(settings, record).exists()


def test_processes_ingesting_the_same_bytes_at_once(settings, store, tmp_path):
    path = write(tmp_path, "same.csv", "a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(50_000)))
    code = (
        "import sys; from pathlib import Path; from recipe_core.config import load_settings;"
        "from recipe_core.tracking.store import Store; from recipe_core.data.ingest import ingest_file;"
        "s = load_settings(); print(ingest_file(s, Store(s.store_url), Path(sys.argv[1])).id)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert len(store.list_datasets()) == 1
    assert [p.name for p in settings.snapshots_dir.iterdir()] == [store.list_datasets()[0].snapshot]


# -- bad input: one clear line, nothing left behind ---------------------------------------------------------
def _corrupt_parquet():
    data = bytearray(parquet_bytes(pa.table({"a": list(range(1000)), "b": [str(i) for i in range(1000)]})))
    data[8:400] = b"\xff" * 392  # keep both magic numbers, destroy the pages
    return bytes(data)


def _truncated_parquet():
    data = parquet_bytes(pa.table({"a": list(range(1000))}))
    return data[: len(data) // 2]


BAD = [
    ("empty", b"", "the file is empty"),
    ("blank lines", b"\n \n\t\n", "the file is empty"),
    ("header only", b"a,b,c\n", "header row but no data rows"),
    ("random bytes", random.Random(0).randbytes(4096), "looks like binary data"),
    ("a few random bytes", random.Random(1).randbytes(64), "looks like binary data"),
    ("corrupt parquet", _corrupt_parquet(), "Parquet file is corrupt"),
    ("truncated parquet", _truncated_parquet(), "truncated or corrupt"),
    ("ragged, long row", b"a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n1,2,3\n", "^line 4 has 4 fields, expected 3$"),
    ("ragged, short row", b"a,b,c\n1,2,3\n4,5\n", "^line 3 has 2 fields, expected 3$"),
    ("ragged after quoted newlines", b'a,b\n1,"x\ny"\n2,"p\r\nq"\n3\n', "^line 6 has 1 field, expected 2$"),
    ("ragged far down", b"a,b\n" + b"1,2\n" * 60_000 + b"1,2,3\n", "^line 60002 has 3 fields, expected 2$"),
    ("unterminated quote", b'a,b\n1,"open\n2,3\n', "never closed"),
    ("malformed JSON array", b'[{"a": 1},\n{"a": 2\n]', "^malformed JSON at line 3, column 1"),
    ("malformed JSON lines", b'{"a": 1}\n{"a": 2\n{"a": 3}\n', "^malformed JSON at line 2"),
    ("JSON without objects", b"[1, 2, 3]", "no objects"),
    ("empty JSON array", b"[ ]", "JSON array is empty"),
    # Python's json.loads (the sniffer's and the error locator's) raised RecursionError on these
    ("JSON arrays 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "^the JSON is nested more than 128 levels deep$"),
    ("JSON objects 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "^the JSON is nested more than 128"),
    ("JSON lines, one 100,000 deep", b'{"a": 1}\n{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     "^the JSON is nested more than 128"),
    ("malformed JSON 100,000 deep", b'[{"a": 1},' + b"[" * 100_000 + b"}", "^malformed JSON"),
    ("corrupt gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 50, "gzip data is corrupt"),
    ("gzip in gzip", gzip.compress(gzip.compress(b"a\n1\n")), "gzip inside gzip"),
    ("zip that is not xlsx", None, "only as Excel workbooks"),
    ("old xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, ".xls files are not supported"),
]


@pytest.mark.parametrize("data, message", [(d, m) for _, d, m in BAD], ids=[n for n, _, _ in BAD])
def test_bad_input_is_refused_cleanly(settings, store, tmp_path, data, message):
    if data is None:
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("data.csv", "a,b\n1,2\n")
        data = buf.getvalue()
    for ingest in ("file", "bytes"):
        with pytest.raises(BadInput, match=message) as err:
            if ingest == "file":
                ingest_file(settings, store, write(tmp_path, "upload.csv", data))
            else:
                ingest_bytes(settings, store, data, source_name="upload.csv")
        text = str(err.value)
        assert "\n" not in text and str(settings.home) not in text and "Error:" not in text
        assert_nothing_left(settings, store)


def test_messy_xlsx_reads_as_pandas_read_it(settings, store, tmp_path):
    """Pinned from the pandas.read_excel ingestion this streaming one replaced (its only difference: a numeric
    header 2020 in a number column is named '2020', where pandas said '2020.0')."""
    import datetime

    blank = [None] * 12
    path = xlsx(tmp_path / "messy.xlsx", [
        blank,  # leading blank rows are dropped too
        ["id", "name", None, "id", 2020, "flag", "when", "mixed", "na", "f", "big", "t"],
        [1, "ann", None, 10, 1.5, True, datetime.datetime(2020, 1, 2, 3, 4, 5), 1, "NA", 2.0, 2**70,
         datetime.time(12, 30)],
        blank,
        [2, "#N/A", None, 11, 2, False, datetime.datetime(2021, 3, 4), "two", "x", 3.5, 5, datetime.time(1, 2)],
        [3, "", None, None, None, None, None, datetime.datetime(2020, 1, 1), None, 4, 6, None],
        [4, "  ", None, 13, 3, True, datetime.date(2022, 5, 6), 2.5, "null", None, 7, None],
    ])
    record = ingest_bytes(settings, store, path.read_bytes(), source_name="messy.xlsx")  # an upload's temp file
    assert [(c.name, c.dtype) for c in record.columns] == [
        ("id", "BIGINT"), ("name", "VARCHAR"), ("id_2", "BIGINT"), ("2020", "DOUBLE"), ("flag", "BOOLEAN"),
        ("when", "TIMESTAMP"), ("mixed", "VARCHAR"), ("na", "VARCHAR"), ("f", "DOUBLE"), ("big", "VARCHAR"),
        ("t", "VARCHAR")]
    assert record.notes == ("column name 'id' is a duplicate; renamed to 'id_2'",)
    assert [r[1:] for r in rows(settings, record)] == [
        (1, "ann", 10, 1.5, True, datetime.datetime(2020, 1, 2, 3, 4, 5), "1", None, 2.0,
         "1180591620717411041280", "12:30:00"),  # 2**70, as its XML text 1.1805916207174110E+21 reads back
        (2, None, 11, 2.0, False, datetime.datetime(2021, 3, 4), "two", "x", 3.5, "5", "01:02:00"),
        (3, None, None, None, None, None, "2020-01-01 00:00:00", None, 4.0, "6", None),
        (4, "  ", 13, 3.0, True, datetime.datetime(2022, 5, 6), "2.5", None, None, "7", None)]


def test_excel_error_values_are_openpyxls(settings):
    from openpyxl.cell.cell import ERROR_CODES

    from recipe_core.data.xlsx import EXCEL_ERRORS

    assert set(EXCEL_ERRORS) == set(ERROR_CODES)


def test_xlsx_header_only_and_empty_sheet(settings, store, tmp_path):
    with pytest.raises(BadInput, match="header row but no data rows"):
        ingest_file(settings, store, xlsx(tmp_path / "h.xlsx", [["a", "b"]]))
    with pytest.raises(BadInput, match="sheet of the workbook is empty"):
        ingest_file(settings, store, xlsx(tmp_path / "e.xlsx", []))
    assert_nothing_left(settings, store)


@pytest.mark.parametrize("name, message", [("evil\x00name", "contains a NUL character"),
                                           ("half \ud800 surrogate", "is not valid Unicode"),
                                           ("x" * 201, "has 201 characters, at most 200")])
def test_a_dataset_name_the_store_cannot_hold_is_refused_before_anything_is_written(
        settings, store, tmp_path, name, message):
    path = write(tmp_path, "d.csv", "a\n1\n")
    with pytest.raises(BadInput, match=f"^the dataset name {message}"):
        ingest_file(settings, store, path, name=name)
    with pytest.raises(BadInput, match=f"^the dataset name {message}"):
        ingest_bytes(settings, store, b"a\n1\n", source_name="d.csv", name=name)
    assert_nothing_left(settings, store)


def test_a_source_name_is_made_storable_not_refused(settings, store):
    record = ingest_bytes(settings, store, b"a\n1\n", source_name="we\x00ird\ud800\x07.csv")
    assert record.source_name == "we?ird??.csv" and record.name == "we?ird??"
    assert store.get_dataset(record.id) == record


def _table_as(fmt, path, n_rows, n_columns=3, big=None):
    """The same small table (and optionally one big text value in its last row) written as fmt."""
    names = [f"c{j}" for j in range(n_columns)]
    table = [[f"v{i}-{j}" for j in range(n_columns)] for i in range(n_rows)]
    if big is not None:
        table[-1][-1] = big
    if fmt == "csv":
        path.write_text(",".join(names) + "\n" + "".join(",".join(r) + "\n" for r in table))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(dict(zip(names, r))) + "\n" for r in table))
    elif fmt == "parquet":
        pq.write_table(pa.table({n: [r[j] for r in table] for j, n in enumerate(names)}), path)
    else:
        xlsx(path, [names, *table])
    return path


CAPS = [
    ("max_rows", 99, 100, 3, "^the file has more than 99 rows \\(the RECIPE_MAX_ROWS limit\\)$"),
    ("max_cells", 299, 100, 3, "^the file has more than 299 cells, rows x columns \\(the RECIPE_MAX_CELLS limit; "
                               "3 columns allow 99 rows\\)$"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "xlsx"])
@pytest.mark.parametrize("cap, value, n_rows, n_columns, message", CAPS, ids=[c[0] for c in CAPS])
def test_row_and_cell_caps(settings, store, tmp_path, fmt, cap, value, n_rows, n_columns, message):
    path = _table_as(fmt, tmp_path / f"t.{fmt}", n_rows, n_columns)
    if fmt == "xlsx":
        message = message.replace("the file", "the sheet") if cap == "max_rows" else message
    with pytest.raises(BadInput, match=message):
        ingest_file(replace(settings, **{cap: value}), store, path)
    assert_nothing_left(settings, store)
    assert ingest_file(replace(settings, **{cap: value + 1}), store, path).n_rows == n_rows  # the cap is exact


@pytest.mark.parametrize("fmt, message", [
    ("csv", "^column 'c2' has a value larger than 58.6 KB \\(the RECIPE_MAX_CELL_MB limit\\)$"),
    ("jsonl", "^column 'c2' has a value larger than 58.6 KB"),
    ("parquet", "^column 'c2' has a value larger than 58.6 KB"),
    ("xlsx", "^the cell C2 holds more than 58.6 KB \\(the RECIPE_MAX_CELL_MB limit\\)$"),
])
def test_a_value_over_the_cell_cap_is_refused_naming_its_column(settings, store, tmp_path, fmt, message):
    # bytes, not characters, count; and under 32,767 characters, which openpyxl cuts a cell to
    small = replace(settings, max_cell_bytes=60_000)
    path = _table_as(fmt, tmp_path / f"t.{fmt}", 1, big="é" * 30_001)  # 60,002 bytes in UTF-8
    with pytest.raises(BadInput, match=message):
        ingest_file(small, store, path)
    assert_nothing_left(settings, store)
    fits = _table_as(fmt, tmp_path / f"fits.{fmt}", 1, big="é" * 30_000)
    assert rows(small, ingest_file(small, store, fits), "strlen(c2)") == [(60_000,)]


def test_a_parquet_value_over_the_cell_cap_among_small_ones_is_stopped_by_the_copy(settings, store, tmp_path):
    values = ["x"] * 10_000 + ["y" * 2_000_000]  # the footer's size per value (~200 bytes) cannot tell
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"s": values}), path)
    with pytest.raises(BadInput, match="^column 's' has a value larger than 1 MB"):
        ingest_file(replace(settings, max_cell_bytes=1 << 20), store, path)
    assert_nothing_left(settings, store)


def test_more_columns_than_excel_allows_are_refused(settings, store, tmp_path):
    path = write(tmp_path, "wide.csv", ",".join(f"c{i}" for i in range(20_000)) + "\n" + "1," * 19_999 + "1\n")
    with pytest.raises(BadInput, match=r"^the file has more than 16,384 columns \(the RECIPE_MAX_COLUMNS limit\)$"):
        ingest_file(settings, store, path)
    assert_nothing_left(settings, store)


def test_compression_bomb_is_refused(settings, store, tmp_path):
    small = replace(settings, max_upload_bytes=1 << 20)
    bomb = gzip.compress(b"a\n" + b"0\n" * (20 << 20), compresslevel=9)
    assert len(bomb) < 100_000  # tiny on the wire, 40 MB inside
    with pytest.raises(BadInput, match="decompresses to more than 1 MB.*compression bomb"):
        ingest_bytes(small, store, bomb, source_name="bomb.csv.gz")
    assert_nothing_left(settings, store)
    # the same content under the cap is fine: the cap counts decompressed bytes, not a ratio
    fine = gzip.compress(b"a\n" + b"0\n" * 1000)
    assert ingest_bytes(small, store, fine, source_name="ok.csv.gz").n_rows == 1000


def test_over_size_file_is_refused(settings, store, tmp_path):
    small = replace(settings, max_upload_bytes=1024)
    data = b"a,b\n" + b"1,2\n" * 1000
    with pytest.raises(BadInput, match=r"the (file|upload).* is larger than the 1 KB limit"):
        ingest_file(small, store, write(tmp_path, "big.csv", data))
    with pytest.raises(BadInput, match=r"the (file|upload).* is larger than the 1 KB limit"):
        ingest_bytes(small, store, io.BytesIO(data), source_name="big.csv")
    assert_nothing_left(settings, store)
    assert ingest_bytes(small, store, data[:1000], source_name="fits.csv").n_rows == 249


def test_missing_file(settings, store, tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        ingest_file(settings, store, tmp_path / "nope.csv")


# -- the sample datasets ------------------------------------------------------------------------------------
def test_ensure_samples_registers_the_real_sample_data(settings, store):
    records = {r.name: r for r in ensure_samples(settings, store, SAMPLES)}
    assert set(records) == {"breast_cancer", "wine", "diabetes", "tips", "gapminder", "digits", "noise"}
    assert sum(p.stat().st_size for p in SAMPLES.iterdir() if p.suffix in (".csv", ".parquet")) < 2 << 20

    cancer = records["breast_cancer"]
    assert cancer.n_rows == 569 and kinds(cancer)["diagnosis"] == "categorical"
    assert {v for (v,) in rows(settings, cancer, '"diagnosis"')} == {"malignant", "benign"}
    assert "mean radius" in cancer.column_names
    wine = records["wine"]
    assert wine.n_rows == 178 and len({v for (v,) in rows(settings, wine, "cultivar")}) == 3
    diabetes = records["diabetes"]
    assert diabetes.n_rows == 442 and kinds(diabetes)["disease_progression"] == "numeric"
    tips = records["tips"]
    assert kinds(tips)["day"] == "categorical" and kinds(tips)["total_bill"] == "numeric"
    gap = records["gapminder"]
    assert gap.fmt == "parquet" and kinds(gap)["continent"] == "categorical" and kinds(gap)["country"] == "text"
    digits = records["digits"]
    pixels = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    assert digits.column_names == pixels + ["digit"] and digits.n_rows == 1797
    assert all(dtypes(digits)[p] == "BIGINT" for p in pixels)
    values = f"SELECT min(least({', '.join(pixels)})), max(greatest({', '.join(pixels)})), min(digit), max(digit)"
    assert duckdb.execute(f"{values} FROM read_parquet('{snapshot_path(settings, digits)}')").fetchone() == (0, 16, 0, 9)

    again = ensure_samples(settings, store, SAMPLES)  # cheap: hashes match, nothing re-ingested
    assert {r.id for r in again} == {r.id for r in records.values()}
    assert len(store.list_datasets()) == 7
