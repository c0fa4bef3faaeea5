"""db.py, where.py, filters.py, rows.py: filters, search, sort, pages at depth, samples, rows, extremes, export,
watchdog and security.

Snapshots are written here directly (a Parquet file with __row_id first, and a DatasetRecord), so these tests
do not depend on the ingestion code. Reference answers come from plain DuckDB or Python over the same data.
"""
from __future__ import annotations

import csv
import io
import math
import threading
import time
from datetime import date, datetime

import duckdb
import pytest
from snapshots import make_db

from recipe_core.data import filters, rows
from recipe_core.data.db import DatasetDB
from recipe_core.data.filters import Filter, RowQuery, coerce_value
from recipe_core.data.snapshot import ROW_ID
from recipe_core.data.where import validate_where
from recipe_core.errors import NotFound, QueryFailed, QueryRejected

LONG = "x" * 1200 + "END"


# 12 people; every awkward name and value on purpose.
PEOPLE = f"""
SELECT (i - 1)::BIGINT AS __row_id, * EXCLUDE (i) FROM (VALUES
 (1, 'Ann',   34,   1.5::DOUBLE,  'Paris',  'a1', 'café crème', 7,  TIMESTAMP '2024-01-02 10:00:00', DATE '2024-01-02', true,  '3.5',  'plain'),
 (2, 'bob',   NULL, 2.5,          'Berlin', 'b2', 'tea',        NULL, TIMESTAMP '2024-02-03 11:00:00', DATE '2024-02-03', false, '10',   '=HYPERLINK(1)'),
 (3, 'Cécile', 51,  'NaN'::DOUBLE,'Paris',  'c3', 'CAFÉ',       3,  TIMESTAMP '2023-12-31 23:59:59', DATE '2023-12-31', true,  'x',    '+1+2'),
 (4, 'dan',   19,   NULL,         'Lyon',   'd4', NULL,         3,  NULL,                            NULL,              NULL,  NULL,   '-3'),
 (5, '50%_off', 34, -1.0,         'Oslo',   'e5', 'water',      1,  TIMESTAMP '2024-03-01 00:00:00', DATE '2024-03-01', false, '-2',   '@SUM(A1)'),
 (6, 'Eve',   62,   9.75,         'Paris',  'f6', 'milk',       9,  TIMESTAMP '2024-03-02 00:00:00', DATE '2024-03-02', true,  '7',    chr(9) || 'tab'),
 (7, 'frank', 34,   1.5,          'Rome',   'g7', '{LONG}',     5,  TIMESTAMP '2024-03-03 00:00:00', DATE '2024-03-03', true,  '1e3',  'ok=1'),
 (8, 'Gus',   45,   100.0,        'Lyon',   'h8', 'juice',      2,  TIMESTAMP '2024-03-04 00:00:00', DATE '2024-03-04', false, '2',    'safe'),
 (9, 'hana',  28,   0.0,          NULL,     'i9', 'soda',       8,  TIMESTAMP '2024-03-05 00:00:00', DATE '2024-03-05', true,  '',     'fine'),
 (10, 'Ivo',  77,   3.25,         'Oslo',   'j0', 'tea',        6,  TIMESTAMP '2024-03-06 00:00:00', DATE '2024-03-06', false, '4',    'ok'),
 (11, 'Jo''s', 34,  'Infinity'::DOUBLE, 'Rome', 'k1', 'coffee', 4,  TIMESTAMP '2024-03-07 00:00:00', DATE '2024-03-07', true,  '5',    'x'),
 (12, 'kim',  40,   2.0,          'Berlin', 'l2', 'tea',        0,  TIMESTAMP '2024-03-08 00:00:00', DATE '2024-03-08', false, '6',    'y')
) AS v(i, name, age, score, city, "first name", "say ""hi"" / café", "select", joined, day, ok, num_text, formula)
"""
COLUMNS = ["name", "age", "score", "city", "first name", 'say "hi" / café', "select", "joined", "day", "ok",
           "num_text", "formula"]


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    db = make_db(tmp_path_factory.mktemp("people"), PEOPLE, "people", kinds={"num_text": "numeric"})
    yield db
    db.close()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """250,000 rows in three row groups, with ties, NULLs and NaN in the sort columns."""
    sql = """
        SELECT range AS __row_id,
               (hash(range) % 1000)::INTEGER AS k,
               CASE WHEN range % 97 = 0 THEN NULL WHEN range % 89 = 0 THEN 'NaN'::DOUBLE
                    ELSE ((hash(range * 7) % 100000) / 10.0)::DOUBLE END AS x,
               CASE WHEN range % 50 = 0 THEN NULL ELSE 'w' || (hash(range * 3) % 5000)::VARCHAR END AS word,
               'row ' || range::VARCHAR || CASE WHEN range % 1000 = 7 THEN ' Needle' ELSE '' END AS text
        FROM range(250000)"""
    home = tmp_path_factory.mktemp("big")
    db = make_db(home, sql, "big")
    ref = duckdb.connect()
    ref.execute(f"CREATE VIEW data AS SELECT * FROM '{home / 'snapshots' / 'big.parquet'}'")
    yield db, ref
    db.close()


def ids_of(page) -> list[int]:
    return [int(i) for i in page.rows.index]


def ref_ids(ref, where: str = "", order: str = "__row_id", limit: int = 50, offset: int = 0) -> list[int]:
    w = f"WHERE {where}" if where else ""
    sql = f"SELECT __row_id FROM data {w} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
    return [r[0] for r in ref.execute(sql).fetchall()]


# -- pages, file order -------------------------------------------------------------------------------------
def test_file_order_page(people):
    p = rows.page(people, RowQuery(limit=5))
    assert p.n_total == 12
    assert ids_of(p) == [0, 1, 2, 3, 4]
    assert p.rows.index.name == ROW_ID
    assert list(p.rows.columns) == COLUMNS
    assert p.rows.loc[0, "name"] == "Ann" and p.seconds >= 0
    assert ids_of(rows.page(people, RowQuery(limit=5, offset=10))) == [10, 11]
    assert ids_of(rows.page(people, RowQuery(limit=5, offset=12))) == []
    assert ids_of(rows.page(people, RowQuery(limit=5, offset=1, descending=True))) == [10, 9, 8, 7, 6]


def test_settings_reach_every_cursor(people):
    # Queries run on per-call cursors: the locked settings (and the footer cache) must hold there too.
    settings = dict(people.rows("SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                                "'lock_configuration', 'parquet_metadata_cache', 'autoload_known_extensions', "
                                "'autoinstall_known_extensions')"))
    assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                        "parquet_metadata_cache": "true", "autoload_known_extensions": "false",
                        "autoinstall_known_extensions": "false"}


def test_page_rejects_bad_limits(people):
    with pytest.raises(QueryRejected, match="rows per page"):
        rows.page(people, RowQuery(limit=0))
    with pytest.raises(QueryRejected, match="negative"):
        rows.page(people, RowQuery(offset=-50))


def test_long_strings_truncated_in_page_full_in_row(people):
    shown = rows.page(people, RowQuery()).rows.loc[6, 'say "hi" / café']
    assert len(shown) == rows.MAX_CELL_CHARS + 1 and shown.endswith("…")
    assert rows.row(people, 6)['say "hi" / café'] == LONG


# -- filters -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flt, expected", [
    (Filter("age", "=", "34"), [0, 4, 6, 10]),
    (Filter("age", "!=", "34"), [2, 3, 5, 7, 8, 9, 11]),
    (Filter("age", "<", "30"), [3, 8]),
    (Filter("age", "<=", "28"), [3, 8]),
    (Filter("age", ">", "62"), [9]),
    (Filter("age", ">=", "62"), [5, 9]),
    (Filter("age", ">", 61.5), [5, 9]),
    (Filter("age", "<", "1" + "0" * 25), [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),  # beyond BIGINT
    (Filter("name", "contains", "AN"), [0, 3, 6, 8]),
    (Filter("name", "starts with", "c"), [2]),
    (Filter("age", "is missing"), [1]),
    (Filter("city", "is not missing"), [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11]),
    (Filter("city", "=", "Paris"), [0, 2, 5]),
    (Filter("first name", "=", "c3"), [2]),
    (Filter('say "hi" / café', "contains", "café"), [0, 2]),
    (Filter("select", ">=", "8"), [5, 8]),
    (Filter("score", "<", "0"), [4]),
    (Filter("ok", "=", "yes"), [0, 2, 5, 6, 8, 10]),
    (Filter("ok", "=", "False"), [1, 4, 7, 9, 11]),
    (Filter("day", ">", "2024-03-05"), [9, 10, 11]),
    (Filter("joined", "<", "2024-01-02 10:00:01"), [0, 2]),
    (Filter("joined", "contains", "2023"), [2]),
    (Filter("num_text", ">", "6.5"), [1, 5, 6]),  # VARCHAR with kind numeric: compared as numbers
    (Filter("formula", "starts with", "="), [1]),
])
def test_every_op(people, flt, expected):
    p = rows.page(people, RowQuery(filters=(flt,)))
    assert ids_of(p) == expected
    assert p.n_total == len(expected) == rows.count(people, RowQuery(filters=(flt,)))


def test_filters_combine_with_and(people):
    q = RowQuery(filters=(Filter("city", "=", "Paris"), Filter("age", ">", "40")))
    assert ids_of(rows.page(people, q)) == [2, 5]


@pytest.mark.parametrize("flt, message", [
    (Filter("age", ">", "abc"), "'abc' is not a number"),
    (Filter("num_text", "=", "ten"), "'ten' is not a number"),
    (Filter("ok", "=", "maybe"), "is not true or false"),
    (Filter("day", "=", "yesterday"), "is not a date"),
    (Filter("joined", ">", "soon"), "is not a date and time"),
    (Filter("age", ">", ""), "needs a value"),
    (Filter("age", ">", None), "needs a value"),
    (Filter("name", "contains", ""), "needs a value"),
    (Filter("nope", "=", "1"), "no column 'nope'"),
    (Filter("age", "LIKE", "1"), "unknown filter operator"),
    (Filter("age", "; DROP TABLE data; --", "1"), "unknown filter operator"),
])
def test_filter_refusals(people, flt, message):
    with pytest.raises(QueryRejected, match=message) as e:
        rows.page(people, RowQuery(filters=(flt,)))
    assert "\n" not in str(e.value)


def test_filter_value_is_a_parameter_not_sql(people):
    evil = "x' OR '1'='1"
    assert rows.page(people, RowQuery(filters=(Filter("name", "=", evil),))).n_total == 0
    assert rows.page(people, RowQuery(filters=(Filter("name", "contains", "'; SELECT 1; --"),))).n_total == 0


def test_coerce_value_types():
    assert coerce_value(" 42 ", "BIGINT", "c") == 42
    assert coerce_value("1e3", "DOUBLE", "c") == 1000.0
    assert coerce_value("2.5", "DECIMAL(10,2)", "c") == 2.5
    assert coerce_value("no", "BOOLEAN", "c") is False
    assert coerce_value("2024-01-31", "DATE", "c") == date(2024, 1, 31)
    assert coerce_value("2024-01-31 13:45", "TIMESTAMP", "c") == datetime(2024, 1, 31, 13, 45)
    assert coerce_value("abc", "VARCHAR", "c") == "abc"
    with pytest.raises(QueryRejected, match="'4 2' is not a number"):
        coerce_value("4 2", "INTEGER", "c")


# -- search ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("CAFÉ", [0, 2]),  # case-insensitive, unicode
    ("café", [0, 2]),
    ("50%_", [4]),  # % and _ are literal, not wildcards
    ("%", [4]),
    ("_", [4]),
    ("jo's", [10]),
    ("(1", [1]),  # regex metacharacters are literal
    ("a1", [0, 4]),  # first name a1, and @SUM(A1) case-insensitively
    ("1", [0, 1, 2, 4, 6, 10]),  # no letters: plain substring over every text column
    ("zzz", []),
])
def test_search(people, text, expected):
    p = rows.page(people, RowQuery(search=text))
    assert ids_of(p) == expected and p.n_total == len(expected)


def test_search_needs_text_columns(tmp_path):
    db = make_db(tmp_path, "SELECT range AS __row_id, range * 2 AS x FROM range(10)")
    with pytest.raises(QueryRejected, match="no text columns"):
        rows.page(db, RowQuery(search="4"))
    db.close()


@pytest.mark.parametrize("method", ["regexp", "lower", "ilike"])
def test_search_methods_agree(people, monkeypatch, method):
    monkeypatch.setattr(filters, "SEARCH_METHOD", method)
    for text, expected in [("CAFÉ", [0, 2]), ("50%_", [4]), ("_", [4]), ("(1", [1])]:
        assert ids_of(rows.page(people, RowQuery(search=text))) == expected, (method, text)


# -- sort --------------------------------------------------------------------------------------------------
def test_sort_numeric_nulls_last_ties_by_row_id(people):
    asc = ids_of(rows.page(people, RowQuery(sort="age")))
    assert asc == [3, 8, 0, 4, 6, 10, 11, 7, 2, 5, 9, 1]
    desc = ids_of(rows.page(people, RowQuery(sort="age", descending=True)))
    assert desc == [9, 5, 2, 7, 11, 0, 4, 6, 10, 8, 3, 1]


def test_sort_float_with_nan_inf_null(people):
    # DuckDB orders NaN above +inf; NULL always last.
    asc = ids_of(rows.page(people, RowQuery(sort="score")))
    assert asc == [4, 8, 0, 6, 11, 1, 9, 5, 7, 10, 2, 3]
    assert ids_of(rows.page(people, RowQuery(sort="score", descending=True)))[:3] == [2, 10, 7]


def test_sort_text_and_keyword_column(people):
    assert ids_of(rows.page(people, RowQuery(sort="city", limit=3))) == [1, 11, 3]
    assert ids_of(rows.page(people, RowQuery(sort="select", descending=True, limit=3))) == [5, 8, 0]


def test_sort_unknown_column_refused(people):
    with pytest.raises(QueryRejected, match="no column 'age; DROP TABLE data'"):
        rows.page(people, RowQuery(sort="age; DROP TABLE data"))


# -- paging at depth (keyset and late materialization) against plain DuckDB -----------------------------------
def test_deep_pages_file_order(big):
    db, ref = big
    for offset in (0, 99_990, 100_000, 249_950):
        p = rows.page(db, RowQuery(offset=offset))
        assert ids_of(p) == ref_ids(ref, offset=offset) and p.n_total == 250_000
    p = rows.page(db, RowQuery(offset=249_990, limit=50))
    assert ids_of(p) == list(range(249_990, 250_000))
    p = rows.page(db, RowQuery(offset=100, descending=True))
    assert ids_of(p) == ref_ids(ref, order="__row_id DESC", offset=100)


def test_deep_pages_filtered_file_order(big):
    db, ref = big
    q = RowQuery(filters=(Filter("k", "<", "100"),))
    n = ref.execute("SELECT count(*) FROM data WHERE k < 100").fetchone()[0]
    # forward, then a jump back, a jump far ahead and the very end: anchors must never change the answer
    for offset in (0, 50, 100, 20_000, 50, 20_050, 10_000, n - 7):
        p = rows.page(db, RowQuery(filters=q.filters, offset=offset))
        assert ids_of(p) == ref_ids(ref, "k < 100", offset=offset), offset
        assert p.n_total == n
    p = rows.page(db, RowQuery(filters=q.filters, offset=30, descending=True))
    assert ids_of(p) == ref_ids(ref, "k < 100", order="__row_id DESC", offset=30)


@pytest.mark.parametrize("sort, descending", [("x", False), ("x", True), ("word", False), ("word", True),
                                              ("k", True)])
def test_deep_pages_sorted(big, sort, descending):
    db, ref = big
    direction = "DESC" if descending else "ASC"
    order = f"{sort} {direction} NULLS LAST, __row_id"
    for offset in (0, 50, 100, 150, 200_000, 200_050, 100, 249_990, 7):
        got = ids_of(rows.page(db, RowQuery(sort=sort, descending=descending, offset=offset)))
        assert got == ref_ids(ref, order=order, offset=offset), offset


def test_deep_pages_sorted_and_filtered(big):
    db, ref = big
    q = dict(filters=(Filter("k", ">=", "500"),), search="needle", sort="x", descending=True)
    where = "k >= 500 AND text ILIKE '%needle%'"
    n = ref.execute(f"SELECT count(*) FROM data WHERE {where}").fetchone()[0]
    assert n > 60
    for offset in (0, 50, 10, n - 5):
        p = rows.page(db, RowQuery(**q, offset=offset))
        assert ids_of(p) == ref_ids(ref, where, "x DESC NULLS LAST, __row_id", offset=offset)
        assert p.n_total == n


@pytest.mark.parametrize("sort, descending, seed", [(None, False, None), (None, True, None), ("x", False, None),
                                                    ("x", True, None), ("word", True, None), (None, False, 3)])
def test_search_first_page_in_one_scan_matches_two_scans(big, monkeypatch, sort, descending, seed):
    db, ref = big
    calls = []
    one_scan = rows._first_ids_and_count
    monkeypatch.setattr(rows, "_first_ids_and_count", lambda *a: calls.append(1) or one_scan(*a))
    q = RowQuery(search="NEEDLE", sort=sort, descending=descending, offset=20, sample_seed=seed)
    db.memo.clear()
    first = rows.page(db, q)  # count unknown: count and page from one scan
    second = rows.page(db, q)  # count known: the usual page query
    assert calls == [1]
    assert ids_of(first) == ids_of(second) and first.n_total == second.n_total == 250
    if seed is None:
        order = f"{sort or '__row_id'} {'DESC' if descending else 'ASC'} NULLS LAST, __row_id"
        assert ids_of(first) == ref_ids(ref, "text ILIKE '%needle%'", order, offset=20)


# -- random sample -----------------------------------------------------------------------------------------
def test_sample_is_seeded_and_reproducible(big):
    db, _ = big
    a = ids_of(rows.page(db, RowQuery(sample_seed=7, limit=20)))
    assert a == ids_of(rows.page(db, RowQuery(sample_seed=7, limit=20)))
    assert a != ids_of(rows.page(db, RowQuery(sample_seed=8, limit=20)))
    assert len(set(a)) == 20 and a == sorted(a)  # shown in file order
    assert max(a) - min(a) > 50_000  # spread over the file, not its start
    # a fresh connection (another process, another day) draws the same sample
    other = DatasetDB(db.settings, db.record)
    assert ids_of(rows.page(other, RowQuery(sample_seed=7, limit=20))) == a
    other.close()


def test_sample_respects_filters_and_sort(big):
    db, ref = big
    p = rows.page(db, RowQuery(filters=(Filter("k", "=", "3"),), sample_seed=1, limit=10, sort="x"))
    matching = {r[0] for r in ref.execute("SELECT __row_id FROM data WHERE k = 3").fetchall()}
    assert set(ids_of(p)) <= matching and len(p.rows) == 10
    xs = list(p.rows["x"].dropna())
    assert xs == sorted(xs)


# -- row, extremes ---------------------------------------------------------------------------------------
def test_row(people):
    r = rows.row(people, 10)
    assert list(r) == COLUMNS
    assert r["name"] == "Jo's" and r["score"] == math.inf and r["day"] == date(2024, 3, 7)
    assert rows.row(people, 1)["age"] is None


@pytest.mark.parametrize("bad", [-1, 12, 10**12, "abc", None, "²"])
def test_row_not_found(people, bad):
    with pytest.raises(NotFound, match="no row"):
        rows.row(people, bad)


def test_extremes(people):
    assert ids_of_df(rows.extremes(people, "score", n=3)) == [10, 7, 5]  # +inf first, NaN left out
    assert ids_of_df(rows.extremes(people, "score", n=2, largest=False)) == [4, 8]
    assert ids_of_df(rows.extremes(people, "age", n=20)) == [9, 5, 2, 7, 11, 0, 4, 6, 10, 8, 3]  # no NULL
    with pytest.raises(NotFound):
        rows.extremes(people, "nope")


def ids_of_df(df) -> list[int]:
    return [int(i) for i in df.index]


# -- CSV export ---------------------------------------------------------------------------------------------
def test_export_all_matching_rows_neutralized(people):
    data = rows.export_csv(people, RowQuery(limit=2))  # the page size does not limit an export
    lines = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert lines[0] == COLUMNS and len(lines) == 13
    formula = [r[COLUMNS.index("formula")] for r in lines[1:]]
    assert formula[1] == "'=HYPERLINK(1)" and formula[2] == "'+1+2" and formula[3] == "'-3"
    assert formula[4] == "'@SUM(A1)" and formula[5] == "'\ttab" and formula[6] == "ok=1"
    assert lines[5][COLUMNS.index("score")] == "-1"  # numbers stay numbers
    assert lines[7][COLUMNS.index('say "hi" / café')] == LONG  # full values, not truncated
    assert lines[1][COLUMNS.index("joined")] == "2024-01-02 10:00:00"


def test_export_filters_sort_and_header_neutralized(tmp_path):
    db = make_db(tmp_path, """SELECT range AS __row_id, range AS "=cmd|' /C calc'!A0", '-' || range::VARCHAR AS v
                              FROM range(120000)""")
    q = RowQuery(filters=(Filter("=cmd|' /C calc'!A0", ">=", "100"),), sort="=cmd|' /C calc'!A0", descending=True)
    chunks = list(rows.iter_csv(db, q))
    assert len(chunks) > 2  # streamed in batches
    lines = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert lines[0] == ["'=cmd|' /C calc'!A0", "v"]
    assert len(lines) == 1 + 119_900
    assert lines[1] == ["119999", "'-119999"] and lines[-1] == ["100", "'-100"]
    db.close()


def test_export_respects_where_and_search(people):
    lines = list(csv.reader(io.StringIO(rows.export_csv(people, RowQuery(where="age > 40", search="o")).decode())))
    assert [r[0] for r in lines[1:]] == ["Gus", "Ivo"]


# -- watchdog ------------------------------------------------------------------------------------------------
def test_watchdog_stops_a_long_query(tmp_path):
    db = make_db(tmp_path, "SELECT range AS __row_id, repeat('v', 2000) || range::VARCHAR AS s FROM range(100000)",
                 query_timeout_s=0.3)
    with pytest.raises(QueryFailed, match=r"took longer than 0.3 s and was stopped"):
        db.df("SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) = 1")
    # an expensive expert WHERE through the public API is stopped the same way (each function is cheap, but
    # twenty of them over 200 MB of text are not)
    slow = "lower(upper(" * 10 + "s" + "))" * 10
    with pytest.raises(QueryFailed, match="took longer than"):
        rows.page(db, RowQuery(where=f"length({slow}) = 42"))
    assert rows.page(db, RowQuery(limit=3)).n_total == 100_000  # the connection still works
    db.close()


def test_watchdog_spares_queries_that_finished(tmp_path):
    # Many quick queries, together far longer than the timeout: an old deadline must never stop a new query.
    db = make_db(tmp_path, "SELECT range AS __row_id, range AS x FROM range(1000)", query_timeout_s=0.2)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.8:
        assert db.rows("SELECT count(*) FROM data")[0][0] == 1000
    db.close()


def test_watchdog_stops_only_the_slow_query_among_threads(tmp_path):
    db = make_db(tmp_path, "SELECT range AS __row_id, range AS x FROM range(1000)", query_timeout_s=0.4)
    results = {}

    def slow():
        try:
            db.rows("SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) = 1")
        except QueryFailed as e:
            results["slow"] = str(e)

    t = threading.Thread(target=slow)
    t.start()
    quick = [db.rows("SELECT sum(x) FROM data")[0][0] for _ in range(20)]
    t.join(10)
    assert quick == [499500] * 20
    assert "took longer than 0.4 s" in results["slow"]
    db.close()


# -- the expert WHERE box ---------------------------------------------------------------------------------
ATTACKS = [
    ("read_csv('/etc/passwd') IS NOT NULL", "table function"),
    ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "subqueries"),
    ("read_text('/etc/passwd') IS NOT NULL", "table function"),
    ("glob('/etc/*') IS NOT NULL", "table function"),
    ("EXISTS (SELECT 1 FROM glob('/*'))", "subqueries"),
    ("age IN (SELECT age FROM data)", "subqueries"),
    ("age = ANY(SELECT 1)", "subqueries"),
    ("1=1; DROP TABLE data", "not statements"),
    ("1=1); DROP TABLE data; --", "not statements"),
    ("1=1) UNION SELECT * FROM read_csv('/etc/passwd') --", "UNION"),
    ("1=1) UNION ALL SELECT * FROM data --", "UNION"),
    ("1=1) ORDER BY age LIMIT 1 --", "ORDER BY"),
    ("1=1) LIMIT 1 --", "ORDER BY"),
    ("1=1) GROUP BY age --", "GROUP BY"),
    ("1=1) QUALIFY (row_number() OVER () < 2", "QUALIFY"),
    ("1=1 --", None),  # a trailing comment is harmless: it is dropped (see test_valid_where)
    ("1=1 /* ) OR (SELECT 1) */", None),
    ("1=1) /*", "does not parse"),
    ("SET threads = 8", "does not parse"),
    ("1=1; SET enable_external_access = true", "not statements"),
    ("current_setting('allowed_paths') IS NOT NULL", "current_setting"),
    ("getvariable('x') IS NULL", "getvariable"),
    ("nope > 1", "unknown column 'nope'"),
    ("data.age > 1", "qualified names"),
    ("age > $1", "parameters"),
    ("age > ?", "parameters"),
    ("count(*) > 1", "aggregate"),
    ("sum(age) > 1", "aggregate"),
    ("row_number() OVER () < 5", "window"),
    ("list_filter([age], x -> x > 1) IS NOT NULL", "list_filter"),
    ("COLUMNS(*) IS NOT NULL", "COLUMNS"),
    ("main.lower(name) = 'a'", "qualified function"),
    ("sleep_ms(10000) IS NULL", "sleep_ms"),
    ("write_log('x') IS NULL", "write_log"),
    ("no_such_function(age)", "unknown function"),
    ("pg_sleep(5) IS NULL", "pg_sleep"),
    # unbounded cost: DuckDB's memory_limit does not bound string building, so these are refused by name
    ("length(repeat(CAST(age AS VARCHAR), 50000000)) > 0", "repeat"),
    ("length(repeat('a', 2000000000)) > 0", "repeat"),
    ("printf('%0999999999d', 1) <> ''", "printf"),
    ("length(lpad('a', 1500000000, 'b')) > 0", "lpad"),
    ("levenshtein(repeat('a', 120000), repeat('b', 120000)) > 0", "levenshtein"),
    ("name || name || name = 'x'", r"\|\|"),
    ("format('{}', name) = 'x'", "format"),
    ("length(string_agg(name, ',')) > 0", "aggregate"),
    ("age > 1) OR (1=1", None),  # still one pure expression over the columns: allowed
    ("", None),
]


@pytest.mark.parametrize("expr, message", [a for a in ATTACKS if a[1] is not None])
def test_where_attacks_refused(people, expr, message):
    with pytest.raises(QueryRejected, match=message) as e:
        validate_where(expr, people.columns)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200
    with pytest.raises(QueryRejected):
        rows.page(people, RowQuery(where=expr))


@pytest.mark.parametrize("expr, expected", [
    ("age > 40", [2, 5, 7, 9]),
    ("\"first name\" = 'c3'", [2]),
    ("\"say \"\"hi\"\" / café\" ILIKE 'caf%'", [0, 2]),
    ("\"select\" BETWEEN 2 AND 3", [2, 3, 7]),
    ("city IN ('Rome', 'Oslo') AND NOT ok", [4, 9]),
    ("CITY = 'Lyon'", [3, 7]),  # DuckDB binds names case-insensitively; accepted when unambiguous
    ("age > 60 -- comment ) OR (1=1", [5, 9]),
    ("age > 60 /* OR 1=1 */", [5, 9]),
    ("isnan(score) OR isinf(score)", [2, 10]),
    ("CASE WHEN age > 50 THEN 'old' ELSE 'young' END = 'old' AND city LIKE 'P%'", [2, 5]),
    ("try_cast(num_text AS INTEGER) > 6 OR lower(name) = 'ann'", [0, 1, 5, 6]),
    ("joined >= TIMESTAMP '2024-03-07' OR day = DATE '2023-12-31'", [2, 10, 11]),
    ("coalesce(age, -1) < 0", [1]),
    ("length(name) > 5 AND name ~~* '%o%'", [4]),
    ("regexp_matches(name, '^[a-c]')", [1]),
    ("__row_id < 2", [0, 1]),
    ("age > 1) OR (1=1", list(range(12))),
])
def test_valid_where(people, expr, expected):
    p = rows.page(people, RowQuery(where=expr))
    assert ids_of(p) == expected


def test_where_canonical_sql_drops_comments(people):
    canonical = validate_where("age > 60 -- DROP TABLE data", people.columns)
    assert canonical == "(age > 60)"
    assert "/*" not in validate_where("age /* x */ > 60", people.columns)
    assert validate_where("  ", people.columns) == ""
    assert validate_where('"CITY" = \'x\'', people.columns) == "(city = 'x')"


def test_where_too_long_or_deep(people):
    with pytest.raises(QueryRejected, match="too long"):
        validate_where("age > 1 AND " * 2000 + "true", people.columns)
    for deep in ("(" * 3000 + "1" + ")" * 3000, "NOT " * 900 + "true", "abs(" * 400 + "1" + ")" * 400 + " > 0"):
        with pytest.raises(QueryRejected, match="nested too deeply"):
            validate_where(deep, people.columns)


# -- the connection itself refuses escapes (defence in depth, even for SQL that skipped every check) -------
@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{other}')",
    "SELECT * FROM '{home}/recipe.db'",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET threads = 64",
    "RESET allowed_paths",
    "ATTACH '{home}/evil.db' AS evil",
    "COPY (SELECT 1) TO '{home}/out.csv'",
    "COPY data TO '{home}/out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{home}/dump'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
])
def test_connection_refuses_escapes(tmp_path, people, sql):
    other = people.settings.snapshots_dir / "other.parquet"
    duckdb.execute(f"COPY (SELECT 42 AS secret) TO '{other}'")
    (tmp_path / "recipe.db").write_text("secret")
    with pytest.raises(QueryFailed) as e:
        people.df(sql.format(home=tmp_path, other=other))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "evil.db").exists()
    assert rows.page(people, RowQuery(limit=1)).n_total == 12  # still working, view intact
