"""Team page (admins): who has which role, the audit trail of who did what, the trash with its undo, and the
purge that removes deleted runs and datasets for good. Anyone else reads one line saying it is for admins.
"""
from __future__ import annotations

import streamlit as st

import ui
from recipe_core.tracking import access
from views import team

sel = ui.sidebar()
st.title("Team")
if not access.may_manage_users(sel.who):
    team.not_an_admin(sel)
    st.stop()

team.mode_note(sel)
team.people(sel)
team.audit_trail(sel)
team.trash(sel)
team.purge(sel)
