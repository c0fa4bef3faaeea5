"""The only Streamlit-aware helper: the shared sidebar, cached getters over recipe_core, session keys.

The selection (dataset, target) lives in plain session keys, copied there in each widget's on_change and
mirrored in st.query_params, so a page works on its own (deep link, AppTest switch_page) and a shared URL
opens the same view.
"""
from __future__ import annotations

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
from recipe_core.errors import RecipeError
from recipe_core.labelling import labels
from recipe_core.safetext import check_text, markdown_literal, storable
from recipe_core.tracking.store import Store
from recipe_core.training import dataset

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"

# Plain session keys (widget keys are dropped by Streamlit on pages where the widget is absent).
DATASET = "sel_dataset"
TARGET = "sel_target"
AUTHOR = "sel_author"
AUTHOR_ERROR = "sel_author_error"
AUTHOR_PARAM = "author"  # the typed name rides in the URL, so a reload or a new tab keeps it (until sign-in)


@dataclass(frozen=True)
class Selection:
    settings: Settings
    store: Store
    record: DatasetRecord | None
    target: str | None
    author: str = ""  # the signed-in user, else the name typed in the sidebar


# -- cached getters -----------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


@st.cache_resource(show_spinner="Registering the sample datasets…")
def _samples_registered(home: str, url: str) -> bool:
    ingest.ensure_samples(load_settings(), _store(url), SAMPLE_DIR)
    return True


@st.cache_data(show_spinner=False)
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


def show_error(error: RecipeError) -> None:
    st.error(markdown_literal(error), icon=":material/error:")  # messages quote the values they refuse


# Material icons, not emoji, which a browser without an emoji font shows as boxes.
_OUTCOME_MARKUP = {Outcome.PASS: ":green[:material/check_circle: pass]", Outcome.FAIL: ":red[:material/cancel: FAIL]",
                   Outcome.NA: ":gray[:material/remove: n/a]"}


def verdict_badge(ok: bool | None) -> str:
    """A check's outcome (True, False, or None where it does not apply) as coloured markdown."""
    return _OUTCOME_MARKUP[outcome(ok)]


def _signed_in_user() -> str:
    try:  # st.user.is_logged_in exists only when authentication is configured
        if st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "")
    except (AttributeError, KeyError):
        pass
    return ""


def _checked_author(value) -> str:
    """A typed or linked name as the store can hold it: one line of at most MAX_NAME_CHARS, no NUL (BadInput)."""
    return " ".join(storable(check_text(value, "your name", labels.MAX_NAME_CHARS)).split())


def author_param(sel: Selection) -> dict[str, str]:
    """What a link the app builds adds so the page it opens knows who is working (nothing once signed in)."""
    return {AUTHOR_PARAM: sel.author} if sel.author and not _signed_in_user() else {}


def _set_author() -> None:
    try:
        st.session_state[AUTHOR] = _checked_author(st.session_state["w_author"])
    except RecipeError as e:  # the box goes back to the last good name
        st.session_state[AUTHOR_ERROR] = str(e)


def _author_input() -> str:
    user = _signed_in_user()
    if user:
        st.caption(f"Signed in as {markdown_literal(user)}")
        return user
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
    return st.session_state[AUTHOR]


# -- the shared sidebar ---------------------------------------------------------------------------
def select_dataset(dataset_id: str) -> None:
    st.session_state[DATASET] = dataset_id
    st.session_state[TARGET] = None


def _copy_widget(widget_key: str, session_key: str) -> None:
    st.session_state[session_key] = st.session_state[widget_key]
    if session_key == DATASET:
        st.session_state[TARGET] = None


def sidebar() -> Selection:
    """Render the dataset and target pickers (on every page) and return the selection."""
    st.set_page_config(page_title="Recipe", layout="wide")  # also when a deep link runs a page without app.py
    try:
        cfg = load_settings()
    except RecipeError as e:  # e.g. RECIPE_MAX_UPLOAD_MB=lots: say so instead of a traceback
        show_error(e)
        st.stop()
    the_store = _store(cfg.store_url)
    try:
        _samples_registered(str(cfg.home), cfg.store_url)
    except RecipeError as e:  # a broken sample must not take the app down
        st.sidebar.warning(f"Sample data not registered: {markdown_literal(e)}")
    records = _catalog(cfg.store_url)
    by_id = {r.id: r for r in records}

    # First run of a session: take the selection from the URL, if it names something real.
    if DATASET not in st.session_state:
        from_url = st.query_params.get("dataset")
        st.session_state[DATASET] = from_url if from_url in by_id else None
        st.session_state[TARGET] = st.query_params.get("target")
    if st.session_state[DATASET] not in by_id:
        st.session_state[DATASET] = records[0].id if records else None
        st.session_state[TARGET] = None
    record = by_id.get(st.session_state[DATASET])

    with st.sidebar:
        st.markdown("**Recipe** · the training recipe, step by step")
        if record is None:
            st.caption("No dataset yet: add one on the Data page.")
            target = None
        else:
            ids = list(by_id)
            # The plain key is the truth; the widget mirrors it (the widget's own key may be gone or stale).
            st.session_state["w_dataset"] = record.id
            st.selectbox(
                "Dataset",
                ids,
                format_func=lambda i: by_id[i].name,
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
        author = _author_input()

    params = {"dataset": record.id} if record else {}
    if target:
        params["target"] = target
    if author and not _signed_in_user():
        params[AUTHOR_PARAM] = author
    for key in ("dataset", "target", AUTHOR_PARAM):
        if key in st.query_params and key not in params:
            del st.query_params[key]
    for key, value in params.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    return Selection(settings=cfg, store=the_store, record=record, target=target, author=author)
