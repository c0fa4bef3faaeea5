"""Tune page (not built yet)."""
import streamlit as st

import ui

sel = ui.sidebar()
st.title("Tune")
st.info("Step 4 of the recipe: regularization, random search and ensembles to squeeze out the last bit. It is coming next; the Data page is ready now.")
