"""Label page: hand-label a fixed sample of the validation split for a human baseline (recipe step 2).

Keyboard first: number keys pick a class (and move on), Right goes on, Left goes back, S skips. A label counts
once the store has it, and only then does the page say so.
"""
from __future__ import annotations

import streamlit as st

import ui
from recipe_core.errors import RecipeError
from recipe_core.labelling import labels, progress
from views import label as views

sel = ui.sidebar()
st.title("Label")
if sel.record is None or not sel.target:
    st.info("Pick a dataset and the target column in the sidebar: you will label a fixed sample of its validation "
            "rows.")
    st.stop()
if not sel.who.name:  # single-user mode only: a signed-in person always has a name
    st.info("Type your name in the sidebar first: each person labels on their own, and the page keeps your place.")
    st.stop()
# A viewer never labels, so never finishes the sample, and labels are blind: nothing here is theirs to read.
if not ui.may_write_or_say(sel, "label (others' labels stay hidden until you have labelled the sample yourself)"):
    st.stop()
me = labels.annotator_name(sel.who.name)
try:
    base = ui.label_baseline(sel)
except RecipeError as e:
    ui.show_error(e)
    st.stop()

events = sel.store.label_events(sel.record.id, sel.target)
own = progress.progress(base, events, me)
pos_key = views.place(sel, me, own)
hidden = views.header(sel, me, own)
pos = st.session_state[pos_key]
views.item_view(sel, base, own, pos, hidden)
views.answer(sel, base, me, pos_key, base.items[pos])

# -- results: yours now, everyone's once you have finished ------------------------------------------------------
st.divider()
summary = labels.summary(base, events)
views.your_score(base, events, me, summary)
if not own.finished:
    st.caption(f"Others' labels stay hidden until you finish ({own.done} / {own.n_items}).")
    st.stop()
views.human_baseline(sel, base, events, summary)
views.export_import(sel, base, me, events)
