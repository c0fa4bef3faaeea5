"""Ingestion: a file or an upload becomes an immutable Parquet snapshot, named by content hash, in the catalog.

Content is sniffed, never trusted by extension. Bad input raises BadInput with one line and leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, BinaryIO

import duckdb

from recipe_core.config import Settings
from recipe_core.data.limits import check_size, too_big
from recipe_core.data.readers import open_source
from recipe_core.data.records import VISIBILITIES, Column, DatasetRecord
from recipe_core.data.snapshot_writer import stored_rows_sql, text_columns, write_snapshot
from recipe_core.data.source import CHUNK, Source
from recipe_core.data.sql import locked_config, quote_ident, quote_literal
from recipe_core.data.types import is_numeric
from recipe_core.errors import BadInput, NotFound
from recipe_core.safetext import check_text, storable

if TYPE_CHECKING:  # the catalog is handed in: data/ never imports the store's package
    from recipe_core.tracking.store import Store

# DuckDB spills to the work folder beyond this; with Python and pyarrow (~170 MB) the process stays under 1 GB.
# Measured: with 2GB a 100M-row Parquet peaked at 997 MB; with 512MB a 5M-row, 656 MB CSV peaks at 420-510 MB
# (560-700 MB with 2GB) and ingests as fast, within this shared machine's noise.
INGEST_MEMORY_LIMIT = "512MB"
SMALL_FILE = 64 << 20  # bytes hashed before anything else: a re-upload costs no more than its hash
EXACT_DISTINCT_ROWS = 200_000  # distinct values are counted exactly up to this many rows, estimated beyond
LONG_TEXT_CHARS = 40  # a mean length from which a text column is free text (see infer_kind)
SAMPLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson", ".xlsx", ".gz"}


def ingest_file(
    settings: Settings, store: Store, path: Path, *, name: str | None = None, source_name: str | None = None,
    owner: str = "", visibility: str = "shared",
) -> DatasetRecord:
    """Ingest a file on disk (CLI, sample data). Re-ingesting identical bytes returns the existing record (its
    owner and visibility unchanged, deleted or not: tracking.lifecycle.claim_upload says what the uploader gets)."""
    name, owned = _checked_name(name), _ownership(owner, visibility)
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    size = path.stat().st_size
    check_size(size, settings)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing (a full read) runs while DuckDB sniffs the file: both release the GIL.
        digest = pool.submit(_sha256_file, path)
        return _ingest(settings, store, path, digest, size, storable(source_name or path.name), name, owned)


def ingest_bytes(
    settings: Settings, store: Store, data: bytes | BinaryIO, *, source_name: str, name: str | None = None,
    owner: str = "", visibility: str = "shared",
) -> DatasetRecord:
    """Ingest a browser upload: streamed to a private temp file (hashed and capped on the way), then ingested."""
    name, owned = _checked_name(name), _ownership(owner, visibility)
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
                    raise BadInput(too_big("the upload", settings))
                h.update(chunk)
                out.write(chunk)
        check_size(size, settings)
        digest = Future()
        digest.set_result(h.hexdigest())
        return _ingest(settings, store, staged, digest, size, storable(source_name), name, owned)
    finally:
        staged.unlink(missing_ok=True)


def _checked_name(name: str | None) -> str | None:
    """A name the store can hold, checked before anything is written (a NUL fails PostgreSQL mid-transaction)."""
    return None if name is None else check_text(name, "the dataset name", max_chars=200)


def _ownership(owner: str, visibility: str) -> dict:
    """Who a new dataset belongs to and who sees it; a dataset of no one is everyone's."""
    if visibility not in VISIBILITIES:
        raise BadInput(f"visibility is one of {', '.join(VISIBILITIES)}, not {str(visibility)[:20]!r}")
    owner = check_text(owner or "", "the owner", max_chars=320)
    return {"owner": owner, "visibility": visibility if owner else "shared"}


def ensure_samples(settings: Settings, store: Store, sample_dir: Path) -> list[DatasetRecord]:
    """Register every data file in sample_dir; cheap when already registered (hash, then skip)."""
    files = sorted(p for p in Path(sample_dir).iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    return [ingest_file(settings, store, p) for p in files]


def infer_kind(dtype: str, n_rows: int, n_distinct: int, avg_len: float | None) -> str:
    """How the app treats a column by default: one of records.KINDS."""
    dtype = dtype.upper()
    if dtype == "BOOLEAN":
        return "boolean"
    if is_numeric(dtype):
        return "numeric"  # integer 0/1 columns too: a model can use them as numbers
    if dtype == "DATE" or dtype.startswith("TIMESTAMP"):
        return "datetime"
    few_values = n_distinct <= max(20, 0.05 * n_rows)
    return "categorical" if few_values and (avg_len or 0.0) < LONG_TEXT_CHARS else "text"


def _ingest(settings, store, path: Path, digest: Future, size: int, source_name: str, name: str | None,
            owned: dict):
    if size <= SMALL_FILE:
        # Hashing a small file takes milliseconds: a re-upload then skips all work (ensure_samples on start).
        found = _existing(settings, store, digest.result())
        if found is not None:
            return found
    work = _tmp_root(settings) / f"ingest-{uuid.uuid4().hex}"
    work.mkdir()
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.snapshots_dir / f".ingest-{uuid.uuid4().hex}.tmp"  # same folder: os.link/replace is atomic
    # Ingestion reads only files we chose; still, nothing may be fetched or loaded behind our back.
    con = duckdb.connect(config=locked_config(memory_limit=INGEST_MEMORY_LIMIT, temp_directory=str(work / "spill")))
    # DuckDB draws a progress bar on stdout for a query over 2 s: into the CLI's JSON (a busy machine failed a test).
    con.execute("SET enable_progress_bar = false")
    closed = threading.Event()
    try:
        src = open_source(con, path, work, settings)
        if digest.done():
            found = _existing(settings, store, digest.result())
            if found is not None:
                return found
        else:
            # A large file opens before its hash is done (a Parquet file in milliseconds): the COPY starts at once
            # and is stopped if the hash names bytes registered already (the hash was a serial 0.7-1.7 s before).
            digest.add_done_callback(lambda done: _stop_if_registered(con, closed, settings, store, done))
        try:
            n_rows, columns = _write_and_describe(con, src, tmp, settings)
        except (BadInput, duckdb.InterruptException):
            found = _existing(settings, store, digest.result())  # registered bytes return their record, as before
            if found is None:
                raise
            return found
        found = _existing(settings, store, digest.result())
        if found is not None:
            return found
        dataset_id = digest.result()[:16]
        final = settings.snapshots_dir / f"{dataset_id}.parquet"
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
            **owned,
        )
        # Store.add_dataset settles a race with another process: the loser gets the winner's record.
        return store.add_dataset(record)
    finally:
        closed.set()
        con.close()
        tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _stop_if_registered(con, closed: threading.Event, settings: Settings, store: Store, digest: Future) -> None:
    """Run when the hash is done: interrupt the connection's work if these bytes are registered already."""
    if closed.is_set() or digest.exception() is not None:
        return
    if _existing(settings, store, digest.result()) is not None:
        with contextlib.suppress(duckdb.Error):  # closed meanwhile: nothing left to stop
            con.interrupt()


def _write_and_describe(con, src: Source, tmp: Path, settings: Settings) -> tuple[int, tuple[Column, ...]]:
    """Write the snapshot; then its row count and columns with their kinds.

    A Parquet source is read a second time, beside the COPY, for the distinct counts of its text columns: DuckDB
    writes Parquet on about one core of two, so the count costs no time there, where after the COPY it was a
    second full scan (a quarter of the COPY's time on a 10M-row table with four text columns).
    """
    counted = src.fmt.startswith("parquet") and (src.row_bound or 0) > EXACT_DISTINCT_ROWS
    cursor = con.cursor() if counted else None  # a second connection to the same database, for the other thread
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            counts = pool.submit(_short_text_counts, cursor, f"({stored_rows_sql(src)})", text_columns(src)) \
                if counted else None
            try:
                n_rows = write_snapshot(con, src, tmp, settings)
            except BaseException:
                if cursor is not None:
                    cursor.interrupt()  # the COPY failed: its count is not wanted
                raise
    finally:
        if cursor is not None:
            cursor.close()
    if n_rows == 0:
        raise BadInput(_no_rows(src))
    early = {}
    if counts is not None and counts.exception() is None and n_rows > EXACT_DISTINCT_ROWS:
        early = counts.result()  # the same values as the snapshot's, so the same HyperLogLog estimate
    return n_rows, _columns(con, tmp, n_rows, early)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _short_text_counts(con, rows_sql: str, names: list[str]) -> dict[str, int]:
    """The estimated distinct counts of the text columns that are short in the first rows (the same rows as the
    snapshot's first: the COPY keeps the order); _columns counts any other it finds short."""
    lengths = _mean_lengths(con, rows_sql, names)
    return _distinct_counts(con, rows_sql, [n for n in names if (lengths[n] or 0.0) < LONG_TEXT_CHARS], approx=True)


def _columns(con, snapshot: Path, n_rows: int, counts: dict[str, int]) -> tuple[Column, ...]:
    """The snapshot's columns and their kinds; counts holds distinct counts known already."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(snapshot))})").fetchall()
    types = {r[0]: r[1] for r in described}
    parquet = f"read_parquet({quote_literal(str(snapshot))})"
    texts = [n for n, t in types.items() if t == "VARCHAR"]
    lengths = _mean_lengths(con, parquet, texts)
    # A long text is free text whatever its number of values: only the short ones need a count.
    short = [n for n in texts if n not in counts and (lengths[n] or 0.0) < LONG_TEXT_CHARS]
    counts = {**counts, **_distinct_counts(con, parquet, short, approx=n_rows > EXACT_DISTINCT_ROWS)}

    def kind(name: str, dtype: str) -> str:
        if name not in lengths:
            return infer_kind(dtype, n_rows, 0, None)
        return infer_kind(dtype, n_rows, counts.get(name, n_rows), lengths[name])  # n_rows: a long text, uncounted

    return tuple(Column(name, dtype, kind(name, dtype)) for name, dtype in types.items())


def _mean_lengths(con, from_sql: str, names: list[str]) -> dict[str, float | None]:
    """The mean length of each text column over the first 100k rows: enough for a threshold, and much cheaper
    than every row on long texts."""
    out = {}
    for batch in _batches(names):
        cols = [quote_ident(n) for n in batch]
        found = con.execute(f"SELECT {', '.join(f'avg(length({c}))' for c in cols)} "
                            f"FROM (SELECT {', '.join(cols)} FROM {from_sql} LIMIT 100000)").fetchone()
        out.update({n: None if v is None else float(v) for n, v in zip(batch, found, strict=True)})
    return out


def _distinct_counts(con, from_sql: str, names: list[str], approx: bool) -> dict[str, int]:
    """The number of distinct values of each column over every row: exact, or a HyperLogLog estimate when approx
    (beyond EXACT_DISTINCT_ROWS rows), which tells categories from free text as well."""
    distinct = "approx_count_distinct({})" if approx else "count(DISTINCT {})"
    out = {}
    for batch in _batches(names):
        found = con.execute(f"SELECT {', '.join(distinct.format(quote_ident(n)) for n in batch)} "
                            f"FROM {from_sql}").fetchone()
        out.update({n: int(v) for n, v in zip(batch, found, strict=True)})
    return out


def _batches(names: list[str], size: int = 200) -> list[list[str]]:
    return [names[i:i + size] for i in range(0, len(names), size)]  # bounded statement size for very wide files


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


def _tmp_root(settings: Settings) -> Path:
    root = settings.home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _no_rows(src: Source) -> str:
    if src.csv is not None and src.csv.get("header"):
        return "the file has a header row but no data rows"
    return "the file has no data rows"


def _default_name(source_name: str) -> str:
    """The file name without folders (either slash) and without .gz and the format's extension."""
    base = PureWindowsPath(source_name).name
    if base.lower().endswith(".gz"):
        base = base[:-3]
    return Path(base).stem

