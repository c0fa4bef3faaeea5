"""The Tune page's views: a new run from an earlier one, a learning curve, a random search and ensembles, each over
the runs of the sidebar's dataset and target."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import ui
from recipe_core import figures
from recipe_core.compare import comparison, reports
from recipe_core.config import MODELS
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.search import ensembles, learning_curve, tuning
from recipe_core.tracking import access, lifecycle
from recipe_core.tracking.records import RunRecord
from recipe_core.training import jobs, runs
from views import lifecycle as lifecycle_views

POLL_S = 3.0
KNOBS = {  # what "new run from this one" offers per model: (label, step, format)
    "mlp": {"dropout": ("Dropout", 0.05, "%.2f"), "weight_decay": ("Weight decay", 1e-4, "%.6f"),
            "patience": ("Early stopping patience (epochs, 0: off)", 1, "%d"), "batch_size": ("Batch size", 1, "%d"),
            "width": ("Width", 1, "%d"), "depth": ("Depth", 1, "%d"), "lr": ("Learning rate", 1e-4, "%.6f"),
            "epochs": ("Epochs (0: about 2,000 steps)", 1, "%d"), "seed": ("Seed", 1, "%d")},
    "gbm": {"gbm_learning_rate": ("Learning rate", 0.01, "%.4f"), "gbm_max_leaf_nodes": ("Max leaf nodes", 1, "%d"),
            "gbm_iterations": ("Trees", 10, "%d"), "seed": ("Seed", 1, "%d")},
    "linear": {"l2": ("L2 strength", 0.1, "%.6f"), "seed": ("Seed", 1, "%d")},
}
NONE_AS_ZERO = ("patience", "epochs")  # None (off / automatic) is shown and typed as 0


def trained_runs(sel: ui.Selection) -> dict[str, RunRecord]:
    """The runs trained here (Train or Tune) on the sidebar's dataset and target, newest first, by id."""
    return {r.id: r for r in reversed(sel.store.list_runs(sel.record.id, sel.target))
            if r.source == "app" and r.model in MODELS}


def finished_runs(trained: dict[str, RunRecord]) -> list[RunRecord]:
    return [r for r in trained.values() if r.status == "finished"]


def run_label(run: RunRecord) -> str:
    loss = run.metrics.get("val_loss")
    return f"{run.name} · {run.model} · " + (f"val_loss {loss:.4g}" if loss is not None else run.status)


def stable_selectbox(label: str, options: list[str], key: str, wanted: str | None = None, **kwargs) -> str:
    """A selectbox of runs that keeps its choice when runs join its options (newest first): a finished trial must
    not swap the run a person picked. The choice lives in a plain session key (see DESIGN.md's pitfall); wanted,
    a run named in the URL, wins on arrival."""
    kept = f"{key}:kept"
    if wanted in options and st.session_state.get(f"{key}:wanted") != wanted:
        st.session_state[f"{key}:wanted"] = st.session_state[kept] = wanted
    chosen = st.session_state.get(kept)
    picked = st.selectbox(label, options, key=key, index=options.index(chosen) if chosen in options else 0, **kwargs)
    st.session_state[kept] = picked
    return picked


def compare_link(ids: list[str], label: str) -> None:
    st.page_link("pages/compare.py", label=label, icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(ids), "metric": "val_loss"})


def group_owner(sel: ui.Selection, run_ids: list[str]) -> str:
    """Who may stop a search or a learning curve besides an admin: the one author of its runs (as the core
    decides; "" before it has any, or when several people's runs are in it)."""
    wanted = set(run_ids)
    return lifecycle.group_owner([r for r in sel.store.list_runs(sel.record.id, sel.target) if r.id in wanted])


def command_state(sel: ui.Selection, command: jobs.Command | None, what: str) -> jobs.CommandState | None:
    """A background command's state; when it failed, one line with its own error line (it was started from this
    page, or by a teammate: the files live under RECIPE_HOME/jobs)."""
    if command is None:
        return None
    state = jobs.command_state(sel.settings, command)
    if state.status == "failed":
        said = state.error.removeprefix("error:").strip() or f"its process exited with code {state.exit_code}"
        ui.show_error(RecipeError(f"The {what} failed: {said}"))
    elif state.status == "cancelled":
        st.caption(f"The {what} was cancelled.")
    elif state.status == "ended":
        st.caption(f"The {what}'s process has ended; how it ended was not recorded (the server restarted).")
    return state


def nothing_yet(sel: ui.Selection, command: jobs.Command | None, state: jobs.CommandState | None, starting: str,
                none: str, key: str) -> None:
    """Before a background command's first result: "starting" with a Cancel while its process lives; nothing
    more once it ended (command_state said how); the plain "none yet" when no command is known."""
    if state is not None and state.active:
        st.caption(starting)
        if access.may_write(sel.who):  # no run has an author yet; a viewer cancels nothing
            st.button("Cancel", key=key, icon=":material/stop:", on_click=jobs.cancel_command,
                      args=(sel.settings, command))
    elif state is None:
        st.caption(none)


# -- regularize: one change at a time ---------------------------------------------------------------------
def new_run_from_one(sel: ui.Selection, trained: dict[str, RunRecord]) -> None:
    finished = finished_runs(trained)
    if not finished:
        st.info("Train a run on the Train page first; then change one thing at a time here.")
        return
    parent = trained[stable_selectbox("From run", [r.id for r in finished], "tune_parent",
                                      wanted=st.query_params.get("run"), format_func=lambda i: run_label(trained[i]))]
    base = runs.config_from(parent.config)
    values = {}
    cols = st.columns(3)
    for i, (name, (label, step, fmt)) in enumerate(KNOBS.get(parent.model, {}).items()):
        current = getattr(base, name)
        shown = 0 if current is None and name in NONE_AS_ZERO else current
        number = cols[i % 3].number_input(label, value=shown, step=step if isinstance(shown, float) else int(step),
                                          format=fmt, min_value=0 if not isinstance(shown, float) else 0.0,
                                          key=f"new:{parent.id}:{name}")
        values[name] = None if name in NONE_AS_ZERO and number == 0 else number
    plan = ui.feature_plan(sel)
    columns, id_like = plan["column"].tolist(), plan.loc[plan["id_like"], "column"].tolist()
    before = runs.config_json(base)
    excluded = st.multiselect("Columns left out (drop or add one feature group at a time)", columns,
                              default=[c for c in comparison.left_out(before, id_like) if c in columns],
                              key=f"new:{parent.id}:exclude")
    new_config = runs.config_from({**before, **values, "exclude": excluded, "checks": True})
    changed = comparison.new_run_changes(before, runs.config_json(new_config), id_like)
    if not changed:
        st.caption("Change one setting above: the changed keys are listed here, highlighted.")
    for key, (old, new) in changed.items():
        st.markdown(f":orange-background[`{key}`: {markdown_literal(json.dumps(old))} → "
                    f"**{markdown_literal(json.dumps(new))}**]")
    if len(changed) > 1:
        st.warning(f"{len(changed)} things changed: Compare will flag this run, because the metric delta cannot "
                   "be pinned on one of them. Change one thing at a time.", icon=":material/flag:")
    hypothesis = st.text_input("Hypothesis (what should this change do?)", key=f"new:{parent.id}:hypothesis",
                               max_chars=500, placeholder="e.g. dropout 0.2 should close the train/val gap")
    if ui.may_write_or_say(sel, "start runs") and st.button(
            "Start this run", type="primary", disabled=not changed or not hypothesis.strip(), key="tune_new_start",
            help="Needs at least one change and a hypothesis"):
        try:
            child = jobs.submit(sel.settings, sel.store, sel.record, sel.target, new_config, author=sel.who.name,
                                parent_id=parent.id, hypothesis=hypothesis)
        except RecipeError as e:
            ui.show_error(e)
        else:
            st.session_state["tune_started"] = child.id
    if st.session_state.get("tune_started"):
        child_id = st.session_state["tune_started"]
        st.success(f"Started {child_id}: it trains in its own process.", icon=":material/play_arrow:")
        st.page_link("pages/train.py", label="Watch it train", icon=":material/model_training:",
                     query_params={"run": child_id})
        compare_link([parent.id, child_id], "Compare it with its parent")


# -- more data? --------------------------------------------------------------------------------------------
def more_data(sel: ui.Selection, trained: dict[str, RunRecord]) -> None:
    finished = finished_runs(trained)
    if not finished:
        st.info("Train a run first: a learning curve retrains its config on less data.")
        return
    # a curve's own runs are points of a curve, not configs to draw one from
    ids = [r.id for r in finished if not any(t.startswith(learning_curve.TAG) for t in r.tags)]
    source = trained[stable_selectbox("Config of run", ids, "curve_parent",
                                      format_func=lambda i: run_label(trained[i]))]
    c = st.columns(3)
    fractions = c[0].multiselect("Shares of the training rows", [0.1, 0.25, 0.5, 1.0],
                                 default=list(learning_curve.FRACTIONS), format_func=lambda f: f"{f:.0%}",
                                 key="curve_fractions")
    seeds = int(c[1].number_input("Seeds per share", 1, 20, learning_curve.SEEDS, key="curve_seeds"))
    c[2].caption(f"{len(fractions) * seeds} runs, two at a time, each its own process (checks off).")
    if ui.may_write_or_say(sel, "train learning curves") and st.button(
            "Train the learning curve", disabled=not fractions, key="curve_start"):
        learning_curve.start_in_background(sel.settings, source, fractions, seeds, author=sel.who.name)
        st.toast("Learning curve started; its runs appear below as they train.")
    waiting = learning_curve.in_progress(sel.settings, sel.store, source)
    st.fragment(run_every=POLL_S if waiting else None)(curve_results)(sel, source)


def curve_results(sel: ui.Selection, source: RunRecord) -> None:
    driver = learning_curve.background_command(sel.settings, source.id)
    state = command_state(sel, driver, "learning curve")
    lifecycle_views.undo_notice(sel, kinds=("curve",))
    started = learning_curve.curves_of(sel.store, source, st.toggle("Show archived curves", key="curve_archived"))
    here = sel.store.list_runs(source.dataset_id, source.target)
    archived = lifecycle_views.archived_groups(here, "curve")
    if not started:
        nothing_yet(sel, driver, state, "Starting the learning curve…", "No learning curve of this run yet.",
                    "curve_cancel_start")
        return
    curve = st.selectbox("Learning curve", list(started), key="curve_pick",
                         format_func=lambda c: f"started {started[c][:16].replace('T', ' ')} · {c}"
                         + (" · archived" if c in archived else ""))
    lifecycle_views.group_controls(sel, "curve", curve, here)
    frame = learning_curve.table(sel.store, curve)
    done, total = learning_curve.ended(frame), len(frame)
    st.progress(done / max(total, 1), text=f"{done} of {total} runs ended")
    if done < total and access.may_change(sel.who, group_owner(sel, frame["run_id"].tolist())):
        st.button("Stop the learning curve", key="curve_stop", icon=":material/stop:",
                  on_click=learning_curve.request_stop, args=(sel.store, curve, sel.who),
                  help="Cancel its queued and running runs; the finished ones stay")
    logged = [m for m in ("val_loss", "val_accuracy", "val_mae") if m in frame]
    if not logged:  # no run of the curve has finished yet
        st.caption("The curve is drawn as its runs finish; the verdict comes when all have ended.")
        return
    metric = st.segmented_control("Metric", logged, default=logged[0], key="curve_metric", required=True)
    points = learning_curve.summary(frame, metric)
    st.plotly_chart(figures.learning_curve_figure(points, metric), width="stretch", key="curve_chart")
    if done < total:
        st.caption(f"The verdict comes when all {total} runs have ended.")
        return
    not_finished = int((~frame["status"].eq("finished")).sum())
    if not_finished:
        st.caption(f"{not_finished} of {total} runs did not finish (failed, cancelled or lost); the "
                   "curve is drawn from the others.")
    st.markdown(learning_curve.verdict(points, metric))
    st.dataframe(points, hide_index=True, width="stretch")
    compare_link(frame["run_id"].tolist(), "Open the curve's runs on Compare")


# -- random search -----------------------------------------------------------------------------------------
def random_search(sel: ui.Selection) -> None:
    c = st.columns([1, 1, 1, 1])
    model = c[0].selectbox("Model", list(tuning.TUNABLE), key="search_model")
    n_trials = int(c[1].number_input("Trials", 1, tuning.MAX_TRIALS, 30, key="search_trials"))
    sampler = c[2].segmented_control("Sampler", list(tuning.SAMPLERS), default="random", required=True,
                                     key="search_sampler", help="Random by default; grid for comparison; TPE optional")
    seed = int(c[3].number_input("Seed", 0, 2**31 - 1, 0, key="search_seed"))
    c = st.columns([2, 1, 1])
    offered = [name for name, _ in sel.settings.executors]  # listed by the operator: a visitor never types one
    executor = c[0].selectbox("Run trials on", offered, key="search_executor",
                              help="local: worker processes here; the others are the Dask clusters this server's "
                                   "operator listed in RECIPE_EXECUTORS")
    workers = int(c[1].number_input("Trials at a time", 1, 64, 2, key="search_workers"))
    epochs = int(c[2].number_input("MLP epochs per trial (0: auto)", 0, 10_000, 0, key="search_epochs",
                                   disabled=model != "mlp"))
    st.caption("Search space: log = log-uniform, float = uniform, int = integer range, choice = comma-separated "
               f"values. Settings of {model}: {', '.join(tuning.TUNABLE[model])}. Median pruning stops a trial "
               "whose validation loss is worse than the median of earlier trials at the same epoch.")
    rows = search_space(model)
    try:
        space = tuning.space_from_rows(model, rows)
    except RecipeError as e:
        ui.show_error(e)
        space = None
    if space:
        with st.expander(f"Random vs grid for {n_trials} trials: distinct values tried per setting"):
            st.dataframe(tuning.coverage(space, n_trials), hide_index=True)
            st.caption("A grid spends its budget on few values of each setting; random search tries a new value of "
                       "every setting in every trial, so the settings that matter get explored.")
    if ui.may_write_or_say(sel, "start searches") and st.button(
            "Start the search", type="primary", disabled=space is None, key="search_start"):
        try:
            study = tuning.start_study(sel.settings, sel.record, sel.target, model, rows, n_trials=n_trials,
                                       sampler=sampler, seed=seed, executor=executor, workers=workers, epochs=epochs,
                                       author=sel.who.name)
        except RecipeError as e:
            ui.show_error(e)
        else:
            st.session_state["search_study"] = st.session_state["search_pick"] = study  # show the new one
            st.toast(f"Study {markdown_literal(study)} started.")  # the study is named after the dataset
    lifecycle_views.undo_notice(sel, kinds=("study",))
    names = tuning.known_studies(sel.settings, sel.store, sel.record.id, sel.target,  # never those in the trash
                                 include_archived=st.toggle("Show archived studies", key="search_archived"))
    here = sel.store.list_runs(sel.record.id, sel.target)
    archived = lifecycle_views.archived_groups(here, "study")
    if not names:
        st.caption("No study on this dataset and target yet.")
        return
    if st.session_state.get("search_pick") not in names:  # set when a search starts: the new study
        st.session_state.pop("search_pick", None)
    picked = st.selectbox("Study", names, key="search_pick",
                          format_func=lambda n: n + (" · archived" if n in archived else ""))
    lifecycle_views.group_controls(sel, "study", picked, here)
    st.fragment(run_every=POLL_S)(study_results)(sel, picked)


def search_space(model: str) -> list[dict]:
    """The search space as a person edits it, one row per setting, starting from the model's default space."""
    default_rows = pd.DataFrame([{"name": p.name, "kind": p.kind, "low": p.low, "high": p.high,
                                  "choices": ", ".join(map(str, p.choices))} for p in tuning.DEFAULT_SPACES[model]])
    rows = st.data_editor(default_rows, num_rows="dynamic", hide_index=True, width="stretch", key=f"space:{model}",
                          column_config={
                              "name": st.column_config.SelectboxColumn("setting", options=list(tuning.TUNABLE[model]),
                                                                       required=True),
                              "kind": st.column_config.SelectboxColumn("kind", options=list(tuning.KINDS),
                                                                       required=True),
                              "low": st.column_config.NumberColumn("low", format="%g"),
                              "high": st.column_config.NumberColumn("high", format="%g"),
                              "choices": st.column_config.TextColumn("choices")})
    return rows.to_dict("records")


def study_results(sel: ui.Selection, name: str) -> None:
    driver = tuning.background_command(sel.settings, name)
    state = command_state(sel, driver, "search")
    try:
        study = tuning.load(sel.store.url, name)
    except RecipeError:
        nothing_yet(sel, driver, state, "Starting the study…", "This study has no trials yet.", "search_cancel_start")
        return
    total = study.user_attrs.get("n_trials", len(study.trials))
    frame = tuning.trials_frame(study)
    states = frame["state"].value_counts().to_dict() if not frame.empty else {}
    ended = sum(states.get(s, 0) for s in ("complete", "pruned", "fail"))
    # a study started elsewhere (the CLI) has no process known here: its trials say how far it is
    running = ended < total and not tuning.stop_requested(study) and (state is None or state.active)
    st.progress(min(ended / max(total, 1), 1.0),
                text=f"{ended} of {total} trials ended · " + ", ".join(f"{n} {s}" for s, n in states.items()))
    if running and access.may_change(sel.who, group_owner(sel, frame["run_id"].dropna().tolist()
                                                         if not frame.empty else [])):
        b = st.columns([1, 1, 2])
        b[0].button("Stop after the running trials", key="search_stop", on_click=tuning.request_stop,
                    args=(sel.store.url, name))
        b[1].button("Cancel", key="search_cancel", icon=":material/stop:", on_click=tuning.cancel,
                    args=(sel.store, name, sel.who), help="No more trials, and the running ones are cancelled")
    elif ended < total and tuning.stop_requested(study):
        st.caption("Stopping: no new trials start; the running ones end first." if state is not None
                   and state.active else f"Stopped on request after {ended} of {total} trials.")
    if frame.empty:
        return
    best = frame[frame["state"].eq("complete")].sort_values("val_loss").head(1)
    if not best.empty:
        st.markdown(f"**Best so far:** trial {int(best['trial'].iloc[0])}, val_loss {best['val_loss'].iloc[0]:.4g}")
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"val_loss": st.column_config.NumberColumn(format="%.4g")})
    compare_link([i for i in frame["run_id"].dropna()][:200], "Open the trials on Compare")
    if states.get("complete", 0) >= 2:
        left, right = st.columns(2)
        left.plotly_chart(figures.importance_figure(tuning.importance(study)), width="stretch",
                          key="search_importance")
        right.plotly_chart(figures.parallel_coordinates_figure(study), width="stretch", key="search_parallel")
        st.plotly_chart(figures.slice_figure(study), width="stretch", key="search_slice")


# -- ensembles -----------------------------------------------------------------------------------------
def ensembles_of_runs(sel: ui.Selection, trained: dict[str, RunRecord]) -> None:
    candidates = [r.id for r in finished_runs(trained) if r.model != "prior"]
    c = st.columns([3, 1])
    members = c[0].multiselect("Runs to average", candidates, format_func=lambda i: run_label(trained[i]),
                               key="ens_members")
    k = int(c[1].number_input("or the top K", 2, 50, 3, key="ens_k"))
    writer = ui.may_write_or_say(sel, "build ensembles")
    b = st.columns(2)
    chosen = None
    if writer and b[0].button("Ensemble the picked runs", disabled=not members, key="ens_picked"):
        chosen = members
    if writer and b[1].button(f"Ensemble the top {k} by val_loss", key="ens_top", disabled=not candidates):
        try:
            chosen = ensembles.top_k(sel.store, sel.record.id, sel.target, k)
        except RecipeError as e:
            ui.show_error(e)
    if chosen:
        try:
            made = ensembles.create(sel.settings, sel.store, chosen, author=sel.who.name)
        except RecipeError as e:
            ui.show_error(e)
        else:
            st.session_state["ens_made"] = made.id
    if st.session_state.get("ens_made"):
        ensemble_result(sel, st.session_state["ens_made"])
    ensembled = [r for r in sel.store.list_runs(sel.record.id, sel.target) if r.model == "ensemble"]
    if ensembled:
        st.caption("Ensembles of this target so far")
        board = reports.leaderboard(ensembled)
        st.dataframe(board[[c for c in ("run", "id", "val_loss", "gain_vs_best", "n_members", "n_parameters",
                                        "created") if c in board]], hide_index=True, width="stretch")


def ensemble_result(sel: ui.Selection, made_id: str) -> None:
    try:
        result = ensembles.summary(sel.store, made_id)
    except RecipeError:
        return
    if not result:
        return
    m = result["metrics"]
    cols = st.columns(4)
    cols[0].metric("Ensemble val_loss", f"{m['val_loss']:.4g}")
    cols[1].metric("Gain over the best member", f"{result['gain_vs_best']:+.4g}",
                   help="The best member's val_loss minus the ensemble's: positive means it helped")
    cols[2].metric("Parameters (all members)", f"{int(m.get('n_parameters', 0)):,}")
    cols[3].metric("Prediction time (validation split)", f"{m.get('predict_seconds', 0) * 1000:.1f} ms")
    evaluation = sel.store.get_json(made_id, "evaluation")
    if evaluation:
        st.dataframe(reports.metrics_table(evaluation), hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame(result["members"]), hide_index=True, width="stretch")
    compare_link([made_id] + [r["run_id"] for r in result["members"]], "Compare it with its members")
