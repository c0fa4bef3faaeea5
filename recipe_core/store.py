"""The SQL store (SQLite by default, PostgreSQL for teams): the dataset catalog, and later runs and labels.

Only this module holds SQL for the store. Records cross its boundary as frozen dataclasses.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from recipe_core.errors import BadInput, NotFound, RecipeError

KINDS = ("numeric", "categorical", "text", "boolean", "datetime")


@dataclass(frozen=True)
class Column:
    name: str  # exactly as in the file (after de-duplication)
    dtype: str  # DuckDB storage type in the snapshot, e.g. BIGINT, DOUBLE, VARCHAR
    kind: str  # how the app treats it: one of KINDS; the user may override it


@dataclass(frozen=True)
class DatasetRecord:
    id: str  # content hash of the uploaded bytes: identical uploads share one dataset
    name: str  # unique display name
    source_name: str  # the uploaded file's name, shown only, never used as a path
    fmt: str  # sniffed format: csv, tsv, parquet, json, jsonl, xlsx (with "+gzip" when compressed)
    n_rows: int
    columns: tuple[Column, ...]
    snapshot: str  # file name of the Parquet snapshot inside Settings.snapshots_dir
    created_at: str = ""  # ISO time, UTC
    notes: tuple[str, ...] = ()  # ingestion warnings, e.g. renamed duplicate column names
    size_bytes: int = 0  # of the uploaded file

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise NotFound(f"dataset {self.name!r} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


metadata = sa.MetaData()

datasets_table = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("fmt", sa.String(32), nullable=False),
    sa.Column("n_rows", sa.BigInteger, nullable=False),
    sa.Column("columns_json", sa.Text, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("notes_json", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers and one writer work at once; FULL sync so an acknowledged write survives a kill.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Store:
    """One small interface over the SQL store; the backend is chosen by URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)

    # -- datasets ---------------------------------------------------------------------------
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Register a dataset; an id already present returns the existing record unchanged.

        Safe when several processes register at once: the loser of a race on the id gets the winner's
        record, and the loser of a race on the name tries the next free name.
        """
        record = replace(record, created_at=record.created_at or _now())
        for _ in range(20):
            existing = self._dataset_by_id(record.id)
            if existing is not None:
                return existing
            try:
                with self.engine.begin() as conn:
                    named = replace(record, name=_free_name(conn, record.name))
                    conn.execute(datasets_table.insert().values(**_dataset_row(named)))
                return named
            except sa.exc.IntegrityError:
                continue
        raise RecipeError(f"could not register dataset {record.name!r}: the store is too busy, try again")

    def get_dataset(self, key: str) -> DatasetRecord:
        """By exact id, exact name, or unambiguous id prefix."""
        key = str(key)
        found = self._dataset_by_id(key)
        if found is not None:
            return found
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(datasets_table).where(datasets_table.c.name == key)).first()
            if row is None and len(key) >= 4 and all(ch in "0123456789abcdef" for ch in key):
                rows = conn.execute(
                    sa.select(datasets_table).where(datasets_table.c.id.startswith(key, autoescape=True))
                ).all()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NotFound(f"no dataset with id or name {key!r}")
        return _dataset_record(row)

    def list_datasets(self) -> list[DatasetRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(datasets_table).order_by(datasets_table.c.created_at)).all()
        return [_dataset_record(r) for r in rows]

    def set_column_kind(self, dataset_id: str, column: str, kind: str) -> DatasetRecord:
        """Override how the app treats a column; the snapshot itself never changes."""
        if kind not in KINDS:
            raise BadInput(f"unknown column type {kind!r}; choose one of {', '.join(KINDS)}")
        record = self.get_dataset(dataset_id)
        record.column(column)  # raises NotFound for an unknown column
        columns = tuple(replace(c, kind=kind) if c.name == column else c for c in record.columns)
        with self.engine.begin() as conn:
            conn.execute(
                datasets_table.update()
                .where(datasets_table.c.id == record.id)
                .values(columns_json=_columns_json(columns))
            )
        return replace(record, columns=columns)

    def _dataset_by_id(self, dataset_id: str) -> DatasetRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(datasets_table).where(datasets_table.c.id == dataset_id)).first()
        return None if row is None else _dataset_record(row)


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str) -> sa.Engine:
    with _engines_lock:
        if url not in _engines:
            engine = sa.create_engine(url, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                if engine.url.database and engine.url.database != ":memory:":
                    Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            _create_tables(engine)
            _engines[url] = engine
        return _engines[url]


def _create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    # Two processes opening a fresh store both see no tables and both CREATE: the loser's error is harmless,
    # and the next attempt finds the tables there.
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.DatabaseError:
            if attempt == attempts - 1:
                raise


def _free_name(conn: sa.Connection, wanted: str) -> str:
    taken = {r[0] for r in conn.execute(sa.select(datasets_table.c.name))}
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted} ({n})", n + 1
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _columns_json(columns: tuple[Column, ...]) -> str:
    return json.dumps([[c.name, c.dtype, c.kind] for c in columns], ensure_ascii=False)


def _dataset_row(r: DatasetRecord) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "source_name": r.source_name,
        "fmt": r.fmt,
        "n_rows": r.n_rows,
        "columns_json": _columns_json(r.columns),
        "snapshot": r.snapshot,
        "created_at": r.created_at,
        "notes_json": json.dumps(list(r.notes), ensure_ascii=False),
        "size_bytes": r.size_bytes,
    }


def _dataset_record(row) -> DatasetRecord:
    m = row._mapping
    return DatasetRecord(
        id=m["id"],
        name=m["name"],
        source_name=m["source_name"],
        fmt=m["fmt"],
        n_rows=int(m["n_rows"]),
        columns=tuple(Column(*c) for c in json.loads(m["columns_json"])),
        snapshot=m["snapshot"],
        created_at=m["created_at"],
        notes=tuple(json.loads(m["notes_json"])),
        size_bytes=int(m["size_bytes"]),
    )
