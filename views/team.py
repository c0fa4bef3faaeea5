"""The Team page's views (admins): people and their roles, the audit trail, the trash and the purge.

Writes run in button callbacks, before the page is drawn again, so the tables below show them at once; what a
callback has to say waits in a session key for the view it came from.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pandas as pd
import streamlit as st

import ui
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.search import trash as search_trash
from recipe_core.tracking import access, audit, lifecycle, users
from recipe_core.units import human_bytes

PURGE_ALL = "team_purge_confirm"  # the "everything in the trash" box was ticked: the next click purges all
AUDIT_LIMIT = 200
TRASH_SHOWN = 50
KIND_LABEL = {"run": "run", "dataset": "dataset", "study": "study", "curve": "learning curve"}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _attempt(view: str, write, done) -> None:
    """One write in a callback; its one-line error, or what it did (done: a function of its result), is kept."""
    try:
        result = write()
    except RecipeError as e:
        ui.say_later(view, False, str(e))
        return
    ui.catalog_changed()
    ui.runs_changed()
    ui.say_later(view, True, done(result))


def mode_note(sel: ui.Selection) -> None:
    if not sel.who.team:
        st.info("Single-user mode: everyone who reaches this server is an admin, so this page works for anyone. "
                "Users and roles matter once sign-in is configured (see the README's team section).",
                icon=":material/info:")


# -- people and roles ---------------------------------------------------------------------------------------
def _own_role_refused(sel: ui.Selection, name: str) -> bool:
    """An admin does not demote or remove themselves here: the team could be left without one."""
    try:
        same = sel.who.team and users.checked_name(name) == sel.who.name
    except RecipeError:
        return False
    if same:
        ui.say_later("users", False, "you cannot change your own role here; another admin can, or an operator with "
                             "`python -m recipe_core users add NAME --role ROLE`")
    return same


def _set_role(sel: ui.Selection) -> None:
    name, role = st.session_state.get("team_user_name", ""), st.session_state.get("team_user_role")
    if _own_role_refused(sel, name):
        return
    _attempt("users", lambda: users.set_role(sel.store, sel.who, name, role),
             lambda user: f"{markdown_literal(user.name)} is now a {user.role}.")
    st.session_state["team_user_name"] = ""


def _remove(sel: ui.Selection, name: str) -> None:
    if _own_role_refused(sel, name):
        return
    _attempt("users", lambda: users.remove(sel.store, sel.who, name),
             lambda _: f"Removed {markdown_literal(name)}: signed in, they are a viewer again.")


def people(sel: ui.Selection) -> None:
    """Who has a role; add a person or change their role; remove one. Anyone signed in without a role is a
    viewer."""
    st.subheader("People and roles")
    st.caption(f"Anyone who signs in without a role here is a {access.DEFAULT_ROLE}. Members upload, label, "
               "train, comment and tune; admins also manage people, delete anything and change column types of "
               "shared datasets.")
    known = users.list_users(sel.store)
    if known:
        st.dataframe(pd.DataFrame([{"name": u.name, "role": u.role, "added": _when(u.added_at),
                                    "added by": u.added_by} for u in known]), hide_index=True, width="stretch")
    c = st.columns([4, 2, 2], vertical_alignment="bottom")
    c[0].text_input("Email (or subject) as the sign-in gives it", key="team_user_name", max_chars=users.MAX_NAME_CHARS)
    c[1].selectbox("Role", access.ROLES, index=access.ROLES.index("member"), key="team_user_role")
    c[2].button("Add or change", key="team_user_set", icon=":material/person_add:", on_click=_set_role, args=(sel,))
    if known:
        c = st.columns([6, 2], vertical_alignment="bottom")
        gone = c[0].selectbox("Remove a person", [u.name for u in known], index=None, key="team_user_remove",
                              placeholder="pick a person")
        c[1].button("Remove", key="team_user_remove_go", icon=":material/person_remove:", disabled=gone is None,
                    on_click=_remove, args=(sel, gone))
    ui.show_outcome("users")


# -- the audit trail -----------------------------------------------------------------------------------------
def audit_trail(sel: ui.Selection) -> None:
    st.subheader("Audit trail")
    c = st.columns([3, 2, 1])
    actor = c[0].text_input("Actor (exact name)", key="team_audit_actor", max_chars=users.MAX_NAME_CHARS).strip()
    action = c[1].selectbox("Action", audit.ACTIONS, index=None, key="team_audit_action", placeholder="any action")
    limit = int(c[2].number_input("Latest", 1, 100_000, AUDIT_LIMIT, key="team_audit_limit"))
    found = audit.entries(sel.store, limit=limit, actor=actor or None, action=action)
    if not found:
        st.caption("No entries" + (" match these filters." if actor or action else " yet."))
        return
    # st.dataframe shows text cells as text: a hostile name or detail is never rendered as markdown
    st.dataframe(pd.DataFrame([{"when": _when(e.at), "actor": e.actor, "action": e.action, "kind": e.kind,
                                "key": e.key, "detail": e.detail} for e in found]), hide_index=True, width="stretch")
    st.caption(f"{len(found):,} entries, newest first" + (f" (the latest {limit:,})" if len(found) == limit else ""))


# -- the trash and the purge -------------------------------------------------------------------------------------
def _undo(sel: ui.Selection, kind: str, key: str, name: str) -> None:
    _attempt("trash", lambda: lifecycle.undo(sel.store, sel.who, kind, key),
             lambda back: f"{KIND_LABEL[kind].capitalize()} {markdown_literal(name)} is back "
                          f"({len(back.run_ids)} runs).")


def trash(sel: ui.Selection) -> None:
    """What is deleted and may still be undone, newest first, each with its Undo."""
    st.subheader("Trash")
    items = lifecycle.trash(sel.store, sel.who)
    ui.show_outcome("trash")
    if not items:
        st.caption("The trash is empty.")
        return
    window = sel.settings.undo_seconds
    st.caption(f"{len(items):,} deleted; each can be undone until a purge removes it, at the earliest "
               f"{window / 3600:g} h after its delete (RECIPE_UNDO_HOURS).")
    for item in items[:TRASH_SHOWN]:
        due = item.deleted_at + window <= time.time()
        c = st.columns([6, 1], vertical_alignment="center")
        c[0].markdown(f"{KIND_LABEL[item.kind].capitalize()} **{markdown_literal(item.name)}** · "
                      f"{item.n_runs} run{'' if item.n_runs == 1 else 's'} · deleted {_when(item.deleted_at)} by "
                      f"{markdown_literal(item.deleted_by)}" + (" · past the undo window" if due else ""))
        c[1].button("Undo", key=f"team_undo:{item.kind}:{item.key}", icon=":material/undo:", on_click=_undo,
                    args=(sel, item.kind, item.key, item.name))
    if len(items) > TRASH_SHOWN:
        st.caption(f"and {len(items) - TRASH_SHOWN:,} older ones: `python -m recipe_core runs undo ID` brings any "
                   "of them back.")


def _report(report) -> str:
    if not report.items:
        return "Nothing to purge."
    return (f"Purged {_count(len(report.items), 'item')}: {_count(report.runs, 'run')}, "
            f"{_count(report.datasets, 'dataset')}, {_count(len(report.files), 'file')}; "
            f"{human_bytes(report.bytes_freed)} freed.")


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _purge(sel: ui.Selection, everything: bool) -> None:
    st.session_state.pop(PURGE_ALL, None)
    st.session_state["team_purge_everything"] = False
    older = None if everything else sel.settings.undo_seconds
    _attempt("purge", lambda: search_trash.purge(sel.settings, sel.store, sel.who, older_than_s=older), _report)


def _ask_everything() -> None:
    if st.session_state.get("team_purge_everything"):
        st.session_state[PURGE_ALL] = True
    else:
        st.session_state.pop(PURGE_ALL, None)


def purge(sel: ui.Selection) -> None:
    """Remove for good what has been in the trash longer than the undo window; or, confirmed, all of it."""
    st.subheader("Purge")
    st.caption(f"A purge removes deleted runs and datasets for good: their points, predictions, artifacts, "
               f"comments and labels, and a snapshot no dataset uses any more. By default only what was deleted "
               f"more than {sel.settings.undo_seconds / 3600:g} h ago.")
    c = st.columns([2, 4], vertical_alignment="center")
    c[0].button("Purge now", key="team_purge", icon=":material/delete_forever:", on_click=_purge, args=(sel, False))
    c[1].checkbox("Everything in the trash, also what could still be undone", key="team_purge_everything",
                  on_change=_ask_everything)
    if st.session_state.get(PURGE_ALL):
        st.warning("This removes everything in the trash now, for good: no undo.", icon=":material/warning:")
        st.button("Purge everything in the trash", key="team_purge_all", type="primary",
                  icon=":material/delete_forever:", on_click=_purge, args=(sel, True))
    ui.show_outcome("purge")


def not_an_admin(sel: ui.Selection) -> None:
    st.info(f"This page is for admins; you are signed in as a {sel.who.role}.", icon=":material/lock:")

