"""Data page: add a dataset and become one with it (recipe step 1).

Profile, histograms, the target, data-quality warnings and the rows, all computed by DuckDB over the snapshot.
"""
from __future__ import annotations

import streamlit as st

import ui
from views import data as views

sel = ui.sidebar()
st.title("Data")

with st.expander("Add a dataset", expanded=sel.record is None, icon=":material/upload:"):
    views.add_dataset(sel)
views.flash()
if sel.record is None:
    st.info("Upload a file above to start.")
    st.stop()

views.header(sel.record)
view = views.pick_view()
{"Overview": views.overview, "Columns": views.columns_grid, "Target": views.target_view, "Rows": views.rows}[view](sel)
