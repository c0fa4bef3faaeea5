"""Label page (not built yet)."""
import streamlit as st

import ui

sel = ui.sidebar()
st.title("Label")
st.info("Step 2 of the recipe: hand-label a fixed sample of the validation set for a human baseline, with notes on what you looked at and agreement between teammates. It is coming next; the Data page is ready now.")
