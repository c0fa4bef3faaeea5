"""Compare page (not built yet)."""
import streamlit as st

import ui

sel = ui.sidebar()
st.title("Compare")
st.info("Step 3 of the recipe: loss curves of many runs side by side, what changed between runs and what it did, shared with a team. It is coming next; the Data page is ready now.")
