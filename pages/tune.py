"""Tune page: regularize one change at a time, see whether more data would help, random search, ensembles
(recipe steps 3 and 4). Every step is a run with its parent and hypothesis, so Compare shows what it did.

Searches and learning curves run in a background process (python -m recipe_core tune / learning-curve) that
drives worker processes or a Dask cluster; this page starts them and polls the store.
"""
from __future__ import annotations

import streamlit as st

import ui
from recipe_core.tracking import access
from views import tune

sel = ui.sidebar()
st.title("Tune")
if sel.record is None or not sel.target:
    st.info("Pick a dataset and the target column to predict in the sidebar.")
    st.stop()
if not access.may_write(sel.who):  # said first: the forms below are there to read, and start nothing
    st.info(f"You are a {sel.who.role}: you can read the searches, curves and ensembles here; starting one needs "
            "the member role (ask an admin).", icon=":material/visibility:")
trained = tune.trained_runs(sel)

tab_new, tab_curve, tab_search, tab_ensemble = st.tabs(
    ["New run from this one", "More data?", "Random search", "Ensembles"])
with tab_new:
    tune.new_run_from_one(sel, trained)
with tab_curve:
    tune.more_data(sel, trained)
with tab_search:
    tune.random_search(sel)
with tab_ensemble:
    tune.ensembles_of_runs(sel, trained)
