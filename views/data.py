"""The Data page's views: adding a dataset, its overview and warnings, the histograms, the target, the rows."""
from __future__ import annotations

import streamlit as st

import ui
from recipe_core import figures
from recipe_core.data import browse, ingest
from recipe_core.data import rows as dataset_rows
from recipe_core.data.filters import OPS, Filter, RowQuery
from recipe_core.data.profile import profile_table
from recipe_core.data.records import KINDS, VISIBILITIES, DatasetRecord
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access, lifecycle
from recipe_core.units import ceil_div
from views import lifecycle as lifecycle_views

VIEWS = ["Overview", "Columns", "Target", "Rows"]
EXPORT_MAX_ROWS = 1_000_000  # the download is built in the server's memory
HISTOGRAMS_PER_PAGE = 12
ROW_PARAM = "row"
ROW_URL = "data_row_url"  # (dataset id, row id text) this page last put in the URL
FLASH = "flash"
FLASH_ERROR = "flash_error"
VISIBILITY_LABEL = {"private": "private to its owner", "shared": "shared with the team"}


# -- add a dataset ---------------------------------------------------------------------------------
def add_dataset(sel: ui.Selection) -> None:
    """The upload form (members and admins; the page says why to a viewer). In team mode the uploader chooses
    who sees it, private by default; in single-user mode there is no one to hide it from."""
    with st.form("upload", clear_on_submit=True, border=False):
        upload = st.file_uploader(
            "Upload CSV, TSV, Parquet, JSON, JSON Lines or Excel (.xlsx); gzip-compressed text works too",
            key="upload_file",
            max_upload_size=max(1, ceil_div(sel.settings.max_upload_bytes, 2**20)),
        )
        name = st.text_input("Name (optional)", max_chars=200, key="upload_name")
        visibility = "shared"
        if sel.who.team:
            visibility = st.radio("Who sees it", VISIBILITIES, index=VISIBILITIES.index("private"), horizontal=True,
                                  key="upload_visibility", format_func=VISIBILITY_LABEL.get)
        submitted = st.form_submit_button("Add dataset", type="primary")
    if submitted and upload is not None:
        try:
            with st.spinner(f"Reading {markdown_literal(upload.name)}…"):
                record = ingest.ingest_bytes(
                    sel.settings, sel.store, upload, source_name=upload.name, name=name.strip() or None,
                    owner=sel.who.name, visibility=visibility,
                )
                record = lifecycle.claim_upload(sel.store, sel.who, record)
        except RecipeError as e:
            ui.show_error(e)
            return
        finally:
            ui.catalog_changed()
        ui.select_dataset(record.id)
        st.session_state[FLASH] = (f"Added '{markdown_literal(record.name)}': {record.n_rows:,} rows, "
                                   f"{len(record.columns):,} columns.")
        st.rerun()


def flash() -> None:
    """What the last action did (or why it did not), said once after the rerun it caused."""
    if FLASH in st.session_state:
        st.success(st.session_state.pop(FLASH))
    if FLASH_ERROR in st.session_state:
        ui.show_error(RecipeError(st.session_state.pop(FLASH_ERROR)))


def header(record: DatasetRecord) -> None:
    owner = f"owned by {markdown_literal(record.owner)}" if record.owner else "a sample, owned by no one"
    st.caption(
        f"**{markdown_literal(record.name)}** · {record.n_rows:,} rows · {len(record.columns):,} columns · "
        f"{record.fmt} from {markdown_literal(record.source_name)} · added {record.created_at} · {owner} · "
        f"{VISIBILITY_LABEL[record.visibility]}" + (" · archived" if record.archived else "")
    )
    for note in record.notes:  # they quote the file's column names
        st.warning(markdown_literal(note), icon=":material/info:")


def pick_view() -> str:
    opens_a_row = st.query_params.get(ROW_PARAM) is not None  # a link to one row, e.g. from a top-loss example
    view = st.segmented_control("View", VIEWS, default="Rows" if opens_a_row else "Overview", required=True,
                                key="data_view", label_visibility="collapsed")
    return view or "Overview"


# -- overview: warnings first, then the profile of every column -------------------------------------
def overview(sel: ui.Selection) -> None:
    try:
        profile = ui.profile(sel)
    except RecipeError as e:
        ui.show_error(e)
        return
    st.subheader("Data-quality checks")
    if not profile.warnings:
        st.success("No warnings: no duplicates, missing values, constant or ID-like columns, zeros that stand apart, "
                   "NaN/inf, outliers"
                   + (", imbalance or leakage." if sel.target else ". Pick a target for imbalance and leakage."))
    for kind, found in browse.by_kind(profile.warnings).items():
        if len(found) == 1:
            w = found[0]
            column = "" if w.column is None else f" · {markdown_literal(w.column)}"
            st.warning(f"**{kind}**{column}: {markdown_literal(w.message)}")
        else:
            with st.expander(f"**{kind}** in {len(found)} columns", icon=":material/warning:"):
                st.dataframe({"column": [w.column for w in found], "finding": [w.message for w in found]},
                             hide_index=True, width="stretch")
    st.subheader("Every column")
    st.dataframe(profile_table(profile), hide_index=True, width="stretch")
    _override_kind(sel)


def _override_kind(sel: ui.Selection) -> None:
    """A column's type changes what everyone who uses the dataset sees: an admin's, or the owner's of a private
    dataset (access.may_change_types)."""
    if not access.may_change_types(sel.who, sel.record):
        st.caption("Column types of a shared dataset are changed by an admin (the owner may change them while it "
                   "is private).")
        return
    with st.form("override_kind", border=False):
        st.markdown("**Change how a column is treated**")
        left, right, go = st.columns([3, 2, 1], vertical_alignment="bottom")
        column = left.selectbox("Column", sel.record.column_names, key="override_column")
        kind = right.selectbox("Treat as", KINDS, key="override_kind")
        if go.form_submit_button("Apply"):
            try:
                lifecycle.set_column_kind(sel.store, sel.who, sel.record.id, column, kind)
            except RecipeError as e:
                ui.show_error(e)
            else:
                ui.catalog_changed()
                st.rerun()


# -- columns: a grid of histograms ------------------------------------------------------------------
def columns_grid(sel: ui.Selection) -> None:
    record = sel.record
    names = record.column_names
    picked = st.multiselect("Only these columns", names, placeholder="all columns")
    names = picked or names
    n_pages = browse.n_pages(len(names), HISTOGRAMS_PER_PAGE)
    page_no = st.pagination(n_pages, key="columns_page") if n_pages > 1 else 1
    kinds = {c.name: c.kind for c in record.columns}
    grid = st.columns(3)
    for i, name in enumerate(names[(page_no - 1) * HISTOGRAMS_PER_PAGE : page_no * HISTOGRAMS_PER_PAGE]):
        with grid[i % 3]:
            try:
                hist = ui.histogram(sel, name)
            except RecipeError as e:
                ui.show_error(e)
                continue
            st.plotly_chart(figures.histogram_figure(hist, name, kinds[name]), key=f"hist_{i}")


# -- target: its balance, and each feature against it ------------------------------------------------
def target_view(sel: ui.Selection) -> None:
    if sel.target is None:
        st.info("Pick a target column in the sidebar to see its balance and each feature against it.")
        return
    task = ui.task(sel)
    st.caption(f"{markdown_literal(sel.target)} looks like a **{task}** target.")
    if task == "classification":
        counts = ui.value_counts(sel, sel.target)
        st.plotly_chart(figures.class_balance_figure(counts, sel.target))
        if len(counts) > 1:
            st.caption(f"{len(counts)} classes · imbalance ratio (largest / smallest class) "
                       f"{browse.imbalance_ratio(counts['count'].tolist()):.3g}")
    else:
        st.plotly_chart(figures.target_distribution_figure(ui.histogram(sel, sel.target), sel.target))
    features = [c for c in sel.record.column_names if c != sel.target]
    if not features:
        return
    feature = st.selectbox("Feature", features, key="target_feature")
    try:
        rel = ui.target_relation(sel, feature, task)
    except RecipeError as e:
        ui.show_error(e)
        return
    st.plotly_chart(figures.target_relation_figure(rel, feature, sel.target, task))


# -- rows: filter, search, sort, page, sample, extremes, detail, export --------------------------------
# The selection is a row id (state["selected"], mirrored in the URL's `row`), never a grid position: the grid is
# keyed by what it shows, so a position can only be read against the rows it was clicked on.
def rows(sel: ui.Selection) -> None:
    record, db = sel.record, ui.db(sel)
    state = st.session_state.setdefault(f"rows:{record.id}", {"filters": []})
    _follow_row_link(record, state)
    _filters(db, record, state)
    c1, c2, c3, c4 = st.columns([3, 3, 1.5, 2], vertical_alignment="bottom")
    search = c1.text_input("Search text columns", max_chars=1000, key=f"search:{record.id}")
    sort_options = [None, *record.column_names]
    sort = c2.selectbox("Sort by", sort_options, format_func=lambda c: "file order" if c is None else c,
                        key=f"sort:{record.id}")
    descending = c3.toggle("Descending", key=f"desc:{record.id}")
    mode = c4.segmented_control("Mode", ["Pages", "Random sample"], default="Pages", required=True,
                                key=f"mode:{record.id}")
    with st.expander("Expert: WHERE expression", icon=":material/code:"):
        where = st.text_area(
            "A SQL expression over the columns (quote names with spaces in double quotes)",
            placeholder='"mean radius" > 15 AND diagnosis = \'benign\'',
            max_chars=5000,
            key=f"where:{record.id}",
        )
    with st.expander("Show extremes", icon=":material/unfold_more:"):
        e1, e2, e3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        ext_col = e1.selectbox("Column", record.column_names, key="extremes_column")
        extremes = None
        if e2.button("Smallest"):
            extremes = (ext_col, False)
        if e3.button("Largest"):
            extremes = (ext_col, True)

    page_size = browse.PAGE_SIZE
    page_key = f"page:{record.id}"
    seed = None
    if mode == "Random sample":
        seed = st.number_input("Sample seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    # A new query (filters, WHERE, search, sort, mode, seed) starts again at its first page with nothing selected.
    query = (tuple(state["filters"]), where.strip(), search.strip(), sort, descending, seed)  # DEFAULT_QUERY's shape
    if extremes is not None or ("query" in state and state["query"] != query):
        st.session_state[page_key] = 1
        state["selected"] = None
        state.pop("extremes", None)
    state["query"] = query
    if extremes is not None:  # kept while the query stays, so a click in that table reads that table
        state["extremes"] = extremes
    q = RowQuery(
        filters=query[0],
        where=query[1],
        search=query[2],
        sort=sort,
        descending=descending,
        limit=page_size,
        offset=(st.session_state.get(page_key, 1) - 1) * page_size,
        sample_seed=seed,
    )
    try:
        if "extremes" in state:
            ext_col, largest = state["extremes"]
            shown_rows = dataset_rows.extremes(db, ext_col, n=page_size, largest=largest)
            n_total = len(shown_rows)
            st.caption(f"The {'largest' if largest else 'smallest'} values of {markdown_literal(ext_col)}")
            if st.button("Back to the matching rows", icon=":material/arrow_back:"):
                state.pop("extremes")
                state["selected"] = None
                _sync_row_param(record, state)
                st.rerun()
        else:
            result = dataset_rows.page(db, q)
            shown_rows, n_total = result.rows, result.n_total
            st.caption(f"{n_total:,} matching rows · {result.seconds * 1000:.0f} ms")
    except RecipeError as e:
        ui.show_error(e)
        _sync_row_param(record, state)
        return
    n_pages = browse.n_pages(n_total, page_size)
    if st.session_state.get(page_key, 1) > n_pages:  # e.g. a page that no longer exists after a reload
        st.session_state[page_key] = 1
        st.rerun()

    shown = _grid(record, state, shown_rows, browse.grid_key(record.id, query, state.get("extremes"), q.offset))
    if seed is None and n_pages > 1 and "extremes" not in state:
        p1, p2 = st.columns([4, 1], vertical_alignment="bottom")
        with p1:
            st.pagination(n_pages, key=page_key)
        p2.number_input("Go to page", 1, n_pages, value=None, key=f"jump:{record.id}",
                        on_change=_jump, args=(f"jump:{record.id}", page_key))
    too_many = n_total > EXPORT_MAX_ROWS
    st.download_button(
        "Download matching rows (CSV)",
        data=lambda: dataset_rows.export_csv(db, q),
        file_name=f"{record.name}-rows.csv",
        mime="text/csv",
        icon=":material/download:",
        disabled=too_many,
        help=f"Narrow the rows to at most {EXPORT_MAX_ROWS:,} to download them." if too_many else None,
    )
    if state.get("selected") is not None:
        row_detail(db, state["selected"], in_view=state["selected"] in shown)


def _filters(db, record: DatasetRecord, state: dict) -> None:
    """The form that adds a filter, and one button per filter that removes it."""
    # No clear_on_submit: Enter in the value box submits the form, so a second press of the button must find the
    # same filter (refused as a repeat below) rather than an empty box that "needs a value".
    with st.form("add_filter", border=False):
        c1, c2, c3, c4 = st.columns([3, 2, 3, 1], vertical_alignment="bottom")
        f_col = c1.selectbox("Filter column", record.column_names, key="filter_column")
        f_op = c2.selectbox("Operator", OPS, key="filter_op")
        f_val = c3.text_input("Value", max_chars=1000, key="filter_value")
        if c4.form_submit_button("Add filter"):
            new = Filter(f_col, f_op, None if f_op in browse.NO_VALUE_OPS else f_val)
            if new in state["filters"]:
                st.info(f"Already filtering on {markdown_literal(browse.filter_text(new))}.", icon=":material/check:")
            else:
                try:  # refuse a bad filter here, so it never sticks and breaks the view
                    dataset_rows.count(db, RowQuery(filters=(new,)))
                except RecipeError as e:
                    ui.show_error(e)
                else:
                    state["filters"].append(new)
    for i, f in enumerate(state["filters"]):
        if st.button(f"✕ {markdown_literal(browse.filter_text(f))}", key=f"rm_filter_{i}",
                     help="Remove this filter"):
            state["filters"].pop(i)
            st.rerun()


def _grid(record: DatasetRecord, state: dict, shown_rows, grid_key: str) -> list[int]:
    """The rows table; a click selects that row (by id), a second click on it clears the selection."""
    shown = [int(i) for i in shown_rows.index]
    selected = state.get("selected")
    default = {"selection": {"rows": [shown.index(selected)]}} if selected in shown else None
    picked = st.dataframe(shown_rows.rename_axis("row"), on_select="rerun", selection_mode="single-row",
                          key=grid_key, width="stretch", hide_index=False, selection_default=default)
    chosen = [i for i in (picked.selection.rows if picked is not None else []) if 0 <= i < len(shown)]
    if chosen and shown[chosen[0]] != selected:  # a click on another row of this very table
        state["selected"] = shown[chosen[0]]
    elif not chosen and state.get("seen") == (grid_key, True):  # the selected row was clicked again: cleared
        state["selected"] = None
    state["seen"] = (grid_key, bool(chosen))
    _sync_row_param(record, state)
    return shown


def _follow_row_link(record: DatasetRecord, state: dict) -> None:
    """A `row` in the URL that this page did not put there is a link to that row: select it, and open its page."""
    row = browse.linked_row(st.query_params.get(ROW_PARAM), st.session_state.get(ROW_URL), record.id)
    if row is None:
        return
    state["selected"] = row  # text that is no row id: row_detail says there is no such row
    state["seen"] = None
    page = browse.page_holding(row, record.n_rows, state.get("query", browse.DEFAULT_QUERY))
    if page is not None:
        st.session_state[f"page:{record.id}"] = page


def _sync_row_param(record: DatasetRecord, state: dict) -> None:
    selected = state.get("selected")
    text = None if selected is None else str(selected)
    ui.sync_query_params({} if text is None else {ROW_PARAM: text}, owned=(ROW_PARAM,))
    st.session_state[ROW_URL] = (record.id, text)


def _jump(jump_key: str, page_key: str) -> None:
    if st.session_state[jump_key] is not None:
        st.session_state[page_key] = int(st.session_state[jump_key])
        st.session_state[jump_key] = None


def row_detail(db, row_id, in_view: bool = True) -> None:
    try:
        values = dataset_rows.row(db, int(row_id))
    except (RecipeError, ValueError):
        st.error(f"No row {markdown_literal(repr(row_id))} in this dataset.")  # row_id may come from the URL
        return
    st.subheader(f"Row {int(row_id):,}")
    if not in_view:
        st.caption("Not among the rows shown above.")
    st.dataframe({"column": list(values), "value": browse.detail_values(values)}, hide_index=True, width="stretch")


# -- who sees it, and its lifecycle ------------------------------------------------------------------------
def show_archived_toggle(sel: ui.Selection) -> None:
    """Archived datasets leave the sidebar's picker; this brings them back (the sidebar reads the plain key)."""
    if not any(r.archived for r in ui.visible_catalog(sel.who, sel.store.url)):
        return
    st.session_state["w_show_archived"] = bool(st.session_state.get(ui.SHOW_ARCHIVED))
    st.toggle("Show archived datasets in the sidebar", key="w_show_archived", on_change=_copy_show_archived)


def _copy_show_archived() -> None:
    st.session_state[ui.SHOW_ARCHIVED] = st.session_state["w_show_archived"]


def _set_visibility(sel: ui.Selection, visibility: str) -> None:
    try:
        lifecycle.set_visibility(sel.store, sel.who, sel.record.id, visibility)
    except RecipeError as e:
        st.session_state[FLASH_ERROR] = str(e)
        return
    ui.catalog_changed()
    st.session_state[FLASH] = f"Now {VISIBILITY_LABEL[visibility]}."


def manage(sel: ui.Selection) -> None:
    """Its owner or an admin shares or unshares it, renames, archives or deletes it (undoable: see the page's
    "deleted, undo" line); nothing here for anyone else."""
    record = sel.record
    if not access.may_change(sel.who, record.owner):
        return
    with st.expander("Manage this dataset", icon=":material/settings:"):
        if sel.who.team:  # in single-user mode there is no one to hide it from
            other = "shared" if record.visibility == "private" else "private"
            st.button("Share with the team" if other == "shared" else "Make it private to its owner",
                      key="data_visibility", icon=":material/group:" if other == "shared" else ":material/lock:",
                      on_click=_set_visibility, args=(sel, other),
                      help="Private: only its owner and admins see it, and its runs, labels and studies")
        lifecycle_views.rename_box(sel, "dataset", record.id, record.name, record.owner)
        c = st.columns(2)
        with c[0]:
            lifecycle_views.archive_toggle(sel, "dataset", record.id, record.archived, record.owner)
        with c[1]:
            lifecycle_views.delete_button(sel, "dataset", record.id, record.name, record.owner)
