"""Train page (not built yet)."""
import streamlit as st

import ui

sel = ui.sidebar()
st.title("Train")
st.info("Step 2 of the recipe: a fixed seed and split, dumb baselines first, and the sanity checks (loss at init, input-independent twin, overfit one batch, batch independence). It is coming next; the Data page is ready now.")
