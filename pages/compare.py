"""Compare page: loss curves of many runs side by side, what changed between runs and what it did, shared with a
team through one store (recipe step 3). The view lives in the URL, so a copied link shows a teammate the same chart.
"""
from __future__ import annotations

import streamlit as st

import ui
from recipe_core.tracking import access
from views import checks
from views import compare as views

sel = ui.sidebar()
st.title("Compare")

datasets = sel.store.list_datasets()  # soft-deleted ones are gone, and their runs with them
all_runs = access.visible_runs(sel.who, sel.store.list_runs(), datasets)  # archived ones too: a link may name one
if not all_runs:
    views.no_runs_hint()
by_id = {r.id: r for r in all_runs}
dataset_names = {d.id: d.name for d in access.visible_datasets(sel.who, datasets)}
summaries = ui.metric_summaries(sel)
view = views.open_view(by_id)

views.runs_table(all_runs, summaries, dataset_names)
views.edit_run(sel, all_runs, dataset_names)
chosen, spec = views.chart_controls(by_id, view, summaries)
views.chart(sel, chosen, spec)
views.exports(sel, chosen, spec)
checks.compare_section(sel, chosen)
views.what_changed(chosen, by_id, summaries, dataset_names)
views.notes(sel, chosen, by_id)
views.import_runs(sel)
