"""Renaming, editing, archiving, deleting (soft, undoable) and purging runs, datasets, studies and learning curves.

Every function takes `who` (an access.Identity), refuses in one line what the rules do not allow, and writes an
audit entry. A study is the runs tagged study:NAME, a learning curve the runs tagged curve:ID; an ensemble is a run.
A delete stamps deleted_at on what goes, and a row in the trash table, with one time: an undo restores exactly
the rows carrying that stamp, so a run deleted before its dataset stays deleted when the dataset comes back.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from recipe_core.config import Settings
from recipe_core.data.records import VISIBILITIES, DatasetRecord
from recipe_core.errors import BadInput, NotFound
from recipe_core.safetext import check_text
from recipe_core.tracking import audit
from recipe_core.tracking import purge as purging
from recipe_core.tracking.access import (
    HIDDEN_DATASET,
    Identity,
    can_see_dataset,
    can_see_run,
    may_change,
    may_change_types,
    require,
    require_write,
)
from recipe_core.tracking.records import RunRecord
from recipe_core.tracking.schema import datasets_table, labels_table, runs_table, trash_table
from recipe_core.units import count

KINDS = ("run", "dataset", "study", "curve")
GROUP_TAGS = {"study": "study:", "curve": "curve:"}  # the tags the app sets; a person's tags may not start so
MAX_NAME_CHARS = 200
MAX_TAG_CHARS = 40
MAX_TAGS = 20
MAX_HYPOTHESIS_CHARS = 2000
HIDDEN = "you may not see this {kind}, or it does not exist"
ALREADY_HERE = "this file is already here as a dataset you may not see; ask its owner to share it"


@dataclass(frozen=True)
class Trashed:
    """What a delete took (or an undo brought back): the runs by id, and what depended on it."""
    kind: str
    key: str
    name: str
    deleted_at: float | None
    run_ids: tuple[str, ...]
    dependents: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrashItem:
    kind: str
    key: str
    name: str
    deleted_at: float
    deleted_by: str
    n_runs: int


@dataclass(frozen=True)
class PurgeReport:
    items: tuple[tuple[str, str], ...] = ()  # (kind, key) of each thing purged
    rows: dict = field(default_factory=dict)  # rows removed per table
    files: tuple[str, ...] = ()  # paths removed: snapshots, job logs and records
    bytes_freed: int = 0  # stored points, artifacts and files
    studies: tuple[str, ...] = ()  # Optuna studies the caller drops (search.trash.purge does)

    @property
    def runs(self) -> int:
        return self.rows.get("runs", 0)

    @property
    def datasets(self) -> int:
        return self.rows.get("datasets", 0)


@dataclass(frozen=True)
class _Target:
    """A thing the functions act on, resolved: its runs (deleted ones included) and the datasets they use."""
    kind: str
    key: str
    name: str
    owner: str  # a group's: the one author of its runs, else "" (only an admin may change it)
    runs: tuple[RunRecord, ...]
    records: dict  # dataset id -> DatasetRecord, for the runs' datasets (and the dataset itself)
    deleted_at: float | None

    @property
    def live_ids(self) -> list[str]:
        return [r.id for r in self.runs if r.deleted_at is None]


# -- finding things ---------------------------------------------------------------------------------------------
def _resolve(store, kind: str, key: str, every_run: list[RunRecord] | None = None) -> _Target:
    if kind not in KINDS:
        raise BadInput(f"unknown kind {str(kind)[:20]!r}; choose one of {', '.join(KINDS)}")
    records = {r.id: r for r in store.list_datasets(include_deleted=True)}
    if kind == "run":
        run = store.get_run(key)
        return _Target("run", run.id, run.name, run.author, (run,), records, run.deleted_at)
    if kind == "dataset":
        record = store.get_dataset(key)
        runs = tuple(store.list_runs(record.id, include_deleted=True))
        return _Target("dataset", record.id, record.name, record.owner, runs, records, record.deleted_at)
    tag = GROUP_TAGS[kind] + str(key)
    every_run = store.list_runs(include_deleted=True) if every_run is None else every_run
    runs = tuple(r for r in every_run if tag in r.tags)
    row = _trash_row(store, kind, str(key))
    return _Target(kind, str(key), str(key), group_owner(list(runs)), runs, records,
                   None if row is None else row.deleted_at)


def owner(store, kind: str, key: str) -> str:
    """Who may change it besides an admin: a run's author, a dataset's owner, the one author of a group's runs
    ("" when they are several, or none: then only an admin may)."""
    return _resolve(store, kind, key).owner


def group_owner(runs: list[RunRecord]) -> str:
    """A study's or a curve's owner, from its runs: their one author, else "" (an admin's to change)."""
    authors = {r.author for r in runs}
    return authors.pop() if len(authors) == 1 else ""


def _visible(who: Identity, t: _Target) -> bool:
    if t.kind == "dataset":
        return can_see_dataset(who, t.records[t.key])
    return all(can_see_run(who, r, t.records.get(r.dataset_id)) for r in t.runs)


def _checked(store, who: Identity, kind: str, key: str, what: str, deleted_ok: bool = False) -> _Target:
    """Resolve, and refuse in one line: hidden (as if absent), not this identity's to change, or deleted."""
    t = _resolve(store, kind, key)
    require(_visible(who, t), HIDDEN_DATASET if kind == "dataset" else HIDDEN.format(kind=_word(kind)))
    if kind in GROUP_TAGS and not t.runs and t.deleted_at is None:
        raise NotFound(f"no {_word(kind)} {t.key!r} with runs in this store")
    require(may_change(who, t.owner), f"only {t.owner + ' or ' if t.owner else ''}an admin may {what} this "
            f"{_word(kind)}")
    if t.deleted_at is not None and not deleted_ok:
        raise BadInput(f"{_word(kind)} {t.name!r} is deleted; undo the delete first")
    return t


def _word(kind: str) -> str:
    return "learning curve" if kind == "curve" else kind




def _trash_row(store, kind: str, key: str):
    t = trash_table
    with store.engine.connect() as conn:
        return conn.execute(sa.select(t).where(t.c.kind == kind, t.c.key == key)).first()


# -- names, tags, sharing, types --------------------------------------------------------------------------------
def rename(store, who: Identity, kind: str, key: str, new_name) -> str:
    """Rename a run or a dataset (dataset names stay unique); the new name."""
    if kind in GROUP_TAGS:
        raise BadInput(f"a {_word(kind)} keeps its name: its runs are found by it")
    t = _checked(store, who, kind, key, "rename")
    name = " ".join(check_text(new_name, "the new name", MAX_NAME_CHARS).split())
    if not name:
        raise BadInput("give a name: it cannot be empty")
    if kind == "run":
        store.update_run(t.key, name=name)
    else:
        _rename_dataset(store, t.key, name)
    audit.record(store, who, "rename", kind, t.key, f"{t.name} -> {name}")
    return name


def _rename_dataset(store, dataset_id: str, name: str) -> None:
    d = datasets_table
    with store.engine.connect() as conn:
        holder = conn.execute(sa.select(d.c.deleted_at).where(d.c.name == name, d.c.id != dataset_id)).first()
    clash = f"a dataset named {name!r} exists already" + (" (in the trash)" if holder and holder[0] else "")
    if holder is not None:
        raise BadInput(clash + "; choose another name")
    try:
        with store.engine.begin() as conn:
            conn.execute(d.update().where(d.c.id == dataset_id).values(name=name))
    except sa.exc.IntegrityError:  # another process took the name meanwhile
        raise BadInput(clash + "; choose another name") from None


def edit_run(store, who: Identity, run_id: str, tags=None, hypothesis=None) -> RunRecord:
    """Set a run's tags (a list of short texts, or one comma-separated text) and/or its hypothesis."""
    t = _checked(store, who, "run", run_id, "edit")
    run = t.runs[0]
    fields, said = {}, []
    if tags is not None:
        kept = tuple(tag for tag in run.tags if tag.startswith(tuple(GROUP_TAGS.values())))
        fields["tags"] = kept + tuple(tag for tag in checked_tags(tags) if tag not in kept)
        said.append("tags: " + ", ".join(fields["tags"]))
    if hypothesis is not None:
        fields["hypothesis"] = check_text(hypothesis, "the hypothesis", MAX_HYPOTHESIS_CHARS).strip()
        said.append("hypothesis")
    if fields:
        store.update_run(run.id, **fields)
        audit.record(store, who, "edit", "run", run.id, "; ".join(said))
    return store.get_run(run.id)


def checked_tags(tags) -> tuple[str, ...]:
    """A person's tags: short, one line each, none twice, none that the app sets itself (study:, curve:)."""
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    out: list[str] = []
    for raw in items:
        tag = " ".join(check_text(raw, "a tag", 10_000).split())
        if not tag or tag in out:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise BadInput(f"a tag has at most {MAX_TAG_CHARS} characters: {tag[:MAX_TAG_CHARS]!r}…")
        if tag.startswith(tuple(GROUP_TAGS.values())):
            raise BadInput(f"tags starting with {' or '.join(GROUP_TAGS.values())} are set by the app: {tag!r}")
        out.append(tag)
    if len(out) > MAX_TAGS:
        raise BadInput(f"a run has at most {MAX_TAGS} tags, not {len(out)}")
    return tuple(out)


def set_visibility(store, who: Identity, dataset_id: str, visibility: str) -> DatasetRecord:
    """Share a dataset with the team, or make it private to its owner."""
    if visibility not in VISIBILITIES:
        raise BadInput(f"visibility is one of {', '.join(VISIBILITIES)}, not {str(visibility)[:20]!r}")
    t = _checked(store, who, "dataset", dataset_id, "share or unshare")
    record = t.records[t.key]
    if visibility == "private" and not record.owner:
        raise BadInput(f"{record.name!r} belongs to no one: it stays shared")
    _set_dataset(store, t.key, visibility=visibility)
    audit.record(store, who, "visibility", "dataset", t.key, f"{record.visibility} -> {visibility}")
    return store.get_dataset(t.key)


def set_column_kind(store, who: Identity, dataset_id: str, column: str, kind: str) -> DatasetRecord:
    """How the app treats a column, for everyone who uses the dataset: an admin's call on a shared one."""
    record = store.get_dataset(dataset_id)
    require(can_see_dataset(who, record) and record.deleted_at is None, HIDDEN_DATASET)
    require(may_change_types(who, record), "only an admin may change column types of a shared dataset"
            if record.visibility == "shared" else "only its owner or an admin may change this dataset's column types")
    before = record.column(column).kind
    changed = store.set_column_kind(record.id, column, kind)
    audit.record(store, who, "type_change", "dataset", record.id, f"{column}: {before} -> {kind}")
    return changed


def _set_dataset(store, dataset_id: str, **values) -> None:
    with store.engine.begin() as conn:
        conn.execute(datasets_table.update().where(datasets_table.c.id == dataset_id).values(**values))


def _set_runs(conn, run_ids: list[str], where=None, **values) -> int:
    done = 0
    for i in range(0, len(run_ids), 500):  # bounded statements: a study may have a thousand trials
        q = runs_table.update().where(runs_table.c.id.in_(run_ids[i:i + 500]))
        done += conn.execute(q if where is None else q.where(where), values).rowcount
    return done


# -- archive ----------------------------------------------------------------------------------------------------
def archive(store, who: Identity, kind: str, key: str, archived: bool = True) -> int:
    """Archive (or bring back) a run, a dataset, a study or a curve: out of the leaderboards and pickers, nothing
    else changes. The records changed: runs, or 1 for the dataset itself."""
    t = _checked(store, who, kind, key, "archive" if archived else "unarchive")
    if kind == "dataset":
        _set_dataset(store, t.key, archived=bool(archived))
        changed = 1
    else:
        with store.engine.begin() as conn:
            changed = _set_runs(conn, t.live_ids, archived=bool(archived))
    audit.record(store, who, "archive" if archived else "unarchive", kind, t.key, f"{changed} changed")
    return changed


def archived_groups(store, kind: str) -> set[str]:
    """The studies (or curves) whose runs are all archived: hidden unless asked for."""
    prefix = GROUP_TAGS[kind]
    state: dict[str, bool] = {}
    for run in store.list_runs():
        for tag in run.tags:
            if tag.startswith(prefix):
                state[tag[len(prefix):]] = state.get(tag[len(prefix):], True) and run.archived
    return {name for name, all_archived in state.items() if all_archived}


def deleted_groups(store, kind: str) -> set[str]:
    """The studies (or curves) in the trash."""
    t = trash_table
    with store.engine.connect() as conn:
        return {k for (k,) in conn.execute(sa.select(t.c.key).where(t.c.kind == kind))}


# -- what depends on it -----------------------------------------------------------------------------------------
def dependents(store, kind: str, key: str) -> list[str]:
    """One line per thing that depends on it, to show before it goes ([] when nothing does)."""
    every = store.list_runs()
    t = _resolve(store, kind, key, every)
    if kind == "dataset":
        return _dataset_dependents(store, t)
    ours = {r.id for r in t.runs}
    n = len(t.live_ids)
    # A group's own runs go with it: said first, so deleting a study of 50 trials is never one careless click.
    lines = [] if kind == "run" else [count(n, "run is", "runs are") + " its trials" if kind == "study"
                                      else count(n, "run makes", "runs make") + " up this curve"]
    for run in t.runs:
        lines += _run_dependents(run, [r for r in every if r.id not in ours], own_tags=kind == "run")
    return list(dict.fromkeys(lines))


def _run_dependents(run: RunRecord, others: list[RunRecord], own_tags: bool) -> list[str]:
    lines, groups = [], Counter()
    for child in others:
        if child.model == "ensemble" and run.id in (child.config.get("members") or []):
            lines.append(f"member of ensemble {child.id} ({child.name})")
        elif child.parent_id == run.id:
            group = next((tag for tag in child.tags if tag.startswith(tuple(GROUP_TAGS.values()))), None)
            if group is None:
                lines.append(f"run {child.id} ({child.name}) starts from it")
            else:
                groups[group] += 1
    for tag, n in groups.items():
        kind, name = tag.split(":", 1)
        lines.append(f"{_word(kind)} {name} ({count(n, 'run', 'runs')}) starts from it")
    for tag in run.tags if own_tags else ():
        if tag.startswith("study:"):
            lines.append(f"trial of study {tag[len('study:'):]}")
        elif tag.startswith("curve:"):
            lines.append(f"part of learning curve {tag[len('curve:'):]}")
    return lines


def _dataset_dependents(store, t: _Target) -> list[str]:
    live = [r for r in t.runs if r.deleted_at is None]
    lines = [count(len(live), "run uses", "runs use") + " this dataset"] if live else []
    lab = labels_table
    with store.engine.connect() as conn:
        n, people = conn.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(lab.c.annotator)))
                                 .where(lab.c.dataset_id == t.key)).one()
    if n:
        lines.append(f"{count(n, 'label', 'labels')} by {count(people, 'person', 'people')}")
    for kind, prefix in GROUP_TAGS.items():
        names = sorted({tag[len(prefix):] for r in live for tag in r.tags if tag.startswith(prefix)})
        if names:
            shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
            lines.append(count(len(names), _word(kind), "studies" if kind == "study" else "learning curves") +
                         f": {shown}")
    return lines


# -- delete, undo, trash ----------------------------------------------------------------------------------------
def delete(store, who: Identity, kind: str, key: str) -> Trashed:
    """Soft-delete: hidden everywhere, undoable until purged. A dataset takes its runs with it."""
    t = _checked(store, who, kind, key, "delete")
    busy = [r for r in t.runs if r.active and r.deleted_at is None]
    if busy:
        raise BadInput(f"{len(busy)} of its runs are queued or running ({busy[0].id}…); cancel them first")
    lines = tuple(dependents(store, kind, t.key))
    stamp = round(time.time(), 6)
    ids = t.live_ids
    with store.engine.begin() as conn:
        _set_runs(conn, ids, runs_table.c.deleted_at.is_(None), deleted_at=stamp)
        if kind == "dataset":
            conn.execute(datasets_table.update().where(datasets_table.c.id == t.key).values(deleted_at=stamp))
        conn.execute(trash_table.delete().where(trash_table.c.kind == kind, trash_table.c.key == t.key))
        conn.execute(trash_table.insert().values(kind=kind, key=t.key, deleted_at=stamp, deleted_by=who.name))
    audit.record(store, who, "delete", kind, t.key, f"{t.name}: {count(len(ids), 'run', 'runs')}")
    return Trashed(kind, t.key, t.name, stamp, tuple(ids), lines)


def undo(store, who: Identity, kind: str, key: str) -> Trashed:
    """Bring back exactly what one delete took (the rows with its stamp); refused once purged."""
    try:
        t = _checked(store, who, kind, key, "undo the delete of", deleted_ok=True)
        row = _trash_row(store, kind, t.key)
    except NotFound:
        row, t = None, None
    if row is None:
        raise _nothing_to_undo(store, kind, key, t)
    if kind == "run" and t.runs[0].dataset_id and t.records[t.runs[0].dataset_id].deleted_at is not None:
        raise BadInput("its dataset is deleted too; undo the dataset first")
    ids = [r.id for r in t.runs if r.deleted_at == row.deleted_at]
    with store.engine.begin() as conn:
        _set_runs(conn, ids, runs_table.c.deleted_at == row.deleted_at, deleted_at=None)
        if kind == "dataset":
            conn.execute(datasets_table.update().where(datasets_table.c.id == t.key).values(deleted_at=None))
        conn.execute(trash_table.delete().where(trash_table.c.kind == kind, trash_table.c.key == t.key))
    audit.record(store, who, "undo", kind, t.key, f"{t.name}: {count(len(ids), 'run', 'runs')}")
    return Trashed(kind, t.key, t.name, None, tuple(ids))


def _nothing_to_undo(store, kind: str, key: str, t: _Target | None) -> Exception:
    purged = audit.entries(store, limit=1, action="purge", key=t.key if t else str(key))
    if purged:
        when = datetime.fromtimestamp(purged[0].at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return BadInput(f"{_word(kind)} {str(key)[:80]!r} was purged on {when}: it cannot be undone")
    if t is None:
        return NotFound(f"no {_word(kind)} {str(key)[:80]!r} to undo")
    if t.deleted_at is not None:  # a run that went with its dataset, study or curve
        return BadInput(f"{_word(kind)} {t.name!r} went with a larger delete; undo that one (see the trash)")
    return BadInput(f"{_word(kind)} {t.name!r} is not deleted: there is nothing to undo")


def trash(store, who: Identity) -> list[TrashItem]:
    """What this identity may undo (or purge), newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(trash_table).order_by(trash_table.c.deleted_at.desc())).all()
    every = store.list_runs(include_deleted=True)
    out = []
    for row in rows:
        try:
            t = _resolve(store, row.kind, row.key, every)
        except NotFound:  # its rows went another way (a dataset purged with its runs): nothing left to undo
            continue
        if _visible(who, t) and may_change(who, t.owner):
            n = sum(r.deleted_at == row.deleted_at for r in t.runs)
            out.append(TrashItem(row.kind, row.key, t.name, row.deleted_at, row.deleted_by, n))
    return out


# -- uploads ----------------------------------------------------------------------------------------------------
def claim_upload(store, who: Identity, record: DatasetRecord) -> DatasetRecord:
    """After an upload (data.ingest, owner=who.name): the dataset this identity gets for these bytes. Identical
    bytes in the trash come back for someone who may undo them; someone else's private dataset stays hidden."""
    require_write(who, "upload")
    require(can_see_dataset(who, record), ALREADY_HERE)
    if record.deleted_at is not None:
        require(may_change(who, record.owner), f"this file is already here as a deleted dataset; ask "
                f"{record.owner or 'an admin'} or an admin to undo its delete")
        if _trash_row(store, "dataset", record.id) is not None:
            undo(store, who, "dataset", record.id)
        else:  # deleted by a hand other than delete(): bring back the dataset itself
            _set_dataset(store, record.id, deleted_at=None)
    audit.record(store, who, "upload", "dataset", record.id, record.name)
    return store.get_dataset(record.id)


# -- purge ------------------------------------------------------------------------------------------------------
def purge(settings: Settings, store, who: Identity, older_than_s: float | None = None,
          only: tuple[str, str] | None = None) -> PurgeReport:
    """Remove for good what is in the trash: this identity's items deleted more than older_than_s ago (None: all),
    or only the one (kind, key). Rows of the runs that stay are never touched."""
    if only is not None:
        t = _checked(store, who, only[0], only[1], "purge", deleted_ok=True)
        if t.deleted_at is None and not any(r.deleted_at is not None for r in t.runs):
            raise BadInput(f"{_word(t.kind)} {t.name!r} is not deleted; delete it first")
        items = [(t.kind, t.key)]
    else:
        cutoff = time.time() - (older_than_s or 0.0)
        items = [(i.kind, i.key) for i in trash(store, who) if older_than_s is None or i.deleted_at <= cutoff]
    rows, files, freed, studies, run_ids = Counter(), [], 0, [], set()
    for kind, key in sorted(items, key=lambda item: KINDS.index(item[0])):
        item_rows, item_freed, purged = _purge_item(settings, store, kind, key, files)
        rows += item_rows
        freed += item_freed
        run_ids |= purged
        studies += [key] if kind == "study" else []
        audit.record(store, who, "purge", kind, key, ", ".join(f"{table}: {n}" for table, n in item_rows.items()))
    job_files, job_bytes = purging.remove_job_files(settings.home, run_ids, set(studies))
    return PurgeReport(tuple(items), dict(rows), tuple(files + job_files), freed + job_bytes, tuple(studies))


def _purge_item(settings: Settings, store, kind: str, key: str, files: list[str]) -> tuple[Counter, int, set[str]]:
    """One item's rows (and its snapshot): (rows per table, bytes freed, run ids purged)."""
    try:
        t = _resolve(store, kind, key)
    except NotFound:  # went with an item purged before it in this purge
        return Counter(), 0, set()
    stamp = t.deleted_at
    doomed = [r.id for r in t.runs if kind == "dataset" or r.deleted_at is not None and
              (kind == "run" or r.deleted_at == stamp)]
    rows, freed = Counter(), 0
    for run_id in doomed:
        run_rows, run_bytes = purging.purge_run(store.engine, run_id)
        rows, freed = rows + run_rows, freed + run_bytes
    if kind == "dataset":
        dataset_rows, snapshot = purging.purge_dataset_rows(store.engine, t.key)
        rows += dataset_rows
        removed, size = purging.remove_snapshot(settings.snapshots_dir, snapshot) if snapshot else ([], 0)
        files += removed
        freed += size
    with store.engine.begin() as conn:
        conn.execute(trash_table.delete().where(trash_table.c.kind == kind, trash_table.c.key == t.key))
    return rows, freed, set(doomed)

