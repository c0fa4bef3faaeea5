"""Train page: the fixed split, dumb baselines first, and the recipe's sanity checks (recipe step 2).

Training runs in its own process; this page starts it, polls the store and can cancel it.
"""
from __future__ import annotations

import streamlit as st

import ui
from views import train

sel = ui.sidebar()
st.title("Train")
if sel.record is None or not sel.target:
    st.info("Pick a dataset and the target column to predict in the sidebar.")
    st.stop()

picked = train.task_and_split(sel)  # None: the target cannot be learned as that task (its error is shown)
if picked is None:
    st.stop()
task_choice, task = picked
exclude = train.feature_columns(sel)
if ui.may_write_or_say(sel, "start runs"):
    train.new_run_form(sel, task_choice, exclude)
shown_status = train.leaderboard(sel, task)

run = train.shown_run(sel)
if run is None:
    st.stop()
st.toggle("Log-scale loss axis", key="train_log_y")
# Always a fragment (so its elements are replaced, not duplicated, when the run ends); it polls only while active.
st.fragment(run_every=train.POLL_S if run.active else None)(train.live)(sel, run.id, shown_status)
if run.status != "finished":
    st.stop()

train.next_steps(run)
train.checks(sel, run)
train.validation_metrics(sel, run)
tabs = st.tabs(train.TABS)
with tabs[0]:
    train.first_batch(sel, run)
with tabs[1]:
    train.predictions_over_training(sel, run)
with tabs[2]:
    train.top_losses(sel, run)
with tabs[3]:
    train.overfit_one_batch(run)
with tabs[4]:
    train.capacity_ladder(run)
with tabs[5]:
    st.json(run.config)
