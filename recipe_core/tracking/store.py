"""The SQL store (SQLite by default, PostgreSQL for teams): the dataset catalog, splits, runs, metrics and labels.

Only this module holds SQL for the store. Records cross its boundary as frozen dataclasses.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from recipe_core.errors import BadInput, NotFound, RecipeError
from recipe_core.jsonsafe import plain
from recipe_core.safetext import check_text, storable

KINDS = ("numeric", "categorical", "text", "boolean", "datetime")
ACTIVE = ("queued", "running")  # a run is queued, running, then finished, failed, cancelled or pruned (tuning)
LOST = "lost"  # never stored: what an active run whose process stopped beating reads as (see _run_record)
BEATS_BEFORE_LOST = 6
MAX_KEY = 200  # characters of a metric name (the column's size)


def heartbeat_s() -> float:
    """How often a process marks its runs alive (RECIPE_HEARTBEAT_S, default 10 s)."""
    try:
        return max(0.05, float(os.environ.get("RECIPE_HEARTBEAT_S") or 10.0))
    except ValueError:
        return 10.0


def lost_after_s() -> float:
    """An active run silent this long reads lost: a minute by default, well within the two the team expects."""
    return BEATS_BEFORE_LOST * heartbeat_s()


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
    sa.Column("tags_json", sa.Text, nullable=False, server_default="[]"),
    sa.Column("source", sa.String(40), nullable=False, server_default="app"),  # app, api, tensorboard, lightning
    sa.Index("runs_by_dataset", "dataset_id", "target"),
)

# Metric points are stored in chunks: one row per (run, key) per write (one per metric once the run ends), holding
# the points as packed column arrays, plus the chunk's summary (last, min, max and their steps). Reading 100 runs
# x 100k points is then a few hundred blob reads instead of ten million rows; a chart reads only the columns it
# draws; evenly spaced steps (the usual case) are stored as first and stride; the runs table needs only summaries.
_CHUNK_DTYPE = np.dtype([("step", "<i8"), ("value", "<f8"), ("epoch", "<f8"), ("wall_time", "<f8")])
CHUNK_POINTS = 1_000_000  # a long write is split so no single blob grows without bound (8 MB a column)
FIELDS = ("step", "value", "epoch", "wall_time")

metric_chunks_table = sa.Table(
    "metric_chunks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("last_step", sa.BigInteger, nullable=False),  # the chunk's highest step
    sa.Column("last_value", sa.Float, nullable=True),  # its value there (NULL when not finite)
    sa.Column("min_value", sa.Float, nullable=True),
    sa.Column("min_step", sa.BigInteger, nullable=True),
    sa.Column("max_value", sa.Float, nullable=True),
    sa.Column("max_step", sa.BigInteger, nullable=True),
    sa.Column("step_first", sa.BigInteger, nullable=False),
    sa.Column("step_stride", sa.BigInteger, nullable=True),  # steps are step_first + i * stride; NULL: see steps
    sa.Column("steps", sa.LargeBinary, nullable=False),  # int64, little-endian; empty when evenly spaced
    sa.Column("vals", sa.LargeBinary, nullable=False),  # float64; NaN where not finite
    sa.Column("epochs", sa.LargeBinary, nullable=False),  # float64; empty when no point has an epoch
    sa.Column("walls", sa.LargeBinary, nullable=False),  # float64 unix seconds
    sa.Index("metric_chunks_by_run", "run_id", "key", "id"),
)

# Notes and comments on runs, visible to the whole team.
comments_table = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # client-made: a resend stores nothing new
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("comments_by_run", "run_id", "at"),
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
    tags: tuple[str, ...] = ()
    source: str = "app"  # where the run came from: app, api, tensorboard, lightning

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class History:
    """Every stored point of one metric of one run, ordered by step (ties in logging order). Arrays may be
    read-only views of the stored bytes: never modify them."""
    step: np.ndarray  # int64
    value: np.ndarray  # float64; NaN where the logged value was not finite
    epoch: np.ndarray | None  # float64; NaN where no epoch was logged; None when not read (Store.histories)
    wall_time: np.ndarray | None  # float64, unix seconds; None when not read

    def __len__(self) -> int:
        return len(self.step)


@dataclass(frozen=True)
class MetricSummary:
    """What the runs table shows of one metric of one run, computed from the chunk summaries alone."""
    n: int
    last_step: int
    last: float | None  # the value at the highest step
    min: float | None
    min_step: int | None
    max: float | None
    max_step: int | None


@dataclass(frozen=True)
class Comment:
    id: str
    run_id: str
    author: str
    text: str
    at: float = 0.0  # unix time; set when stored


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
        record = replace(record, created_at=record.created_at or now_iso(), source_name=storable(record.source_name),
                         name=check_text(record.name, "the dataset name"))
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
        if not _lookup_ok(key):
            raise NotFound(f"no dataset with id or name {key[:80]!r}")
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
        if not _lookup_ok(dataset_id, target):
            return None
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
        run = replace(_checked_run(run), created_at=run.created_at or now_iso(), heartbeat=run.heartbeat or time.time())
        with self.engine.begin() as conn:
            conn.execute(runs_table.insert().values(**_run_row(run)))
        return run

    def get_run(self, key: str) -> RunRecord:
        """By exact id or unambiguous id prefix."""
        t = runs_table
        key = str(key)
        if not _lookup_ok(key):
            raise NotFound(f"no run with id {key[:80]!r}")
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id == key)).all()
            if not rows and len(key) >= 4:
                rows = conn.execute(sa.select(t).where(t.c.id.startswith(key, autoescape=True)).limit(2)).all()
        if len(rows) != 1:
            raise NotFound(f"no run with id {key!r}" if not rows else f"run id {key!r} is ambiguous; give more of it")
        return _run_record(rows[0])

    def list_runs(self, dataset_id: str | None = None, target: str | None = None) -> list[RunRecord]:
        t = runs_table
        if not _lookup_ok(dataset_id or "", target or ""):
            return []
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
        for name, value in _checked_run_fields(fields).items():
            if name in _RUN_JSON:
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

    def beat(self, run_ids: list[str], statuses: tuple[str, ...] = ACTIVE) -> None:
        """Mark these runs alive, those still in one of these statuses (see heartbeat.py)."""
        t = runs_table
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id.in_(list(run_ids)), t.c.status.in_(list(statuses)))
                         .values(heartbeat=time.time()))

    # -- metrics and artifacts ------------------------------------------------------------------
    def log_metrics(self, run_id: str, points: list[tuple], progress: float | None = None) -> bool:
        """Append points (key, step, value, epoch, wall_time) and mark the run alive (with its progress), in one
        transaction: one round trip per batch. Returns whether a cancel was requested, for the job to stop."""
        by_key: dict[str, list[tuple]] = {}
        for key, step, value, epoch, wall in points:
            by_key.setdefault(str(key), []).append((step, _float(value), _float(epoch), wall))
        for key in by_key:
            check_key(key)
        rows = [row for key, pts in by_key.items() for row in _chunk_rows(run_id, key, np.array(pts, _CHUNK_DTYPE))]
        alive = {"heartbeat": time.time()} if progress is None else {"heartbeat": time.time(), "progress": progress}
        t = runs_table
        with self.engine.begin() as conn:
            if rows:
                conn.execute(metric_chunks_table.insert(), rows)
            conn.execute(t.update().where(t.c.id == run_id).values(**alive))
            return bool(conn.execute(sa.select(t.c.cancel_requested).where(t.c.id == run_id)).scalar())

    def log_arrays(self, run_id: str, key: str, step, value, epoch=None, wall_time=None) -> int:
        """Append a whole series of one metric at once (the importers); returns the points written."""
        check_key(key)
        pts = np.zeros(len(step), _CHUNK_DTYPE)
        pts["step"], pts["value"] = step, value
        pts["epoch"] = np.nan if epoch is None else epoch
        pts["wall_time"] = time.time() if wall_time is None else wall_time
        with self.engine.begin() as conn:
            rows = _chunk_rows(run_id, key, pts)
            if rows:
                conn.execute(metric_chunks_table.insert(), rows)
        return len(pts)

    def histories(self, run_ids: list[str], key: str, fields: tuple[str, ...] = FIELDS) -> dict[str, History]:
        """One metric of several runs, every stored point, as arrays ordered by step; runs without it are absent.
        Only the fields asked for are read (step and value always): the others are None."""
        t = metric_chunks_table
        if not _lookup_ok(key):
            return {}
        blobs = [t.c.epochs] if "epoch" in fields else []
        blobs += [t.c.walls] if "wall_time" in fields else []
        q = (sa.select(t.c.run_id, t.c.n, t.c.step_first, t.c.step_stride, t.c.steps, t.c.vals, *blobs)
             .where(t.c.run_id.in_(_lookups(run_ids)), t.c.key == key).order_by(t.c.run_id, t.c.id))
        parts: dict[str, list[dict]] = {}
        with self.engine.connect() as conn:
            for row in _fetch_binary(conn, q):
                parts.setdefault(row["run_id"], []).append(_decode_chunk(row))
        out = {}
        for run_id, chunks in parts.items():
            columns = _joined(chunks)
            step = columns["step"]
            if len(step) > 1 and not np.all(step[1:] >= step[:-1]):  # logged out of order: sort, ties kept in order
                order = np.argsort(step, kind="stable")
                columns = {f: a[order] for f, a in columns.items()}
            out[run_id] = History(step=columns["step"], value=columns["value"], epoch=columns.get("epoch"),
                                  wall_time=columns.get("wall_time"))
        return out

    def metric_history(self, run_ids: list[str], keys: list[str] | None = None) -> list[tuple]:
        """Every stored point of these runs: (run_id, key, step, value, epoch, wall_time), ordered by run, key and
        step; NaN values and missing epochs come back as None."""
        summaries = self.metric_summaries(run_ids)
        wanted = sorted({k for per_run in summaries.values() for k in per_run if keys is None or k in keys})
        out = []
        for key in wanted:
            for run_id, h in self.histories(run_ids, key).items():
                out += [(run_id, key, int(s), _float_or_none(v), _float_or_none(e), float(w))
                        for s, v, e, w in zip(h.step, h.value, h.epoch, h.wall_time)]
        return sorted(out, key=lambda p: (p[0], p[1]))  # stable: steps stay in order within a run and key

    def metric_summaries(self, run_ids: list[str] | None = None) -> dict[str, dict[str, MetricSummary]]:
        """{run_id: {key: summary}} from the chunk summaries, without reading a single point."""
        t = metric_chunks_table
        q = sa.select(t.c.run_id, t.c.key, t.c.n, t.c.last_step, t.c.last_value, t.c.min_value, t.c.min_step,
                      t.c.max_value, t.c.max_step).order_by(t.c.id)
        if run_ids is not None:
            q = q.where(t.c.run_id.in_(_lookups(run_ids)))
        acc: dict[tuple, list] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                acc.setdefault((r.run_id, r.key), []).append(r)
        out: dict[str, dict[str, MetricSummary]] = {}
        for (run_id, key), chunks in acc.items():
            last = max(chunks, key=lambda c: c.last_step)  # the latest chunk wins a tie (max keeps the first)
            last = [c for c in chunks if c.last_step == last.last_step][-1]
            lo = min((c for c in chunks if c.min_value is not None), key=lambda c: c.min_value, default=None)
            hi = max((c for c in chunks if c.max_value is not None), key=lambda c: c.max_value, default=None)
            out.setdefault(run_id, {})[key] = MetricSummary(
                n=sum(c.n for c in chunks), last_step=int(last.last_step), last=last.last_value,
                min=None if lo is None else lo.min_value, min_step=None if lo is None else int(lo.min_step),
                max=None if hi is None else hi.max_value, max_step=None if hi is None else int(hi.max_step))
        return out

    def compact_metrics(self, run_id: str) -> None:
        """Rewrite a finished run's many small chunks (one per flush) as few large ones, in one transaction.

        In bounded memory: only the chunks from the first pair that fits in one chunk onward are rewritten, one
        group of at most CHUNK_POINTS points at a time (an import's full chunks are left alone; rewriting a
        20M-point series at once took 2.3 GB). New chunks get higher ids, so storage order stays logging order.
        """
        t = metric_chunks_table
        with self.engine.begin() as conn:
            keys = [k for (k,) in conn.execute(sa.select(t.c.key).where(t.c.run_id == run_id)
                                               .group_by(t.c.key).having(sa.func.count() > 1))]
            for key in keys:
                where = (t.c.run_id == run_id) & (t.c.key == key)
                sizes = conn.execute(sa.select(t.c.id, t.c.n).where(where).order_by(t.c.id)).all()
                start = next((i for i in range(len(sizes) - 1)
                              if sizes[i].n + sizes[i + 1].n <= CHUNK_POINTS), None)
                if start is None:
                    continue
                tail = [row.id for row in sizes[start:]]
                group, n_group = [], 0
                for chunk_id in tail:
                    chunk = _decode_chunk(conn.execute(sa.select(t).where(t.c.id == chunk_id)).first()._mapping)
                    if group and n_group + len(chunk["step"]) > CHUNK_POINTS:
                        conn.execute(t.insert(), _chunk_rows(run_id, key, _points(group)))
                        group, n_group = [], 0
                    group.append(chunk)
                    n_group += len(chunk["step"])
                conn.execute(t.insert(), _chunk_rows(run_id, key, _points(group)))
                conn.execute(t.delete().where(t.c.id.in_(tail)))

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
        event = replace(event, at=event.at or time.time(), event_id=check_text(event.event_id, "a label's id"),
                        annotator=check_text(event.annotator, "the annotator's name"),
                        label=None if event.label is None else check_text(event.label, "the label"),
                        note=check_text(event.note, "the note"),
                        features=tuple(check_text(f, "a feature name") for f in event.features))
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
        if not _lookup_ok(dataset_id, target):
            return []
        q = sa.select(t).where(t.c.dataset_id == dataset_id, t.c.target == target).order_by(t.c.at, t.c.event_id)
        with self.engine.connect() as conn:
            return [LabelEvent(event_id=r.event_id, dataset_id=r.dataset_id, target=r.target, item=int(r.item),
                               annotator=r.annotator, label=r.label, note=r.note,
                               features=tuple(json.loads(r.features_json)), at=float(r.at)) for r in conn.execute(q)]

    # -- comments -------------------------------------------------------------------------------
    def add_comment(self, comment: Comment) -> Comment:
        """Store a note on a run; a resend of the same id stores nothing new."""
        comment = replace(comment, at=comment.at or time.time(), author=check_text(comment.author, "the author"),
                          text=check_text(comment.text, "the note"))
        try:
            with self.engine.begin() as conn:
                conn.execute(comments_table.insert().values(**asdict(comment)))
        except sa.exc.IntegrityError:
            pass
        return comment

    def comments(self, run_ids: list[str]) -> list[Comment]:
        t = comments_table
        q = sa.select(t).where(t.c.run_id.in_(_lookups(run_ids))).order_by(t.c.at, t.c.id)
        with self.engine.connect() as conn:
            return [Comment(id=r.id, run_id=r.run_id, author=r.author, text=r.text, at=float(r.at))
                    for r in conn.execute(q)]

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
            _add_new_columns(engine)
            _migrate_metric_rows(engine)
            return
        except sa.exc.DatabaseError:
            if attempt == attempts - 1:
                raise


def _add_new_columns(engine: sa.Engine) -> None:
    """A store made by an older version gets the columns added since (each has a server default)."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for col in table.columns:
            if col.name not in present:
                kind = col.type.compile(dialect=engine.dialect)
                default = col.server_default.arg if col.server_default is not None else ""
                with engine.begin() as conn:
                    conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {col.name} {kind} "
                                         f"NOT NULL DEFAULT '{default}'"))


def _migrate_metric_rows(engine: sa.Engine) -> None:
    """Older stores kept one row per point in a table `metrics`: move them into chunks, then drop that table, in
    one transaction (a racing process finds the table gone)."""
    if not sa.inspect(engine).has_table("metrics"):
        return
    old = sa.Table("metrics", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        rows = conn.execute(sa.select(old.c.run_id, old.c.key, old.c.step, old.c.value, old.c.epoch, old.c.wall_time)
                            .order_by(old.c.run_id, old.c.key, old.c.step)).all()
        by_series: dict[tuple, list] = {}
        for run_id, key, step, value, epoch, wall in rows:
            by_series.setdefault((run_id, key), []).append((step, _float(value), _float(epoch), wall))
        chunks = [row for (run_id, key), pts in by_series.items()
                  for row in _chunk_rows(run_id, key, np.array(pts, _CHUNK_DTYPE))]
        if chunks:
            conn.execute(metric_chunks_table.insert(), chunks)
        conn.execute(sa.text("DROP TABLE metrics"))


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


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _float_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _chunk_rows(run_id: str, key: str, pts: np.ndarray) -> list[dict]:
    """Store rows for points of one key: their packed arrays and each chunk's summary. Infinities are stored as
    NaN: a value that is not finite has no place on a curve, and not every backend stores it."""
    rows = []
    for start in range(0, len(pts), CHUNK_POINTS):
        part = pts[start:start + CHUNK_POINTS].copy()
        part["value"][~np.isfinite(part["value"])] = np.nan
        part["epoch"][~np.isfinite(part["epoch"])] = np.nan
        values, steps = part["value"], part["step"]
        last = int(np.flatnonzero(steps == steps.max())[-1])
        finite = np.isfinite(values)
        lo = hi = None
        if finite.any():
            masked = np.where(finite, values, np.inf)
            lo = int(np.argmin(masked))
            hi = int(np.argmax(np.where(finite, values, -np.inf)))
        stride = int(steps[1] - steps[0]) if len(steps) > 1 else 1
        even = bool(np.all(steps == steps[0] + stride * np.arange(len(steps), dtype=np.int64)))
        epochs = part["epoch"]
        rows.append({"run_id": run_id, "key": key, "n": len(part), "last_step": int(steps[last]),
                     "last_value": _float_or_none(values[last]),
                     "min_value": None if lo is None else float(values[lo]),
                     "min_step": None if lo is None else int(steps[lo]),
                     "max_value": None if hi is None else float(values[hi]),
                     "max_step": None if hi is None else int(steps[hi]),
                     "step_first": int(steps[0]), "step_stride": stride if even else None,
                     "steps": b"" if even else steps.astype("<i8").tobytes(),
                     "vals": values.astype("<f8").tobytes(),
                     "epochs": b"" if np.isnan(epochs).all() else epochs.astype("<f8").tobytes(),
                     "walls": part["wall_time"].astype("<f8").tobytes()})
    return rows


def _fetch_binary(conn: sa.Connection, q: sa.Select) -> list[dict]:
    """Rows as dicts. On PostgreSQL in binary format: psycopg's default text format sends bytea as hex, twice
    the bytes, and decoding it took more than half of reading 10M points."""
    if conn.dialect.name != "postgresql":
        return [dict(r._mapping) for r in conn.execute(q)]
    compiled = q.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    with conn.connection.driver_connection.cursor(binary=True) as cur:
        cur.execute(str(compiled), compiled.params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _points(chunks: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Decoded chunks end to end as one structured array of points (what _chunk_rows encodes)."""
    columns = _joined(chunks)
    pts = np.zeros(len(columns["step"]), _CHUNK_DTYPE)
    for name in FIELDS:
        pts[name] = columns[name]
    return pts


def _joined(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The columns of a series' chunks end to end, in storage order (a single chunk is not copied)."""
    return {f: np.concatenate([c[f] for c in chunks]) if len(chunks) > 1 else chunks[0][f] for f in chunks[0]}


def _decode_chunk(m) -> dict[str, np.ndarray]:
    """A stored chunk's columns as arrays (only those selected), read-only views where possible."""
    n = int(m["n"])
    if m["step_stride"] is not None:
        step = m["step_first"] + int(m["step_stride"]) * np.arange(n, dtype=np.int64)
    else:
        step = np.frombuffer(m["steps"], "<i8")
    out = {"step": step, "value": np.frombuffer(m["vals"], "<f8")}
    if "epochs" in m:
        out["epoch"] = np.frombuffer(m["epochs"], "<f8") if len(m["epochs"]) else np.full(n, np.nan)
    if "walls" in m:
        out["wall_time"] = np.frombuffer(m["walls"], "<f8")
    return out


def _json(value) -> str:
    try:
        return json.dumps(plain(value), ensure_ascii=False)  # NaN/inf are not JSON: they are stored as null
    except RecursionError:
        raise BadInput("a value is nested too deeply to store") from None


_RUN_JSON = ("config", "metrics", "checks", "tags")
_RUN_TEXT = {"name": "the run name", "author": "the author", "hypothesis": "the hypothesis", "model": "the model",
             "target": "the target", "host": "the host"}


def _checked_run_fields(fields: dict) -> dict:
    """Run fields as the store can hold them: typed text refused with one line; a failure reason (often an
    exception's text, holding whatever the data held) made storable instead."""
    out = dict(fields)
    for name, what in _RUN_TEXT.items():
        if out.get(name) is not None:
            out[name] = check_text(out[name], what)
    if out.get("tags") is not None:
        out["tags"] = tuple(check_text(t, "a tag") for t in out["tags"])
    if out.get("reason") is not None:
        out["reason"] = storable(out["reason"])
    return out


def _checked_run(run: RunRecord) -> RunRecord:
    checked = _checked_run_fields({name: getattr(run, name) for name in (*_RUN_TEXT, "tags", "reason")})
    return replace(run, **checked)


def check_key(key: str) -> str:
    """A metric name the store can hold: 1 to MAX_KEY characters of text, no NUL."""
    key = check_text(key, f"the metric name {str(key)[:40]!r}")
    if not key or len(key) > MAX_KEY:
        raise BadInput(f"metric names must have 1 to {MAX_KEY} characters, got {len(key)}: {key[:40]!r}")
    return key


def _lookups(keys) -> list[str]:
    return [k for k in keys if _lookup_ok(k)]


def _lookup_ok(*keys: str) -> bool:
    """Whether these can be looked up at all: a NUL or invalid Unicode (from a URL or a typed id) is in no row,
    and the database driver would refuse the query itself."""
    for key in keys:
        if "\x00" in key:
            return False
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _run_row(r: RunRecord) -> dict:
    row = asdict(r)
    for name in _RUN_JSON:
        row[f"{name}_json"] = _json(row.pop(name))
    return row


def _run_record(row) -> RunRecord:
    m = dict(row._mapping)
    for name in _RUN_JSON:
        m[name] = json.loads(m.pop(f"{name}_json"))
    m["tags"] = tuple(m["tags"])
    m["cancel_requested"] = bool(m["cancel_requested"])
    beat = m["heartbeat"]
    if m["status"] in ACTIVE and beat is not None and time.time() - beat > lost_after_s():
        # Its process stopped beating (killed, out of memory, machine gone): it is not running, whatever the row says.
        # Derived on every read, so no page visit is needed; if the process comes back, it reads active again.
        when = datetime.fromtimestamp(beat, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        where = f"{m['host']} pid {m['pid']}" if m["pid"] else (m["host"] or "its process")
        m["status"], m["reason"] = LOST, f"no sign of life from {where} since {when}"
    return RunRecord(**m)
