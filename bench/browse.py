"""Browse a large table through the app's core and time it against the same SQL run directly in DuckDB.

    python bench/browse.py              # 10M rows x 11 columns (numeric, categorical, text)
    python bench/browse.py --rows 1000000 --runs 3

Generates a CSV with DuckDB (cached in bench/out/), ingests it with recipe_core.data.ingest.ingest_file (timed
against DuckDB's own read of the file), then times pages, histograms and value counts through recipe_core.
Each app call is recorded (the SQL it sends) and replayed on a plain DuckDB connection with the same settings:
"same SQL" is the app's overhead, "naive SQL" is what one would write by hand (LIMIT/OFFSET, one query).
"cold" clears the per-connection caches before every run; "warm" is the next page after a visited one.
App memory is measured in a separate process that only browses (peak RSS).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from recipe_core.config import Settings  # noqa: E402
from recipe_core.data import distributions, filters, rows, snapshot_writer  # noqa: E402
from recipe_core.data.db import DatasetDB, snapshot_scan, view_columns  # noqa: E402
from recipe_core.data.filters import Filter, RowQuery  # noqa: E402
from recipe_core.data.ingest import ingest_file  # noqa: E402
from recipe_core.data.snapshot import snapshot_path  # noqa: E402
from recipe_core.data.sql import quote_ident  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402

OUT = ROOT / "bench" / "out"
WORDS = ["red", "green", "blue", "black", "white", "apple", "pear", "plum", "kiwi", "lemon", "river", "stone",
         "cloud", "storm", "light", "night", "quick", "lazy", "brown", "fox", "dog", "cat", "bird", "fish",
         "alpha", "beta", "gamma", "delta", "north", "south", "east", "west", "paper", "glass", "metal", "wood",
         "happy", "sad", "calm", "loud", "early", "late", "small", "large", "round", "flat", "sharp", "soft",
         "Paris", "Berlin", "Lyon", "Rome", "Oslo", "Madrid", "Lisbon", "Vienna", "Prague", "Dublin", "Athens",
         "Warsaw", "Zurich", "Geneva"]
CITIES = WORDS[48:58]


def log(*args) -> None:
    print(*args, flush=True)


# -- data --------------------------------------------------------------------------------------------------
def generate_csv(n_rows: int) -> Path:
    path = OUT / f"browse_{n_rows}.csv"
    if path.exists():
        log(f"data: reusing {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:,.0f} MB)")
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    cities = "[" + ", ".join(f"'{w}'" for w in CITIES) + "]"

    def word(seed: int) -> str:
        return f"{words}[1 + (hash(range * {seed}) % {len(WORDS)})::BIGINT]"

    sql = f"""
    COPY (SELECT
        range AS id,
        round((hash(range) % 10000000) / 100.0, 2) AS price,
        (hash(range * 3) % 90)::INTEGER AS age,
        CASE WHEN range % 20 = 0 THEN NULL ELSE round((hash(range * 5) % 100000) / 1000.0, 3) END AS score,
        (hash(range * 17) % 1000)::INTEGER AS qty,
        {cities}[1 + (hash(range * 7) % 10)::BIGINT] AS city,
        'cat_' || (hash(range * 11) % 40)::VARCHAR AS category,
        hash(range * 13) % 2 = 0 AS flag,
        TIMESTAMP '2020-01-01' + to_seconds((hash(range * 19) % 150000000)::BIGINT) AS created,
        {word(23)} || ' ' || {word(29)} || ' ' || {word(31)} AS title,
        {word(37)} || ' ' || {word(41)} || ' ' || {word(43)} || ' ' || {word(47)} || ' ' || {word(53)} || ' '
            || {word(59)} || ' ' || {word(61)} || ' ' || (hash(range * 67) % 100000)::VARCHAR AS comment
    FROM range({n_rows})) TO '{path}.part' (FORMAT csv, HEADER)"""
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(sql)
    con.close()
    os.replace(f"{path}.part", path)
    log(f"data: generated {n_rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB CSV "
        f"in {time.perf_counter() - start:.1f} s")
    return path


def ingest(csv_path: Path, home: Path) -> tuple[Settings, object]:
    settings = Settings(home=home, store_url=f"sqlite:///{home / 'recipe.db'}", max_upload_bytes=1 << 40)
    home.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url)
    # DuckDB's own read of the same file, into a Parquet file like the snapshot (before and after the ingest,
    # so a busy moment on the machine does not decide the ratio), and into an in-memory table.
    base = home / "duckdb_own.parquet"

    def duckdb_copy() -> float:
        con = duckdb.connect()
        start = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}')) TO '{base}' (FORMAT parquet, "
                    f"ROW_GROUP_SIZE {snapshot_writer.ROW_GROUP_SIZE}, COMPRESSION {snapshot_writer.COMPRESSION})")
        seconds = time.perf_counter() - start
        con.close()
        base.unlink()
        return seconds

    t_copy = [duckdb_copy()]
    start = time.perf_counter()
    record = ingest_file(settings, store, csv_path, name="browse")
    t_ingest = time.perf_counter() - start
    t_copy.append(duckdb_copy())
    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv_path}')")
    t_table = time.perf_counter() - start
    con.close()
    copy = statistics.mean(t_copy)
    log(f"ingest: {t_ingest:.1f} s through ingest.ingest_file; DuckDB alone: read_csv -> Parquet "
        f"{t_copy[0]:.1f} s / {t_copy[1]:.1f} s before / after (ratio {t_ingest / copy:.2f} to their mean), "
        f"read_csv -> in-memory table {t_table:.1f} s (ratio {t_ingest / t_table:.2f}); target <= 1.5")
    return settings, record


# -- timing ------------------------------------------------------------------------------------------------
class Recorder:
    """Wraps a DatasetDB so every statement the app sends is kept for replay on a raw connection."""

    def __init__(self, db: DatasetDB):
        self.db, self.calls = db, []
        self._df, self._rows = db.df, db.rows
        db.df = lambda sql, params=(): self._keep("df", sql, params, self._df)
        db.rows = lambda sql, params=(): self._keep("rows", sql, params, self._rows)

    def _keep(self, kind, sql, params, fn):
        self.calls.append((kind, sql, list(params)))
        return fn(sql, params)

    def record(self, fn):
        self.calls = []
        fn()
        return list(self.calls)


def raw_connection(settings: Settings, path: Path, view_sql: str, same_settings: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": settings.duckdb_threads, "memory_limit": settings.duckdb_memory_limit})
    if same_settings:
        con.execute("SET parquet_metadata_cache=true")
    con.execute(f"CREATE VIEW data AS SELECT {view_sql} FROM {snapshot_scan(path)}")
    return con


def replay(con, calls) -> None:
    for kind, sql, params in calls:
        result = con.execute(sql, params)
        result.df() if kind == "df" else result.fetchall()


def median_ms(fns: list, runs: int) -> list[float]:
    """Median time of each function; runs are interleaved so that machine noise hits all alike."""
    times = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def naive_page_calls(db: DatasetDB, q: RowQuery) -> list:
    """One LIMIT/OFFSET query over all columns plus a count: what one would write by hand."""
    pred, params = filters.predicate(db, q)
    where = f"WHERE {pred}" if pred else ""
    if q.sample_seed is not None:
        order = f"ORDER BY hash(__row_id, {int(q.sample_seed)}), __row_id"
    elif q.sort:
        order = f"ORDER BY {quote_ident(q.sort)} {'DESC' if q.descending else 'ASC'} NULLS LAST, __row_id"
    else:
        order = ""  # file order is kept without ORDER BY (which would sort everything)
    return [("df", f"SELECT * FROM data {where} {order} LIMIT {q.limit} OFFSET {q.offset}", params),
            ("rows", f"SELECT count(*) FROM data {where}", params)]


def scenarios(db: DatasetDB, n: int) -> list[tuple]:
    """(name, app function, warm-up before each run or None, naive calls or None)."""
    search = RowQuery(filters=(Filter("city", "=", "Paris"), Filter("age", ">", "30")), search="storm",
                      sort="price", descending=True)
    deep_sorted = RowQuery(sort="price", descending=True, offset=n // 2)
    deep_filtered = RowQuery(filters=(Filter("age", ">", "30"),), offset=n // 4)

    def page(q):
        return lambda: rows.page(db, q)

    def next_of(q):
        return RowQuery(**{**q.__dict__, "offset": q.offset + q.limit})

    hist, counts = distributions.histogram, distributions.value_counts
    out = [
        ("page 0, file order", page(RowQuery()), None, RowQuery()),
        ("deep page, file order (middle)", page(RowQuery(offset=n // 2)), None, RowQuery(offset=n // 2)),
        ("last page, file order", page(RowQuery(offset=n - 50)), None, RowQuery(offset=n - 50)),
        ("sorted page 0 (price desc)", page(RowQuery(sort="price", descending=True)), None,
         RowQuery(sort="price", descending=True)),
        ("deep sorted page (middle), cold", page(deep_sorted), None, deep_sorted),
        ("deep sorted page, next page (warm)", page(next_of(deep_sorted)), page(deep_sorted), next_of(deep_sorted)),
        ("filter+search+sort page 0, cold", page(search), None, search),
        ("filter+search+sort page 2 (warm)", page(next_of(search)), page(search), next_of(search)),
        ("filtered deep page (n/4), cold", page(deep_filtered), None, deep_filtered),
        ("filtered deep page, next (warm)", page(next_of(deep_filtered)), page(deep_filtered), next_of(deep_filtered)),
        ("random sample (seed 1)", page(RowQuery(sample_seed=1)), None, RowQuery(sample_seed=1)),
        ("histogram price (30 bins)", lambda: hist(db, "price", 30), None, None),
        ("histogram created (datetime)", lambda: hist(db, "created", 30), None, None),
        ("histogram title (text length)", lambda: hist(db, "title", 30), None, None),
        ("value counts city", lambda: counts(db, "city", 20), None, None),
        ("value counts category", lambda: counts(db, "category", 20), None, None),
        ("extremes price (largest 50)", lambda: rows.extremes(db, "price", 50), None, None),
        ("row detail", lambda: rows.row(db, n // 3), None, None),
    ]
    return out


def time_all(settings: Settings, record, runs: int) -> None:
    db = DatasetDB(settings, record)
    n = record.n_rows
    path = snapshot_path(settings, record)
    view = view_columns(record)
    same = raw_connection(settings, path, view, same_settings=True)
    naive = raw_connection(settings, path, view, same_settings=False)
    rec = Recorder(db)
    meta = same.execute(f"SELECT count(*), max(row_group_num_rows) FROM parquet_metadata('{path}') "
                        f"WHERE column_id = 0").fetchone()
    log(f"snapshot: {path.stat().st_size / 1e6:,.0f} MB, {meta[0]} row groups of up to {meta[1]:,} rows")
    log(f"\n{n:,} rows, {len(record.columns)} columns; DuckDB threads={settings.duckdb_threads}, "
        f"memory_limit={settings.duckdb_memory_limit}; median of {runs} runs (interleaved)")
    log(f"{'operation':38s} {'app ms':>9s} {'same SQL':>9s} {'ratio':>6s} {'naive SQL':>10s} {'app/naive':>9s}")
    for name, fn, warm, naive_q in scenarios(db, n):
        def app_run(fn=fn, warm=warm):
            db.memo.clear()
            if warm:
                warm()
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        # The SQL the app sends for this call (after its warm-up), replayed as is on a raw connection.
        db.memo.clear()
        if warm:
            warm()
        calls = rec.record(fn)
        naive_calls = naive_page_calls(db, naive_q) if naive_q is not None else None
        app_ms, same_ms, naive_ms = [], [], []
        for _ in range(runs):
            app_ms.append(app_run() * 1000)
            start = time.perf_counter()
            replay(same, calls)
            same_ms.append((time.perf_counter() - start) * 1000)
            if naive_calls and (naive_ms == [] or statistics.median(naive_ms) < 20_000):
                start = time.perf_counter()
                replay(naive, naive_calls)
                naive_ms.append((time.perf_counter() - start) * 1000)
        a, s = statistics.median(app_ms), statistics.median(same_ms)
        nv = f"{statistics.median(naive_ms):10.1f} {a / statistics.median(naive_ms):9.2f}" if naive_ms else ""
        log(f"{name:38s} {a:9.1f} {s:9.1f} {a / s:6.2f} {nv}")
    same.close()
    naive.close()
    db.close()


def search_methods(settings: Settings, record, runs: int) -> None:
    """Case-insensitive substring search over every text column: which SQL form is fastest here."""
    db = DatasetDB(settings, record)
    log("\nsearch (count of matches over all text columns), by method:")
    default_method = filters.SEARCH_METHOD
    for text in ("storm", "Stor", "xyz"):
        row = []
        for method in ("regexp", "lower", "ilike"):
            filters.SEARCH_METHOD = method
            db.memo.clear()
            ms = median_ms([lambda: (db.memo.clear(), rows.count(db, RowQuery(search=text)))], runs)[0]
            row.append(f"{method} {ms:8.1f} ms")
        log(f"  {text!r:8s} " + "   ".join(row))
    filters.SEARCH_METHOD = default_method  # the code's own choice, for the figures after this one
    db.close()


def browse_only(settings: Settings, record) -> None:
    """Child process: browse like a user (every scenario once, cold and warm) and report the peak RSS."""
    import gc
    base = peak_rss_mb()
    db = DatasetDB(settings, record)
    steps = []
    for name, fn, warm, _ in scenarios(db, record.n_rows):
        if warm:
            warm()
        fn()
        steps.append((name, peak_rss_mb()))
    rows.export_csv(db, RowQuery(filters=(Filter("age", "<", "1"), Filter("city", "=", "Oslo"))))
    steps.append(("CSV export (filtered)", peak_rss_mb()))
    gc.collect()
    # Where the high-water mark rose the most.
    rises = [(b - a, name) for (name, b), a in zip(steps, [base] + [s[1] for s in steps[:-1]])]
    top = ", ".join(f"{name} +{rise:.0f} MB" for rise, name in sorted(rises, reverse=True)[:3] if rise > 0)
    worker = db._con.pid  # the queries ran in the dataset's worker process: its memory counts too
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "after_imports_mb": base, "top": top,
                      "worker_peak_rss_mb": peak_rss_mb(worker) if worker else 0.0}))


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak RSS of a process (this one by default). ru_maxrss survives fork+exec (a child reports its parent's
    peak), so on Linux read VmHWM, which starts afresh at exec."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the ingested home in bench/out/home_<rows>")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept home instead of ingesting again")
    ap.add_argument("--search-methods", action="store_true", help="also compare the search SQL forms")
    ap.add_argument("--row-group-size", type=int,
                    help="experiment: ingest with this many rows per row group instead of snapshot_writer.ROW_GROUP_SIZE")
    ap.add_argument("--browse-child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    home = OUT / f"home_{args.rows}" if not args.row_group_size else OUT / f"home_{args.rows}_rg{args.row_group_size}"
    if args.row_group_size:
        snapshot_writer.ROW_GROUP_SIZE = args.row_group_size
    if args.browse_child:
        settings = Settings(home=home, store_url=f"sqlite:///{home / 'recipe.db'}", max_upload_bytes=1 << 40)
        browse_only(settings, Store(settings.store_url).get_dataset(args.browse_child))
        return

    log(f"machine: {os.cpu_count()} cores; duckdb {duckdb.__version__}")
    if args.reuse and (home / "recipe.db").exists():
        settings = Settings(home=home, store_url=f"sqlite:///{home / 'recipe.db'}", max_upload_bytes=1 << 40)
        record = Store(settings.store_url).get_dataset("browse")
        log(f"ingest: reusing {home.relative_to(ROOT)}")
    else:
        csv_path = generate_csv(args.rows)
        shutil.rmtree(home, ignore_errors=True)
        settings, record = ingest(csv_path, home)
    try:
        time_all(settings, record, args.runs)
        if args.search_methods:
            search_methods(settings, record, args.runs)
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--browse-child", record.id]
        if args.row_group_size:
            cmd += ["--row-group-size", str(args.row_group_size)]
        child = subprocess.run(cmd, capture_output=True, text=True, check=True)
        mem = json.loads(child.stdout.strip().splitlines()[-1])
        total = mem["peak_rss_mb"] + mem["worker_peak_rss_mb"]
        log(f"\nmemory: peak RSS of a process that only browses (every operation above, and a CSV export): "
            f"{mem['peak_rss_mb']:.0f} MB, and of the dataset's query worker {mem['worker_peak_rss_mb']:.0f} MB: "
            f"{total:.0f} MB together (after imports: {mem['after_imports_mb']:.0f} MB; target < 500 MB); "
            f"largest rises: {mem['top']}")
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
