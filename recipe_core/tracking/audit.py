"""The audit trail: who did what, to what, and when. Only appended to; admins read it (Team page, CLI)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from recipe_core.safetext import storable
from recipe_core.tracking.schema import audit_table

ACTIONS = ("upload", "rename", "archive", "unarchive", "delete", "undo", "purge", "type_change", "visibility",
           "label_import", "role_change", "user_removed", "cancel", "edit")
MAX_DETAIL_CHARS = 2000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    kind: str
    key: str
    detail: str


def record(store, who, action: str, kind: str, key: str, detail: str = "") -> None:
    """Append one entry; `who` is an access.Identity (or a plain name)."""
    assert action in ACTIONS, action  # a new action is added to ACTIONS, so the filters offer it
    actor = getattr(who, "name", who) or "anonymous"
    with store.engine.begin() as conn:
        conn.execute(audit_table.insert().values(at=time.time(), actor=storable(actor), action=action, kind=kind,
                                                 key=storable(str(key)), detail=storable(detail)[:MAX_DETAIL_CHARS]))


def entries(store, limit: int = 200, actor: str | None = None, action: str | None = None,
            key: str | None = None) -> list[AuditEntry]:
    """The latest entries first."""
    t = audit_table
    q = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(max(1, min(int(limit), 100_000)))
    if actor:
        q = q.where(t.c.actor == actor)
    if action:
        q = q.where(t.c.action == action)
    if key:
        q = q.where(t.c.key == key)
    with store.engine.connect() as conn:
        return [AuditEntry(**r._mapping) for r in conn.execute(q)]
