"""Hard deletion of what a purge removes: a run's rows, a dataset's rows and snapshot, and the job files of purged
runs and studies. No rules here: lifecycle.purge decides what goes and who may; these only remove it.

Rows go one run per transaction, so a writer to another run (a job logging points, a person labelling) waits for
at most one short transaction, and nothing it was told is stored is touched.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from recipe_core.tracking.schema import (
    artifacts_table,
    comments_table,
    datasets_table,
    labels_table,
    metric_chunks_table,
    runs_table,
    splits_table,
    trash_table,
)

JOBS_DIR = "jobs"  # training/jobs.py keeps run-ID.log and each background command's ID.* files here
_BLOBS = ("steps", "vals", "epochs", "walls")


def purge_run(engine: sa.Engine, run_id: str) -> tuple[Counter, int]:
    """Every row of one run, in one transaction: (rows removed per table, bytes of stored data freed)."""
    chunks, art = metric_chunks_table, artifacts_table
    with engine.begin() as conn:
        freed = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
            sum(sa.func.length(chunks.c[b]) for b in _BLOBS)), 0)).where(chunks.c.run_id == run_id)).scalar()
        freed += conn.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(art.c.data)), 0))
                              .where(art.c.run_id == run_id)).scalar()
        rows = Counter()
        for table in (chunks, art, comments_table):
            rows[table.name] += conn.execute(table.delete().where(table.c.run_id == run_id)).rowcount
        rows["runs"] += conn.execute(runs_table.delete().where(runs_table.c.id == run_id)).rowcount
        conn.execute(trash_table.delete().where(trash_table.c.kind == "run", trash_table.c.key == run_id))
    return rows, int(freed or 0)


def purge_dataset_rows(engine: sa.Engine, dataset_id: str) -> tuple[Counter, str | None]:
    """A dataset's labels, splits and its row (its runs are purged first, one by one): (rows removed, its
    snapshot's file name when no other dataset row names the same file, else None)."""
    d = datasets_table
    rows = Counter()
    with engine.begin() as conn:
        snapshot = conn.execute(sa.select(d.c.snapshot).where(d.c.id == dataset_id)).scalar()
        for table in (labels_table, splits_table):
            rows[table.name] += conn.execute(table.delete().where(table.c.dataset_id == dataset_id)).rowcount
        rows["datasets"] += conn.execute(d.delete().where(d.c.id == dataset_id)).rowcount
        shared = conn.execute(sa.select(d.c.id).where(d.c.snapshot == snapshot).limit(1)).first() is not None
    return rows, None if snapshot is None or shared else snapshot


def remove_snapshot(snapshots_dir: Path, snapshot: str) -> tuple[list[str], int]:
    """Delete a snapshot file by its recorded name (a bare file name: anything else is left alone)."""
    if not snapshot or Path(snapshot).name != snapshot:
        return [], 0
    return _unlink([snapshots_dir / snapshot])


def remove_job_files(home: Path, run_ids: set[str], studies: set[str]) -> tuple[list[str], int]:
    """run-ID.log of each purged run, and every file of a background command whose record names a purged run
    or study, unless that command is still running: (paths removed, bytes freed)."""
    folder = home / JOBS_DIR
    if not folder.is_dir():
        return [], 0
    doomed = [folder / f"run-{run_id}.log" for run_id in sorted(run_ids)]
    labels = {"study:" + name for name in studies} | {"curve-of:" + run_id for run_id in run_ids}
    for record in folder.glob("*.json"):
        command = _command(record)
        if command is None or _running(folder, record.stem, command):
            continue
        if command.get("label") in labels or set(map(str, command.get("argv", ()))) & run_ids:
            doomed += [p for p in folder.glob(f"{record.stem}.*")]
    return _unlink(doomed)


def _command(path: Path) -> dict | None:
    """A background command's record (ID.json); None for its input files (ID.inN.json) and unreadable ones."""
    if "." in path.stem:
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _running(folder: Path, job_id: str, command: dict) -> bool:
    # no exit recorded and its process answers: removing its files would hide a live search from the pages
    try:
        pid = int(command.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0 or (folder / f"{job_id}.exit").exists():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):  # gone, or the number is someone else's now
        return False
    return True


def _unlink(paths: list[Path]) -> tuple[list[str], int]:
    removed, freed = [], 0
    for path in dict.fromkeys(paths):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(str(path))
        freed += size
    return removed, freed
