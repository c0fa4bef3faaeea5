"""Records to store rows and back: JSON columns, text checked before it is stored, and an active run whose
process went silent read as lost."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

from recipe_core.data.records import Column, DatasetRecord
from recipe_core.errors import BadInput
from recipe_core.jsonsafe import plain
from recipe_core.safetext import check_text, storable
from recipe_core.tracking.heartbeat import lost_after_s
from recipe_core.tracking.records import ACTIVE, LOST, RunRecord


def columns_json(columns: tuple[Column, ...]) -> str:
    return json.dumps([[c.name, c.dtype, c.kind] for c in columns], ensure_ascii=False)


def dataset_row(r: DatasetRecord) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "source_name": r.source_name,
        "fmt": r.fmt,
        "n_rows": r.n_rows,
        "columns_json": columns_json(r.columns),
        "snapshot": r.snapshot,
        "created_at": r.created_at,
        "notes_json": json.dumps(list(r.notes), ensure_ascii=False),
        "size_bytes": r.size_bytes,
        "owner": r.owner,
        "visibility": r.visibility,
        "archived": r.archived,
        "deleted_at": r.deleted_at,
    }


def dataset_record(row) -> DatasetRecord:
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
        owner=m["owner"],
        visibility=m["visibility"],
        archived=bool(m["archived"]),
        deleted_at=m["deleted_at"],
    )


def to_json(value) -> str:
    try:
        return json.dumps(plain(value), ensure_ascii=False)  # NaN/inf are not JSON: they are stored as null
    except RecursionError:
        raise BadInput("a value is nested too deeply to store") from None


RUN_JSON = ("config", "metrics", "checks", "tags")
RUN_TEXT = {"name": "the run name", "author": "the author", "hypothesis": "the hypothesis", "model": "the model",
             "target": "the target", "host": "the host"}


def checked_run_fields(fields: dict) -> dict:
    """Run fields as the store can hold them: typed text refused with one line; a failure reason (often an
    exception's text, holding whatever the data held) made storable instead."""
    out = dict(fields)
    for name, what in RUN_TEXT.items():
        if out.get(name) is not None:
            out[name] = check_text(out[name], what)
    if out.get("tags") is not None:
        out["tags"] = tuple(check_text(t, "a tag") for t in out["tags"])
    if out.get("reason") is not None:
        out["reason"] = storable(out["reason"])
    return out


def checked_run(run: RunRecord) -> RunRecord:
    checked = checked_run_fields({name: getattr(run, name) for name in (*RUN_TEXT, "tags", "reason")})
    return replace(run, **checked)


def run_row(r: RunRecord) -> dict:
    row = asdict(r)
    for name in RUN_JSON:
        row[f"{name}_json"] = to_json(row.pop(name))
    return row


def run_record(row) -> RunRecord:
    m = dict(row._mapping)
    for name in RUN_JSON:
        m[name] = json.loads(m.pop(f"{name}_json"))
    m["tags"] = tuple(m["tags"])
    m["cancel_requested"] = bool(m["cancel_requested"])
    m["archived"] = bool(m["archived"])
    beat = m["heartbeat"]
    if m["status"] in ACTIVE and beat is not None and time.time() - beat > lost_after_s():
        # Its process stopped beating (killed, out of memory, machine gone): it is not running, whatever the row says.
        # Derived on every read, so no page visit is needed; if the process comes back, it reads active again.
        when = datetime.fromtimestamp(beat, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        where = f"{m['host']} pid {m['pid']}" if m["pid"] else (m["host"] or "its process")
        m["status"], m["reason"] = LOST, f"no sign of life from {where} since {when}"
    return RunRecord(**m)
