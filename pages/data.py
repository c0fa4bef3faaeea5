"""Data page: add a dataset and become one with it (recipe step 1).

Profile, histograms, the target, data-quality warnings and the rows, all computed by DuckDB over the snapshot.
Its owner (or an admin) shares, renames, archives or deletes it here.
"""
from __future__ import annotations

import streamlit as st

import ui
from views import data as views
from views import lifecycle

sel = ui.sidebar()
st.title("Data")

writer = ui.may_write_or_say(sel, "upload datasets")
if writer:
    with st.expander("Add a dataset", expanded=sel.record is None, icon=":material/upload:"):
        views.add_dataset(sel)
views.flash()
lifecycle.undo_notice(sel, ("dataset",))
views.show_archived_toggle(sel)
if sel.record is None:
    st.info("Upload a file above to start." if writer else "No dataset is shared with you yet.")
    st.stop()

views.header(sel.record)
views.manage(sel)
view = views.pick_view()
{"Overview": views.overview, "Columns": views.columns_grid, "Target": views.target_view, "Rows": views.rows}[view](sel)
