"""The CLI's team commands: users (roles), audit (who did what), trash (what can be undone), purge.

The CLI is an operator (access.operator(): RECIPE_AUTHOR, else the OS user, with an admin's rights): whoever holds
the store's credentials may do anything, so these commands check nothing more, and the audit names that operator.
"""
from __future__ import annotations

import time

from recipe_core.cli.lifecycle import json_option
from recipe_core.tracking import access, audit, users
from recipe_core.units import count, human_bytes


def when(at: float | None) -> str:
    """A unix time as the operator's local time, to the second (audit and trash lines)."""
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


# -- users ------------------------------------------------------------------------------------------------------
def _user_json(u: users.User) -> dict:
    return {"name": u.name, "role": u.role, "added_at": u.added_at, "added_by": u.added_by}


def cmd_users_add(args, settings, store) -> dict:
    return _user_json(users.set_role(store, access.operator(), args.email, args.role))


def cmd_users_list(args, settings, store) -> list:
    return [_user_json(u) for u in users.list_users(store)]


def cmd_users_remove(args, settings, store) -> dict:
    name = users.checked_name(args.email)
    users.remove(store, access.operator(), name)
    return {"removed": name}


def show_user(out: dict) -> str:
    return f"{out['name']} is a {out['role']}"


def show_users(out: list) -> str:
    return "\n".join(f"{u['name']}  {u['role']:<6}  added {when(u['added_at'])} by {u['added_by']}"
                     for u in out) or "no users (everyone who signs in is a viewer)"


# -- audit ------------------------------------------------------------------------------------------------------
def cmd_audit(args, settings, store) -> list:
    if args.limit < 1:
        from recipe_core.errors import BadInput

        raise BadInput("--limit must be at least 1")
    return [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "kind": e.kind, "key": e.key,
             "detail": e.detail}
            for e in audit.entries(store, limit=args.limit, actor=args.actor, action=args.action)]


def show_audit(out: list) -> str:
    return "\n".join(f"{when(e['at'])}  {e['actor']}  {e['action']}  {e['kind']} {e['key']}"
                     + (f"  {e['detail']}" if e["detail"] else "") for e in out) or "no audit entries"


# -- trash and purge --------------------------------------------------------------------------------------------
def cmd_trash(args, settings, store) -> list:
    from recipe_core.tracking import lifecycle

    return [{"kind": t.kind, "key": t.key, "name": t.name, "deleted_at": t.deleted_at, "deleted_by": t.deleted_by,
             "runs": t.n_runs, "purged_after": t.deleted_at + settings.undo_seconds}
            for t in lifecycle.trash(store, access.operator())]


def cmd_purge(args, settings, store) -> dict:
    from recipe_core.search import trash

    older_than = None if args.all else settings.undo_seconds
    report = trash.purge(settings, store, access.operator(), older_than_s=older_than)
    return report_json(report)


def report_json(report) -> dict:
    return {"items": [{"kind": kind, "key": key} for kind, key in report.items], "rows": dict(report.rows),
            "files": list(report.files), "bytes": report.bytes_freed, "studies": list(report.studies)}


def show_trash(out: list) -> str:
    return "\n".join(f"{t['kind']} {t['key']}  {t['name']}  {count(t['runs'], 'run')}  deleted "
                     f"{when(t['deleted_at'])} by {t['deleted_by']}  (undo until {when(t['purged_after'])})"
                     for t in out) or "the trash is empty"


def show_purge(out: dict) -> str:
    if not out["items"]:
        return "nothing to purge"
    rows = out["rows"]
    lines = [f"purged {len(out['items'])} items: {sum(rows.values()):,} rows, {len(out['files']):,} files, "
             f"{human_bytes(out['bytes'])} freed"]
    lines += [f"  {item['kind']} {item['key']}" for item in out["items"]]
    lines += [f"  {n:,} rows of {table}" for table, n in sorted(rows.items()) if n]
    return "\n".join(lines)


def add_commands(sub) -> None:
    users_parser = sub.add_parser("users", help="who may sign in, and their role: add (or change), list, remove")
    us = users_parser.add_subparsers(dest="users_command", required=True, parser_class=type(users_parser))
    s = us.add_parser("add", help="give a person a role (or change it)")
    s.add_argument("email", help="the email (or subject) they sign in with")
    s.add_argument("--role", required=True, help=f"one of {', '.join(access.ROLES)}")
    s.set_defaults(run=cmd_users_add, show=show_user)
    s = us.add_parser("list", help="everyone given a role")
    s.set_defaults(run=cmd_users_list, show=show_users)
    s = us.add_parser("remove", help="take a person's role away (they sign in as a viewer)")
    s.add_argument("email")
    s.set_defaults(run=cmd_users_remove, show=lambda out: f"removed {out['removed']}")
    for s in us.choices.values():
        json_option(s)

    s = sub.add_parser("audit", help="who did what and when, latest first")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--actor", help="only this person's entries")
    s.add_argument("--action", choices=audit.ACTIONS, help="only this action")
    s.set_defaults(run=cmd_audit, show=show_audit)

    s = sub.add_parser("trash", help="what was deleted and can still be undone (until it is purged)")
    s.set_defaults(run=cmd_trash, show=show_trash)

    s = sub.add_parser("purge", help="free what was deleted past the undo window (--all: everything in the trash)")
    s.add_argument("--all", action="store_true", help="also what is still within the undo window")
    s.set_defaults(run=cmd_purge, show=show_purge)
