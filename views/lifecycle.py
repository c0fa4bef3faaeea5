"""Widgets to rename, retag, archive, delete and undo a run, dataset, study or learning curve, shared by the pages.

Each draws nothing for a person who may not change the thing (access.may_change: its owner or an admin), and
writes only through recipe_core.tracking.lifecycle, which checks the same rule again and audits the change. The
writes run in button callbacks, before the page is drawn again, so the tables above show them at once; what a
callback has to say (an error, a confirmation) waits in a session key until its widget is drawn.
"""
from __future__ import annotations

import time

import streamlit as st

import ui
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access, lifecycle
from recipe_core.tracking.records import RunRecord

CONFIRM = "lc_confirm"  # (kind, key, name, dependents): a delete waiting for "Delete anyway"
MAX_UNDO_SHOWN = 8
GROUP_PREFIXES = tuple(lifecycle.GROUP_TAGS.values())  # study:, curve:
KIND_LABEL = {"run": "Run", "dataset": "Dataset", "study": "Study", "curve": "Learning curve"}


def allowed(sel: ui.Selection, owner: str, what: str) -> bool:
    """Whether this person may change what `owner` owns; when not, one caption why (for the caller to show once
    above the widgets it then leaves out)."""
    if access.may_change(sel.who, owner):
        return True
    who_may = f"{markdown_literal(owner)} or an admin" if owner else "an admin"
    st.caption(f"Only {who_may} may {what}; you are signed in as {markdown_literal(sel.who.name)} ({sel.who.role}).")
    return False


def _written(kind: str) -> None:
    """Every cache that shows what a lifecycle write changes."""
    ui.runs_changed()
    if kind == "dataset":
        ui.catalog_changed()


def _attempt(area: str, kind: str, write, done: str = "") -> bool:
    """Run one lifecycle write in a callback: its error, one line, is kept for the widget to show."""
    try:
        write()
    except RecipeError as e:
        ui.say_later(area, False, str(e))
        return False
    _written(kind)
    if done:
        ui.say_later(area, True, done)
    return True


# -- rename ------------------------------------------------------------------------------------------------------
def _starts_at(field: str, stored) -> None:
    """A box shows what is stored when first drawn, and again whenever the stored value changed (saved here or by
    a teammate); between those, what the person typed. Set before the widget is drawn, with no value= of its own."""
    if st.session_state.get(f"{field}:stored", ()) != stored:
        st.session_state[f"{field}:stored"] = stored
        st.session_state[field] = list(stored) if isinstance(stored, tuple) else stored


def _rename(sel: ui.Selection, kind: str, key: str, field: str) -> None:
    area = f"rename:{kind}:{key}"
    wanted = st.session_state.get(field, "")
    given = []
    if _attempt(area, kind, lambda: given.append(lifecycle.rename(sel.store, sel.who, kind, key, wanted))):
        ui.say_later(area, True, f"Renamed to {markdown_literal(given[0])}.")


def rename_box(sel: ui.Selection, kind: str, key: str, current_name: str, owner: str) -> None:
    """A name box and a Rename button (runs and datasets)."""
    if not access.may_change(sel.who, owner):
        return
    field = f"lc_name:{kind}:{key}"
    c = st.columns([4, 1], vertical_alignment="bottom")
    _starts_at(field, current_name)
    c[0].text_input("Name", key=field, max_chars=lifecycle.MAX_NAME_CHARS)
    c[1].button("Rename", key=f"lc_rename:{kind}:{key}", on_click=_rename, args=(sel, kind, key, field),
                icon=":material/edit:")
    ui.show_outcome(f"rename:{kind}:{key}")


# -- tags and hypothesis ---------------------------------------------------------------------------------------
def _save_edit(sel: ui.Selection, run_id: str, tags_field: str, hypothesis_field: str) -> None:
    tags = st.session_state.get(tags_field, [])  # edit_run keeps the group tags itself
    hypothesis = st.session_state.get(hypothesis_field, "")
    _attempt(f"edit:{run_id}", "run",
             lambda: lifecycle.edit_run(sel.store, sel.who, run_id, tags=tags, hypothesis=hypothesis),
             "Tags and hypothesis saved.")


def tags_and_hypothesis(sel: ui.Selection, run: RunRecord, known_tags=()) -> None:
    """A run's tags (pick known ones or type new ones) and its hypothesis, saved together. The tags a search or a
    learning curve set (study:..., curve:...) say which group the run belongs to: kept, and not offered."""
    if not access.may_change(sel.who, run.author):
        return
    kept = tuple(t for t in run.tags if t.startswith(GROUP_PREFIXES))
    own = [t for t in run.tags if t not in kept]
    options = sorted({t for t in known_tags if not t.startswith(GROUP_PREFIXES)} | set(own))
    tags_field, hypothesis_field = f"lc_tags:{run.id}", f"lc_hyp:{run.id}"
    _starts_at(tags_field, tuple(own))
    _starts_at(hypothesis_field, run.hypothesis)
    st.multiselect("Tags", options, key=tags_field, accept_new_options=True,
                   max_selections=lifecycle.MAX_TAGS, placeholder="pick a tag, or type a new one and press Enter")
    st.text_area("Hypothesis", key=hypothesis_field, max_chars=lifecycle.MAX_HYPOTHESIS_CHARS,
                 placeholder="what this run should show", height=80)
    if kept:
        st.caption("Also tagged " + ", ".join(markdown_literal(t) for t in kept)
                   + ": set by its search or learning curve, kept as they are.")
    st.button("Save tags and hypothesis", key=f"lc_save:{run.id}", icon=":material/save:", on_click=_save_edit,
              args=(sel, run.id, tags_field, hypothesis_field))
    ui.show_outcome(f"edit:{run.id}")


# -- archive -------------------------------------------------------------------------------------------------
def _archive(sel: ui.Selection, kind: str, key: str, archived: bool) -> None:
    _attempt(f"archive:{kind}:{key}", kind, lambda: lifecycle.archive(sel.store, sel.who, kind, key, archived),
             "Archived: hidden from tables and leaderboards until shown." if archived else "Unarchived.")


def archive_toggle(sel: ui.Selection, kind: str, key: str, archived: bool, owner: str) -> None:
    """Archive (or bring back) a run, dataset, study or learning curve: hidden from lists, nothing is lost."""
    if not access.may_change(sel.who, owner):
        return
    st.button("Unarchive" if archived else "Archive", key=f"lc_archive:{kind}:{key}",
              icon=":material/unarchive:" if archived else ":material/archive:", on_click=_archive,
              args=(sel, kind, key, not archived),
              help="Archived: hidden from lists and leaderboards unless asked for; nothing is deleted")
    ui.show_outcome(f"archive:{kind}:{key}")


# -- delete and undo --------------------------------------------------------------------------------------------
def _delete(sel: ui.Selection, kind: str, key: str) -> None:
    st.session_state.pop(CONFIRM, None)
    _attempt(f"delete:{kind}:{key}", kind, lambda: lifecycle.delete(sel.store, sel.who, kind, key))


def _ask_delete(sel: ui.Selection, kind: str, key: str, name: str) -> None:
    """Delete at once when nothing depends on it (it can be undone); else ask, naming what depends on it."""
    try:
        depending = lifecycle.dependents(sel.store, kind, key)
    except RecipeError as e:
        ui.say_later(f"delete:{kind}:{key}", False, str(e))
        return
    if depending:
        st.session_state[CONFIRM] = (kind, key, name, tuple(depending))
    else:
        _delete(sel, kind, key)


def _keep() -> None:
    st.session_state.pop(CONFIRM, None)


def delete_button(sel: ui.Selection, kind: str, key: str, name: str, owner: str) -> None:
    """Delete (soft: undoable until the purge); when something depends on it, first what, and a confirmation."""
    if not access.may_change(sel.who, owner):
        return
    asked = st.session_state.get(CONFIRM)
    if asked and asked[:2] == (kind, key):
        st.warning(f"Deleting {KIND_LABEL.get(kind, kind).lower()} {markdown_literal(name)} affects what depends "
                   "on it:\n" + "\n".join(f"- {markdown_literal(line)}" for line in asked[3]),
                   icon=":material/warning:")
        c = st.columns(2)
        c[0].button("Delete anyway", key=f"lc_delete_anyway:{kind}:{key}", type="primary",
                    icon=":material/delete:", on_click=_delete, args=(sel, kind, key))
        c[1].button("Keep it", key=f"lc_keep:{kind}:{key}", on_click=_keep)
    else:
        st.button("Delete", key=f"lc_delete:{kind}:{key}", icon=":material/delete:", on_click=_ask_delete,
                  args=(sel, kind, key, name), help="Hidden at once; it can be undone until it is purged")
    ui.show_outcome(f"delete:{kind}:{key}")


def _undo(sel: ui.Selection, kind: str, key: str, name: str) -> None:
    _attempt(f"undo:{kind}", kind, lambda: lifecycle.undo(sel.store, sel.who, kind, key),
             f"{KIND_LABEL.get(kind, kind)} {markdown_literal(name)} is back.")


def undo_notice(sel: ui.Selection, kinds: tuple[str, ...] = lifecycle.KINDS) -> None:
    """"NAME deleted, undo" for what this person deleted (or, an admin, anyone) of these kinds and may still undo
    (until the purge after Settings.undo_seconds); nothing when there is none."""
    try:
        items = [t for t in lifecycle.trash(sel.store, sel.who) if t.kind in kinds]
    except RecipeError as e:
        ui.show_error(e)
        return
    for kind in kinds:
        ui.show_outcome(f"undo:{kind}")
    for item in items[:MAX_UNDO_SHOWN]:
        left = item.deleted_at + sel.settings.undo_seconds - time.time()
        until = f"within {_hours(left)}, then a purge removes it" if left > 0 else "until the next purge"
        by = "" if item.deleted_by == sel.who.name else f" by {markdown_literal(item.deleted_by)}"
        c = st.columns([6, 1], vertical_alignment="center")
        c[0].warning(f"{KIND_LABEL.get(item.kind, item.kind)} **{markdown_literal(item.name)}** deleted{by}, undo "
                     f"{until}.", icon=":material/delete:")
        c[1].button("Undo", key=f"lc_undo:{item.kind}:{item.key}", icon=":material/undo:", on_click=_undo,
                    args=(sel, item.kind, item.key, item.name))
    if len(items) > MAX_UNDO_SHOWN:
        st.caption(f"and {len(items) - MAX_UNDO_SHOWN:,} more deleted; the CLI's `undo` brings back any of them.")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


# -- studies and learning curves: groups of runs ------------------------------------------------------------------
def archived_groups(runs: list[RunRecord], kind: str) -> set[str]:
    """Of these runs' studies (or curves), those whose runs are all archived (lifecycle.archived_groups over a
    page's runs, not the whole store)."""
    prefix = lifecycle.GROUP_TAGS[kind]
    state: dict[str, bool] = {}
    for run in runs:
        for tag in run.tags:
            if tag.startswith(prefix):
                state[tag[len(prefix):]] = state.get(tag[len(prefix):], True) and run.archived
    return {key for key, all_archived in state.items() if all_archived}


def group_controls(sel: ui.Selection, kind: str, key: str, runs: list[RunRecord]) -> None:
    """Archive and delete a study or a learning curve (all its runs at once), for its owner (the one author of its
    runs, as lifecycle decides) or an admin; nothing while it has no runs yet."""
    members = [r for r in runs if lifecycle.GROUP_TAGS[kind] + key in r.tags]
    if not members:
        return
    owner = lifecycle.group_owner(members)
    if not allowed(sel, owner, f"archive or delete this {KIND_LABEL[kind].lower()}"):
        return
    c = st.columns([1, 5])
    with c[0]:
        archive_toggle(sel, kind, key, all(r.archived for r in members), owner)
    with c[1]:
        delete_button(sel, kind, key, key, owner)
