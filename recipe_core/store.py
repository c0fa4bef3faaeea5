"""The SQL store (SQLite by default, PostgreSQL for teams): the dataset catalog, splits, runs, metrics and labels.

Only this module holds SQL for the store. Records cross its boundary as frozen dataclasses.
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from recipe_core.errors import BadInput, NotFound, RecipeError
from recipe_core.jsonsafe import plain

KINDS = ("numeric", "categorical", "text", "boolean", "datetime")
ACTIVE = ("queued", "running")  # a run is queued, running, then finished, failed or cancelled


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


splits_table = sa.Table(
    "splits",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("fractions_json", sa.Text, nullable=False),
    sa.Column("stratified", sa.Boolean, nullable=False),
    sa.Column("counts_json", sa.Text, nullable=False),
    sa.Column("assignment", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("dataset_id", "target", name="one_split_per_target"),
)

runs_table = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=True),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("split_id", sa.String(32), nullable=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("task", sa.String(32), nullable=True),
    sa.Column("seed", sa.Integer, nullable=True),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=True),
    sa.Column("finished_at", sa.String(40), nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),  # unix time of the job's last sign of life
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("checks_json", sa.Text, nullable=False),
    sa.Column("parent_id", sa.String(32), nullable=True),
    sa.Column("hypothesis", sa.Text, nullable=False),
    sa.Index("runs_by_dataset", "dataset_id", "target"),
)

# One row per logged point: long histories stay queryable by run and metric without loading everything.
metrics_table = sa.Table(
    "metrics",
    metadata,
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=True),  # NULL for NaN/inf, which not every backend stores
    sa.Column("epoch", sa.Float, nullable=True),
    sa.Column("wall_time", sa.Float, nullable=False),
    sa.Index("metrics_by_run", "run_id", "key", "step"),
)

artifacts_table = sa.Table(
    "artifacts",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


# Human labels are events: a client-made id makes a resend (double click, rerun, retry) a no-op, and the latest
# event of an annotator for an item is their label.
labels_table = sa.Table(
    "labels",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("item", sa.BigInteger, nullable=False),  # row id in the snapshot
    sa.Column("annotator", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=True),  # NULL: skipped
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("features_json", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # unix time of the event
    sa.Index("labels_by_target", "dataset_id", "target", "annotator"),
)


@dataclass(frozen=True)
class LabelEvent:
    event_id: str
    dataset_id: str
    target: str
    item: int
    annotator: str
    label: str | None  # None: the annotator skipped the item
    note: str = ""
    features: tuple[str, ...] = ()  # the columns the annotator says they used
    at: float = 0.0


@dataclass(frozen=True)
class SplitRecord:
    id: str
    dataset_id: str
    target: str
    seed: int
    fractions: tuple[float, float, float]  # train, val, test
    stratified: bool
    counts: dict  # {"train": n, "val": n, "test": n, "excluded": n}
    assignment: bytes  # compressed codes per snapshot row; see splits.py
    created_at: str = ""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    model: str
    config: dict
    dataset_id: str | None = None
    target: str | None = None
    split_id: str | None = None
    task: str | None = None
    seed: int | None = None
    code_version: str = ""
    author: str = ""
    status: str = "queued"
    reason: str = ""  # why it failed or was cancelled
    progress: float = 0.0
    cancel_requested: bool = False
    host: str = ""
    pid: int | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    heartbeat: float | None = None
    metrics: dict = field(default_factory=dict)  # final metrics, e.g. {"val_loss": 0.31, ...}
    checks: dict = field(default_factory=dict)  # {name: {"ok": bool|None, ...}}
    parent_id: str | None = None
    hypothesis: str = ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def new_id() -> str:
    return uuid.uuid4().hex[:16]


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
        record = replace(record, created_at=record.created_at or now_iso())
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

    # -- splits -------------------------------------------------------------------------------
    def add_split(self, split: SplitRecord) -> SplitRecord:
        """Persist the split of a dataset and target; when one exists already (a racing process), return it."""
        split = replace(split, created_at=split.created_at or now_iso())
        try:
            with self.engine.begin() as conn:
                conn.execute(splits_table.insert().values(
                    id=split.id, dataset_id=split.dataset_id, target=split.target, seed=split.seed,
                    fractions_json=json.dumps(list(split.fractions)), stratified=split.stratified,
                    counts_json=json.dumps(split.counts), assignment=split.assignment, created_at=split.created_at))
            return split
        except sa.exc.IntegrityError:
            existing = self.get_split(split.dataset_id, split.target)
            if existing is None:
                raise
            return existing

    def get_split(self, dataset_id: str, target: str) -> SplitRecord | None:
        t = splits_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.dataset_id == dataset_id, t.c.target == target)).first()
        if row is None:
            return None
        m = row._mapping
        return SplitRecord(id=m["id"], dataset_id=m["dataset_id"], target=m["target"], seed=int(m["seed"]),
                           fractions=tuple(json.loads(m["fractions_json"])), stratified=bool(m["stratified"]),
                           counts=json.loads(m["counts_json"]), assignment=bytes(m["assignment"]),
                           created_at=m["created_at"])

    # -- runs ---------------------------------------------------------------------------------
    def add_run(self, run: RunRecord) -> RunRecord:
        run = replace(run, created_at=run.created_at or now_iso())
        with self.engine.begin() as conn:
            conn.execute(runs_table.insert().values(**_run_row(run)))
        return run

    def get_run(self, key: str) -> RunRecord:
        """By exact id or unambiguous id prefix."""
        t = runs_table
        key = str(key)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id == key)).all()
            if not rows and len(key) >= 4:
                rows = conn.execute(sa.select(t).where(t.c.id.startswith(key, autoescape=True)).limit(2)).all()
        if len(rows) != 1:
            raise NotFound(f"no run with id {key!r}" if not rows else f"run id {key!r} is ambiguous; give more of it")
        return _run_record(rows[0])

    def list_runs(self, dataset_id: str | None = None, target: str | None = None) -> list[RunRecord]:
        t = runs_table
        q = sa.select(t).order_by(t.c.created_at, t.c.id)
        if dataset_id is not None:
            q = q.where(t.c.dataset_id == dataset_id)
        if target is not None:
            q = q.where(t.c.target == target)
        with self.engine.connect() as conn:
            return [_run_record(r) for r in conn.execute(q)]

    def update_run(self, run_id: str, only_if_active: bool = False, **fields) -> bool:
        """Set fields of a run; with only_if_active, a run that already ended is left as it is (returns False)."""
        values = {}
        for name, value in fields.items():
            if name in ("metrics", "checks", "config"):
                values[f"{name}_json"] = _json(value)
            else:
                values[name] = value
        q = runs_table.update().where(runs_table.c.id == run_id).values(**values)
        if only_if_active:
            q = q.where(runs_table.c.status.in_(ACTIVE))
        with self.engine.begin() as conn:
            return conn.execute(q).rowcount > 0

    def request_cancel(self, run_id: str) -> bool:
        return self.update_run(run_id, only_if_active=True, cancel_requested=True)

    # -- metrics and artifacts ------------------------------------------------------------------
    def log_metrics(self, run_id: str, points: list[tuple], progress: float | None = None) -> bool:
        """Append points (key, step, value, epoch, wall_time) and mark the run alive (with its progress), in one
        transaction: one round trip per batch. Returns whether a cancel was requested, for the job to stop."""
        rows = [{"run_id": run_id, "key": k, "step": int(s), "value": _finite(v),
                 "epoch": None if e is None else float(e), "wall_time": float(w)} for k, s, v, e, w in points]
        alive = {"heartbeat": time.time()} if progress is None else {"heartbeat": time.time(), "progress": progress}
        t = runs_table
        with self.engine.begin() as conn:
            if rows:
                conn.execute(metrics_table.insert(), rows)
            conn.execute(t.update().where(t.c.id == run_id).values(**alive))
            return bool(conn.execute(sa.select(t.c.cancel_requested).where(t.c.id == run_id)).scalar())

    def metric_history(self, run_ids: list[str], keys: list[str] | None = None) -> list[tuple]:
        """Every stored point of these runs: (run_id, key, step, value, epoch, wall_time), ordered by step."""
        t = metrics_table
        q = sa.select(t.c.run_id, t.c.key, t.c.step, t.c.value, t.c.epoch, t.c.wall_time).where(
            t.c.run_id.in_(list(run_ids))).order_by(t.c.run_id, t.c.key, t.c.step, t.c.wall_time)
        if keys is not None:
            q = q.where(t.c.key.in_(list(keys)))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def put_artifact(self, run_id: str, name: str, data: bytes) -> None:
        t = artifacts_table
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.run_id == run_id, t.c.name == name))
            conn.execute(t.insert().values(run_id=run_id, name=name, data=data))

    def get_artifact(self, run_id: str, name: str) -> bytes | None:
        t = artifacts_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.data).where(t.c.run_id == run_id, t.c.name == name)).first()
        return None if row is None else bytes(row[0])

    def put_json(self, run_id: str, name: str, value) -> None:
        self.put_artifact(run_id, name, _json(value).encode())

    def get_json(self, run_id: str, name: str):
        data = self.get_artifact(run_id, name)
        return None if data is None else json.loads(data)


    # -- labels ---------------------------------------------------------------------------------
    def add_label(self, event: LabelEvent) -> bool:
        """Store one label event; True once it is durably stored, also when this event id was stored before."""
        event = replace(event, at=event.at or time.time())
        try:
            with self.engine.begin() as conn:
                conn.execute(labels_table.insert().values(
                    event_id=event.event_id, dataset_id=event.dataset_id, target=event.target, item=int(event.item),
                    annotator=event.annotator, label=event.label, note=event.note,
                    features_json=json.dumps(list(event.features), ensure_ascii=False), at=event.at))
        except sa.exc.IntegrityError:
            if not self._has_label_event(event.event_id):
                raise
        return True

    def label_events(self, dataset_id: str, target: str) -> list[LabelEvent]:
        """Every event of this dataset and target, oldest first (so the last one per annotator and item wins)."""
        t = labels_table
        q = sa.select(t).where(t.c.dataset_id == dataset_id, t.c.target == target).order_by(t.c.at, t.c.event_id)
        with self.engine.connect() as conn:
            return [LabelEvent(event_id=r.event_id, dataset_id=r.dataset_id, target=r.target, item=int(r.item),
                               annotator=r.annotator, label=r.label, note=r.note,
                               features=tuple(json.loads(r.features_json)), at=float(r.at)) for r in conn.execute(q)]

    def _has_label_event(self, event_id: str) -> bool:
        t = labels_table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.event_id).where(t.c.event_id == event_id)).first() is not None

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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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


def _finite(v) -> float | None:
    v = None if v is None else float(v)
    return v if v is not None and math.isfinite(v) else None


def _json(value) -> str:
    return json.dumps(plain(value), ensure_ascii=False)  # NaN/inf are not JSON: they are stored as null


_RUN_JSON = ("config", "metrics", "checks")


def _run_row(r: RunRecord) -> dict:
    row = asdict(r)
    for name in _RUN_JSON:
        row[f"{name}_json"] = _json(row.pop(name))
    return row


def _run_record(row) -> RunRecord:
    m = dict(row._mapping)
    for name in _RUN_JSON:
        m[name] = json.loads(m.pop(f"{name}_json"))
    m["cancel_requested"] = bool(m["cancel_requested"])
    return RunRecord(**m)
