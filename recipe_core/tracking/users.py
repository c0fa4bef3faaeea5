"""Roles of the people who sign in, set by an operator (CLI) or an admin (Team page). Every change is audited."""
from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from recipe_core.errors import BadInput, NotFound
from recipe_core.safetext import check_text
from recipe_core.tracking import audit
from recipe_core.tracking.access import ROLES, Identity, may_manage_users, member_of_team, require
from recipe_core.tracking.schema import users_table

MAX_NAME_CHARS = 320  # an email address's longest


@dataclass(frozen=True)
class User:
    name: str
    role: str
    added_at: float
    added_by: str


def checked_name(name) -> str:
    """An identity as typed by an operator: one line of text; emails compare case-insensitively, so lower case."""
    text = " ".join(check_text(name, "the user name", MAX_NAME_CHARS).split())
    if not text or " " in text:
        raise BadInput("a user is one email address or subject, without spaces")
    return text.lower() if "@" in text else text


def role_of(store, name: str) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(users_table.c.role).where(users_table.c.name == _key(name))).scalar()


def identity(store, name: str) -> Identity:
    """A signed-in person as the rules see them (a viewer until someone gives them a role)."""
    return member_of_team(_key(name), role_of(store, name))


def list_users(store) -> list[User]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(users_table).order_by(users_table.c.name)).all()
    return [User(**r._mapping) for r in rows]


def set_role(store, who: Identity, name, role: str) -> User:
    """Add a person or change their role."""
    require(may_manage_users(who), "only an admin may change roles")
    if role not in ROLES:
        raise BadInput(f"unknown role {str(role)[:40]!r}; choose one of {', '.join(ROLES)}")
    name = checked_name(name)
    before = role_of(store, name)
    user = User(name=name, role=role, added_at=time.time(), added_by=who.name)
    with store.engine.begin() as conn:
        if before is None:
            conn.execute(users_table.insert().values(**user.__dict__))
        else:
            conn.execute(users_table.update().where(users_table.c.name == name).values(role=role))
    audit.record(store, who, "role_change", "user", name, f"{before or 'none'} -> {role}")
    return user


def remove(store, who: Identity, name) -> None:
    require(may_manage_users(who), "only an admin may remove people")
    name = checked_name(name)
    with store.engine.begin() as conn:
        gone = conn.execute(users_table.delete().where(users_table.c.name == name)).rowcount
    if not gone:
        raise NotFound(f"no user {name!r}")
    audit.record(store, who, "user_removed", "user", name)


def _key(name: str) -> str:
    return name.lower() if "@" in name else name
