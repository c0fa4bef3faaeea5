"""The Store: every read and write of the SQL store (SQLite by default, PostgreSQL for teams). Records
(data/records.py, tracking/records.py) cross its boundary; row_mapping.py maps them to rows, schema.py holds the tables.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace

import numpy as np
import sqlalchemy as sa

from recipe_core.data.records import KINDS, DatasetRecord
from recipe_core.errors import BadInput, NotFound, RecipeError
from recipe_core.safetext import check_text, storable
from recipe_core.tracking import chunks
from recipe_core.tracking.records import (
    ACTIVE,
    Comment,
    History,
    LabelEvent,
    MetricSummary,
    RunRecord,
    SplitRecord,
    check_key,
    now_iso,
)
from recipe_core.tracking.row_mapping import (
    RUN_JSON,
    checked_run,
    checked_run_fields,
    columns_json,
    dataset_record,
    dataset_row,
    run_record,
    run_row,
    to_json,
)
from recipe_core.tracking.schema import (
    artifacts_table,
    comments_table,
    datasets_table,
    engine,
    fetch_binary,
    labels_table,
    metric_chunks_table,
    runs_table,
    splits_table,
)


class Store:
    """Every read and write of the store: some 25 methods, grouped below by what they touch (datasets, splits,
    runs, metrics and artifacts, labels, comments). The backend is chosen by URL; callers pass and get records,
    never rows or SQL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = engine(url)

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
                    conn.execute(datasets_table.insert().values(**dataset_row(named)))
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
        return dataset_record(row)

    def list_datasets(self, include_deleted: bool = False) -> list[DatasetRecord]:
        """The catalog, oldest first; soft-deleted datasets only when asked for (get_dataset finds them too)."""
        q = sa.select(datasets_table).order_by(datasets_table.c.created_at)
        if not include_deleted:
            q = q.where(datasets_table.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [dataset_record(r) for r in rows]

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
                .values(columns_json=columns_json(columns))
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
        run = replace(checked_run(run), created_at=run.created_at or now_iso(), heartbeat=run.heartbeat or time.time())
        with self.engine.begin() as conn:
            conn.execute(runs_table.insert().values(**run_row(run)))
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
        return run_record(rows[0])

    def list_runs(self, dataset_id: str | None = None, target: str | None = None,
                  include_deleted: bool = False) -> list[RunRecord]:
        """Runs, oldest first; soft-deleted ones only when asked for (get_run finds them too)."""
        t = runs_table
        if not _lookup_ok(dataset_id or "", target or ""):
            return []
        q = sa.select(t).order_by(t.c.created_at, t.c.id)
        if not include_deleted:
            q = q.where(t.c.deleted_at.is_(None))
        if dataset_id is not None:
            q = q.where(t.c.dataset_id == dataset_id)
        if target is not None:
            q = q.where(t.c.target == target)
        with self.engine.connect() as conn:
            return [run_record(r) for r in conn.execute(q)]

    def update_run(self, run_id: str, only_if_active: bool = False, **fields) -> bool:
        """Set fields of a run; with only_if_active, a run that already ended is left as it is (returns False)."""
        values = {}
        for name, value in checked_run_fields(fields).items():
            if name in RUN_JSON:
                values[f"{name}_json"] = to_json(value)
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
            by_key.setdefault(str(key), []).append((step, chunks.nan_if_none(value), chunks.nan_if_none(epoch),
                                                     wall))
        for key in by_key:
            check_key(key)
        rows = [row for key, pts in by_key.items()
                for row in chunks.encode(run_id, key, np.array(pts, chunks.DTYPE))]
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
        pts = np.zeros(len(step), chunks.DTYPE)
        pts["step"], pts["value"] = step, value
        pts["epoch"] = np.nan if epoch is None else epoch
        pts["wall_time"] = time.time() if wall_time is None else wall_time
        with self.engine.begin() as conn:
            rows = chunks.encode(run_id, key, pts)
            if rows:
                conn.execute(metric_chunks_table.insert(), rows)
        return len(pts)

    def histories(self, run_ids: list[str], key: str,
                  fields: tuple[str, ...] = chunks.FIELDS) -> dict[str, History]:
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
            for row in fetch_binary(conn, q):
                parts.setdefault(row["run_id"], []).append(chunks.decode(row))
        out = {}
        for run_id, decoded in parts.items():
            columns = chunks.joined(decoded)
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
                out += [(run_id, key, int(s), chunks.finite_or_none(v), chunks.finite_or_none(e), float(w))
                        for s, v, e, w in zip(h.step, h.value, h.epoch, h.wall_time, strict=True)]
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
        for (run_id, key), stored in acc.items():
            last = max(stored, key=lambda c: c.last_step)  # the latest chunk wins a tie (max keeps the first)
            last = [c for c in stored if c.last_step == last.last_step][-1]
            lo = min((c for c in stored if c.min_value is not None), key=lambda c: c.min_value, default=None)
            hi = max((c for c in stored if c.max_value is not None), key=lambda c: c.max_value, default=None)
            out.setdefault(run_id, {})[key] = MetricSummary(
                n=sum(c.n for c in stored), last_step=int(last.last_step), last=last.last_value,
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
                              if sizes[i].n + sizes[i + 1].n <= chunks.CHUNK_POINTS), None)
                if start is None:
                    continue
                tail = [row.id for row in sizes[start:]]
                group, n_group = [], 0
                for chunk_id in tail:
                    chunk = chunks.decode(conn.execute(sa.select(t).where(t.c.id == chunk_id)).first()._mapping)
                    if group and n_group + len(chunk["step"]) > chunks.CHUNK_POINTS:
                        conn.execute(t.insert(), chunks.encode(run_id, key, chunks.points(group)))
                        group, n_group = [], 0
                    group.append(chunk)
                    n_group += len(chunk["step"])
                conn.execute(t.insert(), chunks.encode(run_id, key, chunks.points(group)))
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
        self.put_artifact(run_id, name, to_json(value).encode())

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
        return None if row is None else dataset_record(row)


def _free_name(conn: sa.Connection, wanted: str) -> str:
    taken = {r[0] for r in conn.execute(sa.select(datasets_table.c.name))}
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted} ({n})", n + 1
    return name


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
