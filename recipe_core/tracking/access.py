"""Who may see and change what. An Identity comes from sign-in (team mode) or is the one local user; the rules
are pure functions of it and the record, so every page, the CLI and the tests ask the same questions.

In single-user mode (no sign-in configured) everyone who reaches the server is the same person, and every rule
allows: the rules only mean something once people are told apart.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from recipe_core.data.records import DatasetRecord
from recipe_core.errors import Forbidden
from recipe_core.tracking.records import RunRecord

ROLES = ("viewer", "member", "admin")  # each may do what the one before may, and more
DEFAULT_ROLE = "viewer"  # a signed-in person no operator has given a role: reads what is shared, changes nothing
HIDDEN_DATASET = "you may not see this dataset, or it does not exist"


@dataclass(frozen=True)
class Identity:
    name: str  # signed in: st.user's email (else its subject); single-user: the typed name; CLI: the OS user
    role: str  # one of ROLES
    team: bool  # True once sign-in is configured: the rules apply; False: single-user mode, all is allowed

    @property
    def is_admin(self) -> bool:
        return not self.team or self.role == "admin"


def single_user(name: str) -> Identity:
    return Identity(name=name, role="admin", team=False)


def operator() -> Identity:
    """The CLI and the Python API: whoever holds the store's credentials may do anything; the name on what they
    write is RECIPE_AUTHOR, else the OS user."""
    name = os.environ.get("RECIPE_AUTHOR", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no user name in the environment or the password database (containers)
            name = f"uid-{os.getuid()}"
    return Identity(name=name, role="admin", team=False)


def member_of_team(name: str, role: str | None) -> Identity:
    """A signed-in person with the role an operator gave them (None: never given one)."""
    return Identity(name=name, role=role if role in ROLES else DEFAULT_ROLE, team=True)


# -- seeing ---------------------------------------------------------------------------------------------------
def can_see_dataset(who: Identity, record: DatasetRecord) -> bool:
    return who.is_admin or record.visibility == "shared" or (bool(record.owner) and record.owner == who.name)


def can_see_run(who: Identity, run: RunRecord, record: DatasetRecord | None) -> bool:
    """A run follows its dataset; one that names none (a script's own run, an import) is the team's."""
    return run.dataset_id is None or (record is not None and can_see_dataset(who, record))


def visible_datasets(who: Identity, records: list[DatasetRecord]) -> list[DatasetRecord]:
    return [r for r in records if can_see_dataset(who, r)]


def visible_runs(who: Identity, runs: list[RunRecord], records: list[DatasetRecord]) -> list[RunRecord]:
    by_id = {r.id: r for r in records}
    return [run for run in runs if can_see_run(who, run, by_id.get(run.dataset_id))]


# -- changing -------------------------------------------------------------------------------------------------
def may_write(who: Identity) -> bool:
    """Upload, label, train, comment, tune."""
    return who.is_admin or who.role == "member"


def may_change(who: Identity, owner: str) -> bool:
    """Rename, archive, delete, undo, cancel, share: the owner (a member) or an admin."""
    return who.is_admin or (who.role == "member" and bool(owner) and owner == who.name)


def may_change_types(who: Identity, record: DatasetRecord) -> bool:
    """A column's type changes what everyone who uses the dataset sees: on a shared dataset only an admin."""
    return who.is_admin or (record.visibility == "private" and may_change(who, record.owner))


def may_manage_users(who: Identity) -> bool:
    return who.is_admin


def require(allowed: bool, message: str) -> None:
    if not allowed:
        raise Forbidden(message)


def require_write(who: Identity, what: str) -> None:
    require(may_write(who), f"{who.name} is a {who.role}: only members and admins may {what}")


def require_change(who: Identity, owner: str, what: str) -> None:
    require(may_change(who, owner), f"only {owner} or an admin may {what}" if owner else f"only an admin may {what}")


def require_visible_dataset(who: Identity, record: DatasetRecord | None) -> DatasetRecord:
    require(record is not None and record.deleted_at is None and can_see_dataset(who, record), HIDDEN_DATASET)
    return record
