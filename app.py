"""Recipe: the neural-network training recipe as a workbench. Entry point: navigation only.

Nothing a page needs may come from here (see DESIGN.md): each page renders its own sidebar through ui.sidebar().
"""
import streamlit as st

st.set_page_config(page_title="Recipe", layout="wide")
st.navigation(
    [
        st.Page("pages/data.py", title="Data", icon=":material/table_view:", default=True),
        st.Page("pages/label.py", title="Label", icon=":material/edit_note:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/stacked_line_chart:"),
        st.Page("pages/tune.py", title="Tune", icon=":material/tune:"),
        st.Page("pages/team.py", title="Team", icon=":material/group:"),
    ]
).run()
