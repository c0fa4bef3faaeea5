"""The Compare page's views: the runs table, editing a run, the chart and its controls, what changed, notes,
importing runs."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

import ui
from recipe_core.compare import comparison, reports
from recipe_core.compare.chart import ChartSpec
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access
from recipe_core.tracking.records import Comment, RunRecord, new_id
from views import lifecycle

VIEW = "cmp_view"  # plain session key: the view (survives a visit to another page; mirrored in the URL)
RUNS = "cmp_runs"  # widget: the runs on the chart
PENDING = "cmp_pending_runs"
IMPORTED = "cmp_imported"  # the message of an import, shown after the rerun that puts its runs on the chart
SHOW_ARCHIVED = "cmp_archived"  # widget: archived runs in the table too
AXES = {"step": "step", "epoch": "epoch", "wall_time": "wall time"}
SMOOTHING = {"none": "none", "ema": "EMA", "window": "moving window"}
BANDS = {"minmax": "min-max", "std": "± std"}
CHART_WIDGETS = ("cmp_metric", "cmp_x", "cmp_logx", "cmp_logy", "cmp_smooth", "cmp_ema", "cmp_window", "cmp_color",
                 "cmp_group", "cmp_band", "cmp_best")


def no_runs_hint() -> None:
    st.info("No runs yet. Train one on the Train page, log one from a script "
            "(`import recipe_core as rc; with rc.start_run(name=..., config={...}) as run: run.log(step, loss=...)`), "
            "or import TensorBoard or Lightning logs below.")


def set_runs(ids: list[str]) -> None:
    """Before the runs widget is drawn (buttons above it, callbacks); after it, use PENDING and rerun."""
    st.session_state[RUNS] = list(dict.fromkeys(ids))


def open_view(by_id: dict[str, RunRecord]) -> comparison.View:
    """The view this visit draws: a link's, else this session's; warns about linked runs this store lacks."""
    linked = reports.linked_view(st.query_params.to_dict(), st.session_state.get(VIEW))
    if linked is not None:
        st.session_state[VIEW] = linked
        st.session_state[RUNS] = [i for i in linked.runs if i in by_id]
        for key in CHART_WIDGETS:  # let the widgets start from the new view
            st.session_state.pop(key, None)
    view: comparison.View = st.session_state[VIEW]
    st.session_state.setdefault(RUNS, [i for i in view.runs if i in by_id])
    # a run deleted (or hidden) since it was charted leaves the chart quietly; one named by a link is warned about
    st.session_state[RUNS] = [i for i in st.session_state[RUNS] if i in by_id]
    for missing in [i for i in view.runs if i not in by_id] if linked is not None else []:
        st.warning(f"Run {markdown_literal(missing)} from the link is not in this store (deleted, hidden from you, "
                   "or another store).")
    if PENDING in st.session_state:
        set_runs(st.session_state.pop(PENDING))
    return view


def runs_table(all_runs: list[RunRecord], summaries: dict, dataset_names: dict[str, str]) -> None:
    """Filters, ranking and the table of every run (archived ones when asked for); a selected row, top N or 'chart
    all' puts runs on the chart."""
    n_archived = sum(r.archived for r in all_runs)
    if not st.session_state.get(SHOW_ARCHIVED):
        all_runs = [r for r in all_runs if not r.archived]
    frame = reports.with_checks(comparison.runs_frame(all_runs, summaries, dataset_names), all_runs)
    n_runs = len(frame)
    keys = comparison.metric_keys(frame)
    with st.expander("Filter runs", expanded=False):
        c = st.columns(4)
        text = c[0].text_input("Search", placeholder="name, hypothesis, tag, config…", key="cmp_search",
                               max_chars=200)
        choices = {name: sorted(frame[name].dropna().unique().tolist()) if name in frame else []
                   for name in ("status", "model", "author", "source", "dataset", "target")}
        tags = sorted({t for r in all_runs for t in r.tags})
        picked = {name: c[1 + i % 3].multiselect(name.capitalize(), choices[name], key=f"cmp_f_{name}")
                  for i, name in enumerate(choices)}
        picked_tags = c[0].multiselect("Tags", tags, key="cmp_f_tags")
        c = st.columns(4)
        ranks = ["(none)"] + keys
        rank_metric = c[0].selectbox("Rank by metric (its best value)", ranks, key="cmp_rank",
                                     index=ranks.index("val_loss") if "val_loss" in ranks else 0)
        lo = c[1].number_input("at least", value=None, key="cmp_lo", format="%g")
        hi = c[2].number_input("at most", value=None, key="cmp_hi", format="%g")
        top_n = c[3].number_input("Top N", min_value=1, max_value=1000, value=5, key="cmp_topn")
        # a pick stays an option after its last red run went (deleted, archived): a widget value must be offered
        reds = list(dict.fromkeys([*reports.red_check_names(all_runs), *st.session_state.get("cmp_f_red", [])]))
        red = st.multiselect("Runs with a red check", reds, key="cmp_f_red", disabled=not reds,
                             placeholder="pick checks" if reds else "no run has a red check",
                             help="Only runs where any of these checks failed (FAIL)")
    # before the other filters, so that top N ranks only these runs too
    frame = reports.keep_red(frame, {r.id: r.checks for r in all_runs}, red)
    run_filter = comparison.RunFilter(
        text=text, tags=tuple(picked_tags), metric="" if rank_metric == "(none)" else rank_metric, lo=lo, hi=hi,
        **{name: tuple(values) for name, values in picked.items()})
    try:
        shown = comparison.filter_runs(frame, run_filter, {r.id: r.config for r in all_runs})
    except RecipeError as e:
        ui.show_error(e)
        shown = frame.iloc[:0]

    b = st.columns([1, 1, 1, 2, 1])
    if b[0].button(f"Top {top_n} by {markdown_literal(run_filter.metric or 'a metric')}",
                   disabled=not run_filter.metric, help="Pick a metric to rank by in the filters"):
        set_runs(comparison.filter_runs(frame, replace(run_filter, top_n=int(top_n)))["id"].tolist())
    if b[1].button("Chart all shown", disabled=shown.empty):
        set_runs(shown["id"].tolist()[: comparison.MAX_URL_RUNS])
    if b[2].button("Clear chart", disabled=not st.session_state[RUNS]):
        set_runs([])
    b[3].caption(f"{len(shown):,} of {n_runs:,} runs · select rows to chart them")
    b[4].toggle(f"Show archived ({n_archived:,})", key=SHOW_ARCHIVED, disabled=not n_archived and
                not st.session_state.get(SHOW_ARCHIVED), help="Archived runs are off the table and leaderboards; "
                "nothing of them is deleted")

    def rows_selected() -> None:
        set_runs(shown["id"].iloc[st.session_state["cmp_table"].selection.rows].tolist())

    columns = reports.table_columns(shown.columns, keys, reports.focus_metric(run_filter.metric, keys))
    st.dataframe(shown[columns], key="cmp_table", on_select=rows_selected, selection_mode="multi-row",
                 hide_index=True, width="stretch", height=300,
                 column_config={"created": st.column_config.TextColumn("created (UTC)"),
                                "checks": st.column_config.TextColumn(width="large")})  # red names, untruncated


def edit_run(sel: ui.Selection, all_runs: list[RunRecord], dataset_names: dict[str, str]) -> None:
    """One run picked (the first charted one, else none until the person picks: the table mixes datasets, and a
    default from another one got the wrong run deleted in a walk): its name, tags and hypothesis, archive, delete;
    above, what this person deleted and may undo. Ensembles are runs and get the same. Nothing for who may not."""
    lifecycle.undo_notice(sel, kinds=("run",))
    editable = [r for r in all_runs if access.may_change(sel.who, r.author)]
    if not editable:
        if all_runs:
            st.caption(f"You are a {sel.who.role}: a run is changed by its author or an admin"
                       + (", and you have no run of your own here." if access.may_write(sel.who) else "."))
        return
    by_id = {r.id: r for r in editable}
    charted = [i for i in st.session_state.get(RUNS, []) if i in by_id]
    with st.expander("Edit a run: rename, tags and hypothesis, archive, delete",
                     icon=":material/edit:"):
        def label(i: str) -> str:
            r = by_id[i]
            where = f"{dataset_names.get(r.dataset_id, 'no dataset')} / {r.target}" if r.dataset_id else "no dataset"
            return f"{r.name} · {r.model} · {where} · {i[:6]}" + (" · archived" if r.archived else "")

        picked = st.selectbox("Run", list(dict.fromkeys([*charted, *reversed(by_id)])), key="cmp_edit_pick",
                              index=0 if charted else None, placeholder="pick the run to change",
                              format_func=label,
                              help="The runs you may change (yours; an admin: every run); charted ones first")
        if picked not in by_id:
            return
        run = by_id[picked]
        st.caption(f"{markdown_literal(label(run.id))} · by {markdown_literal(run.author or 'no one')} · "
                   f"{markdown_literal(run.status)} · id `{run.id}`")
        lifecycle.rename_box(sel, "run", run.id, run.name, run.author)
        lifecycle.tags_and_hypothesis(sel, run, sorted({t for r in all_runs for t in r.tags}))
        c = st.columns(2)
        with c[0]:
            lifecycle.archive_toggle(sel, "run", run.id, run.archived, run.author)
        with c[1]:
            lifecycle.delete_button(sel, "run", run.id, run.name, run.author)


def chart_controls(by_id: dict[str, RunRecord], view: comparison.View, summaries: dict) -> tuple[list, ChartSpec]:
    """The runs on the chart and how to draw them; the result is the session's view, mirrored in the URL."""
    st.multiselect("Runs on the chart", list(by_id), key=RUNS, max_selections=comparison.MAX_URL_RUNS,
                   format_func=lambda i: f"{by_id[i].name} · {by_id[i].model} · {i[:6]}")
    chosen = [by_id[i] for i in st.session_state[RUNS] if i in by_id]
    logged = sorted({k for r in chosen for k in summaries.get(r.id, {})})
    points = {k: max(getattr(summaries.get(r.id, {}).get(k), "n", 0) for r in chosen) for k in logged}
    spec = replace(view.spec, metric=reports.chart_metric(view.spec.metric, logged, points))

    c = st.columns([2, 3, 4, 2])
    metric = c[0].selectbox("Metric", logged or [spec.metric], index=(logged or [spec.metric]).index(spec.metric),
                            key="cmp_metric")
    x = c[1].segmented_control("x axis", list(AXES), format_func=AXES.get, default=spec.x, key="cmp_x") or "step"
    smoothing = c[2].segmented_control("Smoothing", list(SMOOTHING), format_func=SMOOTHING.get,
                                       default=spec.smoothing, key="cmp_smooth") or "none"
    if smoothing == "ema":
        ema_weight = c[3].slider("EMA weight", 0.0, 0.99, spec.ema_weight, 0.01, key="cmp_ema",
                                 help="Debiased at the start, like TensorBoard; applied after downsampling")
        window = spec.window
    else:
        window = int(c[3].number_input("Window (points)", 1, 10_000, spec.window, key="cmp_window",
                                       disabled=smoothing != "window"))
        ema_weight = spec.ema_weight
    colour_choices = ["run"] + reports.config_keys(chosen)
    c = st.columns([1, 1, 3, 2, 2, 2])
    log_x = c[0].toggle("log x", value=spec.log_x, key="cmp_logx")
    log_y = c[1].toggle("log y", value=spec.log_y, key="cmp_logy")
    color_by = c[2].selectbox("Colour by", colour_choices,
                              index=colour_choices.index(spec.color_by) if spec.color_by in colour_choices[1:] else 0,
                              key="cmp_color")
    group_seeds = c[3].toggle("Group seeds", value=spec.group_seeds, key="cmp_group",
                              help="Runs that differ only in their seed: their mean and a band")
    band = c[4].segmented_control("Band", list(BANDS), format_func=BANDS.get, default=spec.band, key="cmp_band",
                                  disabled=not group_seeds) or "minmax"
    show_best = c[5].toggle("Best point", value=spec.show_best, key="cmp_best")
    spec = ChartSpec(metric=metric, x=x, log_x=log_x, log_y=log_y, smoothing=smoothing, ema_weight=ema_weight,
                     window=window, color_by=color_by, group_seeds=group_seeds, band=band, show_best=show_best)
    st.session_state[VIEW] = view = comparison.View(runs=tuple(r.id for r in chosen), spec=spec)
    ui.sync_query_params(comparison.view_to_params(view), comparison.URL_KEYS)
    return chosen, spec


def chart(sel: ui.Selection, chosen: list[RunRecord], spec: ChartSpec) -> None:
    """The curves; redrawn every 2 s while a charted run is still running."""
    live = any(r.active for r in chosen)
    st.fragment(_curves, run_every=2.0 if live else None)(sel, chosen, spec)


def _curves(sel: ui.Selection, chosen: list[RunRecord], spec: ChartSpec) -> None:
    if not chosen:
        st.info("Select runs in the table (or top N) to chart them.")
        return
    try:
        span = ui.x_extent(sel, [r.id for r in chosen], spec.metric, spec.x)
        if span and span[1] > span[0]:
            lo, hi = st.slider("Visible range (downsampled within it)", span[0], span[1], span,
                               key=f"cmp_range:{spec.metric}:{spec.x}")
            if (lo, hi) != span:
                spec = replace(spec, x_range=(lo, hi))
        fig, counts = ui.comparison_figure(sel, [r.id for r in chosen], spec)
    except RecipeError as e:
        ui.show_error(e)
        return
    st.plotly_chart(fig, width="stretch", key="cmp_chart")
    st.caption(f"{counts['shown']:,} of {counts['total']:,} points shown (min/max-preserving downsampling: "
               "spikes stay visible; exports have every point)")
    if any(r.active for r in chosen):
        now = {r.id: sel.store.get_run(r.id).status for r in chosen}
        if any(now[r.id] != r.status for r in chosen):  # one ended, or its process died (lost): redraw the page
            st.rerun(scope="app")
        st.caption("Live: a selected run is still running; the chart refreshes every 2 s.")


def exports(sel: ui.Selection, chosen: list[RunRecord], spec: ChartSpec) -> None:
    e = st.columns(4)
    ids = [r.id for r in chosen]
    e[0].download_button("Histories (CSV)", lambda: _histories_export(sel, ids, "csv"), "histories.csv", "text/csv",
                         disabled=not chosen, help="Every stored point of every metric of the charted runs")
    e[1].download_button("Histories (Parquet)", lambda: _histories_export(sel, ids, "parquet"),
                         "histories.parquet", disabled=not chosen)
    e[2].download_button("Figure (HTML)", lambda: _figure_export(sel, ids, spec, "html"), f"{spec.metric}.html",
                         "text/html", disabled=not chosen, help="Standalone: opens without a network")
    e[3].download_button("Figure (PNG)", lambda: _figure_export(sel, ids, spec, "png"), f"{spec.metric}.png",
                         "image/png", disabled=not chosen)


def _histories_export(sel: ui.Selection, run_ids: list[str], fmt: str) -> bytes:
    """Every stored point of every metric of these runs (never downsampled)."""
    summaries = sel.store.metric_summaries(run_ids)
    keys = sorted({k for per_run in summaries.values() for k in per_run})
    frame = comparison.histories_frame(comparison.selected_runs(sel.store, run_ids),
                                       comparison.load_histories(sel.store, run_ids, keys))
    return comparison.export_bytes(frame, fmt)


def _figure_export(sel: ui.Selection, run_ids: list[str], spec: ChartSpec, fmt: str) -> bytes:
    fig, _ = ui.comparison_figure(sel, run_ids, spec)
    return comparison.figure_bytes(fig, fmt)


def what_changed(chosen: list[RunRecord], by_id: dict[str, RunRecord], summaries: dict,
                 dataset_names: dict[str, str]) -> None:
    """The config keys that differ between the charted runs; for a run with a parent, its change and what it did."""
    st.subheader("What changed and what it did")
    if len(chosen) >= 2:
        diff = comparison.config_diff(chosen, dataset_names)
        if diff.empty:
            st.caption("The charted runs have the same config: differences between them are noise.")
        else:
            st.dataframe(diff, hide_index=True, width="stretch")
    for run in chosen:
        if not run.parent_id:
            continue
        parent = by_id.get(run.parent_id)
        if parent is None:
            st.warning(f"{markdown_literal(run.name)}: its parent run {markdown_literal(run.parent_id)} is not in "
                       "this store.")
            continue
        change = comparison.change_from_parent(run, parent, summaries, dataset_names)
        with st.container(border=True):
            st.markdown(f"**{markdown_literal(run.name)}** from **{markdown_literal(parent.name)}**"
                        + (f" · hypothesis: _{markdown_literal(change.hypothesis)}_" if change.hypothesis else ""))
            if change.flagged:
                st.warning(change.flagged, icon=":material/flag:")
            for key, (old, new) in change.changed.items():
                st.markdown(f"- {markdown_literal(key)}: {markdown_literal(old)} → {markdown_literal(new)}")
            if change.deltas:
                st.dataframe(comparison.deltas_frame(change), hide_index=True, width="stretch")
    if not chosen:
        st.caption("Chart two or more runs to see the config keys that differ; a run logged with a parent shows its "
                   "one change and the metric delta.")
    elif len(chosen) == 1 and not chosen[0].parent_id:
        st.caption("Chart a second run to see what differs, or log a run with a parent (and a hypothesis).")


def notes(sel: ui.Selection, chosen: list[RunRecord], by_id: dict[str, RunRecord]) -> None:
    """The team's notes on the charted runs, and a form to add one."""
    st.subheader("Notes")
    if not chosen:
        st.caption("Chart runs to read and add notes; everyone using this store sees them.")
        return
    ids = [r.id for r in chosen]
    found = sel.store.comments(ids)
    for note in found:
        st.markdown(f"**{markdown_literal(note.author)}** on _{markdown_literal(by_id[note.run_id].name)}_ · "
                    f"{reports.note_time(note.at)}")
        st.text(note.text)
    if not found:
        st.caption("No notes on the charted runs yet.")
    if not ui.may_write_or_say(sel, "add notes"):
        return
    with st.form("cmp_note", clear_on_submit=True, border=False):
        on = st.selectbox("On run", ids, format_func=lambda i: by_id[i].name, key="cmp_note_run")
        body = st.text_area("Note", max_chars=5000, key="cmp_note_text",
                            placeholder="what you saw, what you will try next")
        if st.form_submit_button("Add note"):
            if not sel.who.name:  # single-user mode before a name is typed; signed in, the name is the sign-in's
                st.error("Type your name in the sidebar first: notes carry their author.")
            elif not body.strip():
                st.error("The note is empty.")
            else:
                sel.store.add_comment(Comment(new_id(), on, sel.who.name, body.strip()))
                st.rerun()


def import_runs(sel: ui.Selection) -> None:
    """A zip of TensorBoard or Lightning logs becomes runs, put on the chart."""
    st.subheader("Import runs")
    if not ui.may_write_or_say(sel, "import runs"):
        return
    st.caption("A zip of TensorBoard event directories or PyTorch Lightning CSVLogger logs "
               "(`<name>/<version>/metrics.csv` and `hparams.yaml`). Each directory becomes a run named after its "
               "path.")
    upload = st.file_uploader("Logs (.zip)", type=["zip"], key="cmp_upload")
    if upload is not None and st.button("Import", key="cmp_import"):
        from recipe_core.tracking import importers  # only when importing: it loads TensorBoard's reader

        try:
            imported = importers.import_zip(sel.store, upload.getvalue(), author=sel.who.name or None,
                                            max_bytes=sel.settings.max_upload_bytes)
        except RecipeError as e:
            ui.show_error(e)
        else:
            ui.runs_changed()
            fresh, n_already = reports.imported_names(imported)
            st.session_state[IMPORTED] = (f"Imported {len(fresh)} run(s): "
                                          + ", ".join(markdown_literal(name) for name in fresh)
                                          + (f"; {n_already} already here" if n_already else "")
                                          + ". They are on the chart.")
            st.session_state[PENDING] = [r["run_id"] for r in imported]
            st.rerun()  # the table and the chart above must show them
    if IMPORTED in st.session_state:
        st.success(st.session_state.pop(IMPORTED), icon=":material/check_circle:")
