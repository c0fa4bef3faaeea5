"""The only Streamlit-aware helper: the shared sidebar (who is working, and on what), cached getters over
recipe_core, session keys.

The selection (dataset, target) lives in plain session keys, copied there in each widget's on_change and
mirrored in st.query_params, so a page works on its own (deep link, AppTest switch_page) and a shared URL
opens the same view. Who is working comes from Streamlit's sign-in when the secrets configure it (team mode),
else from the name typed in the sidebar (single-user mode).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from recipe_core.compare import comparison
from recipe_core.compare.reports import Outcome, outcome
from recipe_core.config import Settings, load_settings
from recipe_core.data import distributions, ingest
from recipe_core.data import profile as data_profile
from recipe_core.data.db import DatasetDB
from recipe_core.data.records import DatasetRecord
from recipe_core.data.target import task_of
from recipe_core.errors import RecipeError, first_line
from recipe_core.labelling import labels
from recipe_core.safetext import check_text, markdown_literal, storable
from recipe_core.tracking import access, users
from recipe_core.tracking.store import Store
from recipe_core.training import dataset

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"

# Plain session keys (widget keys are dropped by Streamlit on pages where the widget is absent).
DATASET = "sel_dataset"
TARGET = "sel_target"
AUTHOR = "sel_author"
AUTHOR_ERROR = "sel_author_error"
AUTHOR_PARAM = "author"  # single-user mode: the typed name rides in the URL, so a reload or a new tab keeps it
SHOW_ARCHIVED = "sel_show_archived"  # set by the Data page's toggle; the sidebar offers archived datasets then
AUTH_SECTION = "auth"  # the secrets section that configures st.login (see the README's team section)
SINGLE_USER_CAPTION = ("single-user mode: everyone who reaches this server acts as you (see the README to sign a "
                       "team in)")


@dataclass(frozen=True)
class Selection:
    settings: Settings
    store: Store
    record: DatasetRecord | None
    target: str | None
    author: str = ""  # who.name: the signed-in user, else the name typed in the sidebar
    who: access.Identity = access.single_user("")


# -- cached getters -----------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


@st.cache_resource(show_spinner="Registering the sample datasets…")
def _samples_registered(home: str, url: str) -> bool:
    ingest.ensure_samples(load_settings(), _store(url), SAMPLE_DIR)
    return True


# A few seconds old at most: the CLI or another server may unshare, delete or rename a dataset, and who sees what
# must follow soon without a restart.
@st.cache_data(show_spinner=False, ttl=5.0)
def _catalog(url: str) -> list[DatasetRecord]:
    return _store(url).list_datasets()


@st.cache_resource(show_spinner=False, max_entries=8)
def _db(home: str, dataset_id: str, kinds: tuple, _settings: Settings, _record: DatasetRecord) -> DatasetDB:
    # Keyed by the kinds too: overriding a column's type rebuilds the view.
    return DatasetDB(_settings, _record)


def _db_key(sel: Selection) -> tuple:
    r = sel.record
    return (str(sel.settings.home), r.id, tuple(c.kind for c in r.columns))


def db(sel: Selection) -> DatasetDB:
    return _db(*_db_key(sel), sel.settings, sel.record)


@st.cache_data(show_spinner="Profiling every column…", max_entries=32)
def _profile(key: tuple, target: str | None, _db: DatasetDB):
    return data_profile.profile(_db, target)


@st.cache_data(show_spinner=False, max_entries=512)
def _histogram(key: tuple, column: str, _db: DatasetDB):
    return distributions.histogram(_db, column)


@st.cache_data(show_spinner=False, max_entries=64)
def _value_counts(key: tuple, column: str, _db: DatasetDB):
    return distributions.value_counts(_db, column)


@st.cache_data(show_spinner=False, max_entries=64)
def _target_relation(key: tuple, feature: str, target: str, task: str, _db: DatasetDB):
    return distributions.target_relation(_db, feature, target, task)


@st.cache_data(show_spinner=False, max_entries=64)
def _task(key: tuple, target: str, _db: DatasetDB) -> str:
    return task_of(_db, target)


def profile(sel: Selection):
    return _profile(_db_key(sel), sel.target, db(sel))


def histogram(sel: Selection, column: str):
    return _histogram(_db_key(sel), column, db(sel))


def value_counts(sel: Selection, column: str):
    return _value_counts(_db_key(sel), column, db(sel))


def target_relation(sel: Selection, feature: str, task: str):
    return _target_relation(_db_key(sel), feature, sel.target, task, db(sel))


def task(sel: Selection) -> str:
    return _task(_db_key(sel), sel.target, db(sel))


@st.cache_data(show_spinner="Reading the split…", max_entries=64)
def _split_overview(key: tuple, target: str, task: str | None, _sel: Selection):
    return dataset.split_overview(_sel.settings, _sel.store, _sel.record, target, task)


@st.cache_data(show_spinner=False, max_entries=64)
def _feature_plan(key: tuple, target: str, _sel: Selection):
    return dataset.feature_plan(_sel.settings, _sel.record, target)


def split_overview(sel: Selection, task: str | None = None):
    """(task, split, summary table) of the selected dataset and target; the split is persisted on first use."""
    return _split_overview(_db_key(sel), sel.target, task, sel)


def feature_plan(sel: Selection):
    return _feature_plan(_db_key(sel), sel.target, sel)


@st.cache_data(show_spinner="Drawing the labelling sample…", max_entries=32)
def _label_baseline(key: tuple, target: str, n: int, _sel: Selection):
    return labels.baseline(_sel.settings, _sel.store, _sel.record, target, n)


def label_baseline(sel: Selection, n: int = labels.DEFAULT_N):
    """The fixed labelling sample of the selected dataset and target (the same for everyone)."""
    return _label_baseline(_db_key(sel), sel.target, n, sel)


@st.cache_data(show_spinner=False, max_entries=256)
def _finished_artifact(url: str, run_id: str, name: str):
    return _store(url).get_json(run_id, name)


def run_artifact(sel: Selection, run, name: str):
    """A run's stored view (batch, dynamics, ...); cached once the run has ended, since it cannot change then."""
    if run.active:
        return sel.store.get_json(run.id, name)
    return _finished_artifact(sel.store.url, run.id, name)


# -- runs on the Compare page ----------------------------------------------------------------------
@st.cache_data(show_spinner=False, ttl=2.0)
def _metric_summaries(url: str) -> dict:
    return _store(url).metric_summaries()


def metric_summaries(sel: Selection) -> dict:
    """{run_id: {metric: MetricSummary}} of every run; at most 2 s old, so live runs move on the page."""
    return _metric_summaries(sel.store.url)


def runs_changed() -> None:
    """Call after runs were added (an import): the table must show them at once."""
    _metric_summaries.clear()


@st.cache_resource(show_spinner="Reading the histories…", max_entries=8)
def _histories(url: str, run_ids: tuple, metric: str, fields: tuple, version: tuple) -> dict:
    return _store(url).histories(list(run_ids), metric, fields)


def histories(sel: Selection, run_ids: list[str], metric: str, x: str) -> dict:
    """Every stored point of one metric of these runs (the fields a chart against x needs), read again only when
    a run logged more points."""
    summaries = metric_summaries(sel)
    version = tuple(getattr(summaries.get(i, {}).get(metric), "n", 0) for i in run_ids)
    return _histories(sel.store.url, tuple(run_ids), metric, comparison.fields_for(x), version)


def x_extent(sel: Selection, run_ids: list[str], metric: str, x: str) -> tuple[float, float] | None:
    """The range of the x axis over these runs' points (wall time: seconds since each run's first point)."""
    return comparison.x_extent(histories(sel, run_ids, metric, x), x)


@st.cache_data(show_spinner=False, ttl=10.0, max_entries=32)
def _references(url: str, run_ids: tuple, metric: str, _settings: Settings) -> dict:
    # Not redrawn per rerun: the human line reads the dataset and the labelling sample
    return comparison.references(_settings, _store(url), comparison.selected_runs(_store(url), list(run_ids)), metric)


def comparison_figure(sel: Selection, run_ids: list[str], spec):
    fig, counts, _ = comparison.figure(
        sel.settings, sel.store, run_ids, spec, histories=histories(sel, run_ids, spec.metric, spec.x),
        reference_lines=_references(sel.store.url, tuple(run_ids), spec.metric, sel.settings))
    return fig, counts


def sync_query_params(params: dict[str, str], owned: tuple[str, ...]) -> None:
    """Make the URL carry exactly these of the page's own keys (other keys, like the dataset, are left alone)."""
    for key in owned:
        if key in st.query_params and key not in params:
            del st.query_params[key]
    for key, value in params.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def catalog_changed() -> None:
    """Call after any write to the catalog: the one cache that depends on it."""
    _catalog.clear()


OUTCOMES = "sel_outcomes"  # {area: (ok, message)}: what a callback did, shown once where its widget is


def say_later(area: str, ok: bool, message: str) -> None:
    """From a callback: the outcome the widget's area shows on this rerun (a success, or a one-line error).
    The message is markdown: its caller escapes what a person typed."""
    st.session_state.setdefault(OUTCOMES, {})[area] = (ok, message)


def show_outcome(area: str) -> None:
    outcome = st.session_state.get(OUTCOMES, {}).pop(area, None)
    if outcome is None:
        return
    ok, message = outcome
    if ok:
        st.success(message, icon=":material/check_circle:")
    else:
        show_error(RecipeError(message))


def show_error(error: RecipeError) -> None:
    st.error(markdown_literal(error), icon=":material/error:")  # messages quote the values they refuse


# Material icons, not emoji, which a browser without an emoji font shows as boxes.
_OUTCOME_MARKUP = {Outcome.PASS: ":green[:material/check_circle: pass]", Outcome.FAIL: ":red[:material/cancel: FAIL]",
                   Outcome.NA: ":gray[:material/remove: n/a]"}


def verdict_badge(ok: bool | None) -> str:
    """A check's outcome (True, False, or None where it does not apply) as coloured markdown."""
    return _OUTCOME_MARKUP[outcome(ok)]


# -- who is working ---------------------------------------------------------------------------------
def team_mode() -> bool:
    """Sign-in is configured: the secrets hold an [auth] section (st.secrets reads .streamlit/secrets.toml on a
    server; a test sets AppTest.secrets). Raises RecipeError when a secrets file exists but cannot be read:
    falling back to single-user mode would let every visitor in as an admin."""
    secrets = st.secrets
    if secrets.load_if_toml_exists():
        return AUTH_SECTION in secrets
    unreadable = [p for p in st.get_option("secrets.files") if os.path.exists(p)]
    if unreadable:
        raise RecipeError(f"the secrets file {unreadable[0]} could not be read (see the server log), so sign-in "
                          "is not set up; fix it and restart the server")
    return False


def _signed_in_name() -> str | None:
    """The signed-in person's name as st.user carries it: the email, unless the provider says it is unverified
    (anyone could then claim a teammate's address), else the subject; None when nobody is signed in."""
    user = st.user
    if not user.get("is_logged_in"):
        return None
    email = user.get("email")
    name = email if email and user.get("email_verified") is not False else user.get("sub")
    if not name:
        raise RecipeError("your sign-in carries neither an email nor a subject: ask the operator to request the "
                          "'openid email' scopes from the provider")
    return users.checked_name(str(name))


def _login() -> None:
    try:
        st.login()
    except Exception as e:  # StreamlitAuthError: an [auth] section the operator has not finished
        st.session_state[AUTHOR_ERROR] = f"sign-in failed: {first_line(e)}"


def _sign_in_gate() -> None:
    """Team mode, nobody signed in: one line and the sign-in button, nothing of any data."""
    st.markdown("**Recipe** is shared by a team: sign in to see its datasets and runs.")
    st.button("Sign in", type="primary", icon=":material/login:", on_click=_login, key="sign_in")
    if AUTHOR_ERROR in st.session_state:
        show_error(RecipeError(st.session_state.pop(AUTHOR_ERROR)))
    st.stop()


def _team_identity(the_store: Store) -> access.Identity:
    """Team mode: the signed-in person with the role an operator gave them; stops the page when nobody is."""
    try:
        name = _signed_in_name()
    except RecipeError as e:
        show_error(e)
        st.button("Sign out", on_click=st.logout, key="sign_out_broken")
        st.stop()
    if name is None:
        _sign_in_gate()
    who = users.identity(the_store, name)
    st.sidebar.caption(f"Signed in as {markdown_literal(who.name)} · {who.role}")
    st.sidebar.button("Sign out", icon=":material/logout:", on_click=st.logout, key="sign_out")
    return who


def _checked_author(value) -> str:
    """A typed or linked name as the store can hold it: one line of at most MAX_NAME_CHARS, no NUL (BadInput)."""
    return " ".join(storable(check_text(value, "your name", labels.MAX_NAME_CHARS)).split())


def author_param(sel: Selection) -> dict[str, str]:
    """What a link the app builds adds so the page it opens knows who is working (single-user mode only: a
    signed-in person is known by their sign-in, never by a link)."""
    return {AUTHOR_PARAM: sel.who.name} if sel.who.name and not sel.who.team else {}


def _set_author() -> None:
    try:
        st.session_state[AUTHOR] = _checked_author(st.session_state["w_author"])
    except RecipeError as e:  # the box goes back to the last good name
        st.session_state[AUTHOR_ERROR] = str(e)


def _author_input() -> str:
    """Single-user mode: the name typed in the sidebar, kept in the URL across reloads."""
    if AUTHOR not in st.session_state:  # a fresh session (reload, new tab): the name the URL carries
        st.session_state[AUTHOR] = ""
        try:
            st.session_state[AUTHOR] = _checked_author(st.query_params.get(AUTHOR_PARAM, ""))
        except RecipeError as e:
            st.session_state[AUTHOR_ERROR] = f"the name in the link was not used: {e}"
    st.session_state["w_author"] = st.session_state[AUTHOR]
    st.text_input("Your name", key="w_author", max_chars=labels.MAX_NAME_CHARS, on_change=_set_author,
                  placeholder="shown on your runs and labels; kept in the page's address")
    if AUTHOR_ERROR in st.session_state:
        show_error(RecipeError(st.session_state.pop(AUTHOR_ERROR)))
    st.caption(SINGLE_USER_CAPTION)
    return st.session_state[AUTHOR]


def may_write_or_say(sel: Selection, what: str) -> bool:
    """Whether this person may write (upload, label, train, tune, comment); if not, one caption saying why."""
    if access.may_write(sel.who):
        return True
    st.caption(f"You are a {sel.who.role}: ask an admin for the member role to {what}.")
    return False


# -- the shared sidebar ---------------------------------------------------------------------------
def select_dataset(dataset_id: str) -> None:
    st.session_state[DATASET] = dataset_id
    st.session_state[TARGET] = None


def _copy_widget(widget_key: str, session_key: str) -> None:
    st.session_state[session_key] = st.session_state[widget_key]
    if session_key == DATASET:
        st.session_state[TARGET] = None


def visible_catalog(who: access.Identity, store_url: str) -> list[DatasetRecord]:
    """The datasets this person may see (deleted ones never; archived ones too: callers decide to offer them)."""
    return access.visible_datasets(who, _catalog(store_url))


def sidebar() -> Selection:
    """Who is working, the dataset and target pickers (on every page); returns the selection. In team mode a
    visitor who has not signed in sees the sign-in button and nothing else."""
    st.set_page_config(page_title="Recipe", layout="wide")  # also when a deep link runs a page without app.py
    try:
        cfg = load_settings()
        team = team_mode()
    except RecipeError as e:  # e.g. RECIPE_MAX_UPLOAD_MB=lots: say so instead of a traceback
        show_error(e)
        st.stop()
    the_store = _store(cfg.store_url)
    st.sidebar.markdown("**Recipe** · the training recipe, step by step")
    # Before the catalog: nothing of any data reaches a visitor who has not signed in.
    if team:
        who = _team_identity(the_store)
    else:
        with st.sidebar:
            who = access.single_user(_author_input())
    try:
        _samples_registered(str(cfg.home), cfg.store_url)
    except RecipeError as e:  # a broken sample must not take the app down
        st.sidebar.warning(f"Sample data not registered: {markdown_literal(e)}")
    seen = {r.id: r for r in visible_catalog(who, cfg.store_url)}

    # First run of a session: take the selection from the URL. A dataset this person may not see (or a deleted
    # one) is refused in one line, nothing of it shown, rather than quietly swapped for another.
    if DATASET not in st.session_state:
        from_url = st.query_params.get("dataset")
        if from_url and from_url not in seen:
            st.error(access.HIDDEN_DATASET.capitalize() + ".", icon=":material/block:")
            st.stop()
        st.session_state[DATASET] = from_url
        st.session_state[TARGET] = st.query_params.get("target")
    # Archived datasets are offered when asked for, and the one already open stays (a link to it still works).
    offered = {i: r for i, r in seen.items()
               if not r.archived or st.session_state.get(SHOW_ARCHIVED) or i == st.session_state[DATASET]}
    if st.session_state[DATASET] not in offered:  # none yet, or it was hidden, deleted or archived meanwhile
        st.session_state[DATASET] = next(iter(offered), None)
        st.session_state[TARGET] = None
    record = offered.get(st.session_state[DATASET])

    with st.sidebar:
        if record is None:
            st.caption("No dataset yet: add one on the Data page.")
            target = None
        else:
            # The plain key is the truth; the widget mirrors it (the widget's own key may be gone or stale).
            st.session_state["w_dataset"] = record.id
            st.selectbox(
                "Dataset",
                list(offered),
                format_func=lambda i: offered[i].name + (" (archived)" if offered[i].archived else ""),
                key="w_dataset",
                on_change=_copy_widget,
                args=("w_dataset", DATASET),
            )
            columns = record.column_names
            target = st.session_state.get(TARGET)
            if target not in columns:
                target = None
            st.session_state["w_target"] = target
            st.selectbox(
                "Target column",
                columns,
                index=None,
                placeholder="none (pick the column to predict)",
                key="w_target",
                on_change=_copy_widget,
                args=("w_target", TARGET),
            )
            st.caption(f"{record.n_rows:,} rows · {len(columns):,} columns · id `{record.id}`")
        st.session_state[TARGET] = target

    params = {"dataset": record.id} if record else {}
    if target:
        params["target"] = target
    if who.name and not who.team:  # a signed-in person's name never rides in the URL
        params[AUTHOR_PARAM] = who.name
    for key in ("dataset", "target", AUTHOR_PARAM):
        if key in st.query_params and key not in params:
            del st.query_params[key]
    for key, value in params.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    return Selection(settings=cfg, store=the_store, record=record, target=target, author=who.name, who=who)
