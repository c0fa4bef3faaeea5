"""Ingest a large Parquet file through the app's core and time it against DuckDB's own Parquet-to-Parquet copy.

    python bench/ingest.py                  # 10M rows x 11 columns (numeric, categorical, text)
    python bench/ingest.py --rows 1000000 --runs 5 --phases

Generates the Parquet file with DuckDB in a temp folder (--keep-data keeps it in bench/out/ for the next run),
then alternates DuckDB's own COPY (SELECT * FROM read_parquet(...)) TO ... (same row groups and compression as
the snapshot) with ingest.ingest_file into a fresh home, and prints each, their medians and the ratio.
--phases also times the steps of one ingest (hashing, opening, writing, column stats), to show where time goes.
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from recipe_core.config import Settings  # noqa: E402
from recipe_core.data import ingest, snapshot_writer  # noqa: E402
from recipe_core.tracking.store import Store  # noqa: E402

OUT = ROOT / "bench" / "out"
WORDS = ["red", "green", "blue", "black", "white", "apple", "pear", "plum", "kiwi", "lemon", "river", "stone",
         "cloud", "storm", "light", "night", "quick", "lazy", "brown", "fox", "dog", "cat", "bird", "fish",
         "alpha", "beta", "gamma", "delta", "north", "south", "east", "west", "paper", "glass", "metal", "wood",
         "Paris", "Berlin", "Lyon", "Rome", "Oslo", "Madrid", "Lisbon", "Vienna", "Prague", "Dublin"]
CITIES = WORDS[36:]
TARGET = 1.5  # the bound on ingest / DuckDB's own copy


def cpu_seconds() -> float:
    """CPU time of this process, all threads (DuckDB's too): a load on the shared machine changes it little."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def log(*args) -> None:
    print(*args, flush=True)


def generate_parquet(path: Path, n_rows: int) -> None:
    """A table like a real one, written as DuckDB writes Parquet by default (its row groups, snappy)."""
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
        {cities}[1 + (hash(range * 7) % {len(CITIES)})::BIGINT] AS city,
        'cat_' || (hash(range * 11) % 40)::VARCHAR AS category,
        hash(range * 13) % 2 = 0 AS flag,
        TIMESTAMP '2020-01-01' + to_seconds((hash(range * 19) % 150000000)::BIGINT) AS created,
        {word(23)} || ' ' || {word(29)} || ' ' || {word(31)} AS title,
        {word(37)} || ' ' || {word(41)} || ' ' || {word(43)} || ' ' || {word(47)} || ' ' || {word(53)} || ' '
            || (hash(range * 67) % 1000000)::VARCHAR AS comment
    FROM range({n_rows})) TO '{path}.part' (FORMAT parquet)"""
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(sql)
    con.close()
    os.replace(f"{path}.part", path)
    log(f"data: generated {n_rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB Parquet "
        f"in {time.perf_counter() - start:.1f} s")


def duckdb_copy(source: Path, out: Path) -> tuple[float, float]:
    """The plain baseline: DuckDB alone, Parquet to Parquet, with the snapshot's row groups and compression."""
    con = duckdb.connect()
    start, cpu = time.perf_counter(), cpu_seconds()
    con.execute(f"COPY (SELECT * FROM read_parquet('{source}')) TO '{out}' (FORMAT parquet, "
                f"ROW_GROUP_SIZE {snapshot_writer.ROW_GROUP_SIZE}, COMPRESSION {snapshot_writer.COMPRESSION})")
    seconds = time.perf_counter() - start, cpu_seconds() - cpu
    con.close()
    out.unlink()
    return seconds


def app_ingest(source: Path, home: Path) -> tuple[float, float]:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = Settings(home=home, store_url=f"sqlite:///{home / 'recipe.db'}", max_upload_bytes=1 << 40)
    store = Store(settings.store_url)
    start, cpu = time.perf_counter(), cpu_seconds()
    ingest.ingest_file(settings, store, source, name="bench")
    seconds = time.perf_counter() - start, cpu_seconds() - cpu
    shutil.rmtree(home, ignore_errors=True)
    return seconds


# -- where the time goes ----------------------------------------------------------------------------------
PHASES = {  # module, function: what it does in an ingest (the hash and the counts run beside the COPY)
    (ingest, "_sha256_file"): "hash the file (a thread)",
    (ingest, "open_source"): "open: sniff, footer checks, schema",
    (ingest, "write_snapshot"): "write the snapshot (COPY, checks)",
    (ingest, "_distinct_counts"): "distinct counts of text columns",
    (ingest, "_mean_lengths"): "mean lengths of text columns",
    (ingest, "_columns"): "columns and kinds, after the COPY",
    (ingest, "_publish"): "publish (link into place)",
}


def time_phases(source: Path, home: Path) -> None:
    spent: dict[str, float] = {}
    lock = threading.Lock()
    originals = []
    for (module, name), label in PHASES.items():
        fn = getattr(module, name)
        originals.append((module, name, fn))

        @functools.wraps(fn)
        def timed(*args, _fn=fn, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                with lock:
                    spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - start

        setattr(module, name, timed)
    try:
        total = app_ingest(source, home)
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)
    log(f"\nphases of one ingest ({total[0]:.2f} s; some overlap, see PHASES):")
    for label, seconds in spent.items():
        log(f"  {seconds:6.2f} s  {label}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep-data", action="store_true", help="keep (and reuse) the file in bench/out/")
    ap.add_argument("--phases", action="store_true", help="also time the steps of one ingest")
    ap.add_argument("--file", type=Path, help="ingest this Parquet file instead of generating one")
    args = ap.parse_args()

    log(f"machine: {os.cpu_count()} cores; duckdb {duckdb.__version__}")
    with tempfile.TemporaryDirectory(dir=OUT if OUT.exists() else None) as tmp:
        tmp = Path(tmp)
        source = args.file or (OUT if args.keep_data else tmp) / f"ingest_{args.rows}.parquet"
        if source.exists():
            log(f"data: reusing {source} ({source.stat().st_size / 1e6:,.0f} MB)")
        else:
            source.parent.mkdir(parents=True, exist_ok=True)
            generate_parquet(source, args.rows)
        # Alternate the two, so a busy moment on this shared machine does not decide the ratio.
        copies, ingests = [duckdb_copy(source, tmp / "duckdb_own.parquet")], []
        for _ in range(args.runs):
            ingests.append(app_ingest(source, tmp / "home"))
            copies.append(duckdb_copy(source, tmp / "duckdb_own.parquet"))
        # The best of each is what the machine's other work disturbs least; the medians are printed beside it.
        for what, i in (("wall", 0), ("CPU", 1)):
            copy, app = [c[i] for c in copies], [a[i] for a in ingests]
            log(f"{what} seconds:")
            log(f"  DuckDB's own copy read_parquet -> Parquet: {', '.join(f'{c:.2f}' for c in copy)} "
                f"(best {min(copy):.2f}, median {statistics.median(copy):.2f})")
            log(f"  ingest.ingest_file:                        {', '.join(f'{a:.2f}' for a in app)} "
                f"(best {min(app):.2f}, median {statistics.median(app):.2f})")
            medians = statistics.median(app) / statistics.median(copy)
            log(f"  ratio: {min(app) / min(copy):.2f} best to best, {medians:.2f} median to median"
                + (f" (target <= {TARGET})" if i == 0 else ""))
        if args.phases:
            time_phases(source, tmp / "home")


if __name__ == "__main__":
    main()
