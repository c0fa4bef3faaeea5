"""Tune page: regularize one change at a time, see whether more data would help, random search, ensembles
(recipe steps 3 and 4). Every step is a run with its parent and hypothesis, so Compare shows what it did.

Searches and learning curves run in a background process (python -m recipe_core tune / learning-curve) that
drives worker processes or a Dask cluster; this page starts them and polls the store.
"""
from __future__ import annotations

import json

import optuna
import pandas as pd
import streamlit as st

import ui
from recipe_core import comparison, ensembles, executors, figures, jobs, learning_curve, reports, runs, tuning
from recipe_core.config import MODELS
from recipe_core.errors import RecipeError
from recipe_core.safetext import markdown_literal
from recipe_core.store import new_id

sel = ui.sidebar()
st.title("Tune")
if sel.record is None or not sel.target:
    st.info("Pick a dataset and the target column to predict in the sidebar.")
    st.stop()
record, target, store = sel.record, sel.target, sel.store
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

trained = [r for r in reversed(store.list_runs(record.id, target)) if r.source == "app" and r.model in MODELS]
finished = [r for r in trained if r.status == "finished"]
by_id = {r.id: r for r in trained}


def run_label(run_id: str) -> str:
    r = by_id[run_id]
    loss = r.metrics.get("val_loss")
    return f"{r.name} · {r.model} · val_loss {loss:.4g}" if loss is not None else f"{r.name} · {r.model} · {r.status}"


def compare_link(ids: list[str], label: str) -> None:
    st.page_link("pages/compare.py", label=label, icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(ids), "metric": "val_loss"})


tab_new, tab_curve, tab_search, tab_ensemble = st.tabs(
    ["New run from this one", "More data?", "Random search", "Ensembles"])

# -- regularize: one change at a time ---------------------------------------------------------------------
with tab_new:
    if not finished:
        st.info("Train a run on the Train page first; then change one thing at a time here.")
    else:
        wanted = st.query_params.get("run")
        ids = [r.id for r in finished]
        parent = by_id[st.selectbox("From run", ids, format_func=run_label, key="tune_parent",
                                    index=ids.index(wanted) if wanted in ids else 0)]
        base = runs.config_from(parent.config)
        knobs = KNOBS.get(parent.model, {})
        values = {}
        cols = st.columns(3)
        for i, (name, (label, step, fmt)) in enumerate(knobs.items()):
            current = getattr(base, name)
            shown = 0 if current is None and name in NONE_AS_ZERO else current
            number = cols[i % 3].number_input(label, value=shown, step=step if isinstance(shown, float) else int(step),
                                              format=fmt, min_value=0 if not isinstance(shown, float) else 0.0,
                                              key=f"new:{parent.id}:{name}")
            values[name] = None if name in NONE_AS_ZERO and number == 0 else number
        plan = ui.feature_plan(sel)
        excluded = st.multiselect("Columns left out (drop or add one feature group at a time)",
                                  plan["column"].tolist(), default=[c for c in (base.exclude or ())
                                                                     if c in plan["column"].tolist()]
                                  if base.exclude is not None else plan.loc[plan["id_like"], "column"].tolist(),
                                  key=f"new:{parent.id}:exclude")
        new_config = runs.config_from({**runs.config_json(base), **values, "exclude": excluded, "checks": True})
        before, after = runs.config_json(base), runs.config_json(new_config)
        if base.exclude is None:
            before["exclude"] = plan.loc[plan["id_like"], "column"].tolist()
        changed = comparison.config_changes({**before, "checks": True}, after)
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
        if st.button("Start this run", type="primary", disabled=not changed or not hypothesis.strip(),
                     key="tune_new_start", help="Needs at least one change and a hypothesis"):
            try:
                runs.preflight(sel.settings, record, target, new_config)
                child = runs.create(store, record, target, new_config, author=sel.author, parent_id=parent.id,
                                    hypothesis=hypothesis.strip())
                jobs.start(sel.settings, store, child.id)
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
with tab_curve:
    if not finished:
        st.info("Train a run first: a learning curve retrains its config on less data.")
    else:
        ids = [r.id for r in finished]
        source = by_id[st.selectbox("Config of run", ids, format_func=run_label, key="curve_parent")]
        c = st.columns(3)
        fractions = c[0].multiselect("Shares of the training rows", [0.1, 0.25, 0.5, 1.0],
                                     default=list(learning_curve.FRACTIONS), format_func=lambda f: f"{f:.0%}",
                                     key="curve_fractions")
        seeds = int(c[1].number_input("Seeds per share", 1, 20, learning_curve.SEEDS, key="curve_seeds"))
        c[2].caption(f"{len(fractions) * seeds} runs, two at a time, each its own process (checks off).")
        if st.button("Train the learning curve", disabled=not fractions, key="curve_start"):
            jobs.start_command(sel.settings, ["learning-curve", source.id, "--seeds", str(seeds), "--fractions",
                                              ",".join(str(f) for f in fractions), "--author", sel.author or "anonymous"])
            st.session_state["curve_pending"] = source.id
            st.toast("Learning curve started; its runs appear below as they train.")
        children = [r for r in store.list_runs(record.id, target) if r.parent_id == source.id]
        waiting = st.session_state.get("curve_pending") == source.id or any(r.active for r in children)

        @st.fragment(run_every=POLL_S if waiting else None)
        def curve_results() -> None:
            curves = sorted({t for r in store.list_runs(record.id, target) if r.parent_id == source.id
                             for t in r.tags if t.startswith(learning_curve.TAG)}, reverse=True)
            if not curves:
                st.caption("Starting the learning curve…" if waiting else "No learning curve of this run yet.")
                return
            st.session_state.pop("curve_pending", None)
            curve = st.selectbox("Learning curve", curves, key="curve_pick", format_func=lambda t: t[6:])[6:]
            frame = learning_curve.table(store, curve)
            logged = [m for m in ("val_loss", "val_accuracy", "val_mae") if m in frame]
            if not logged:  # no run of the curve has finished yet
                st.caption(f"{len(frame)} runs queued or training…")
                return
            metric = st.segmented_control("Metric", logged, default=logged[0], key="curve_metric", required=True)
            points = learning_curve.summary(frame, metric)
            done = int(frame["status"].isin(["finished", "failed", "cancelled"]).sum())
            st.progress(done / max(len(frame), 1), text=f"{done} of {len(frame)} runs ended")
            st.plotly_chart(figures.learning_curve_figure(points, metric), width="stretch", key="curve_chart")
            st.markdown(learning_curve.verdict(points, metric))
            st.dataframe(points, hide_index=True, width="stretch")
            compare_link(frame["run_id"].tolist(), "Open the curve's runs on Compare")

        curve_results()

# -- random search -----------------------------------------------------------------------------------------
with tab_search:
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
    try:
        space = tuning.space_from_rows(model, rows.to_dict("records"))
    except RecipeError as e:
        ui.show_error(e)
        space = None
    if space:
        with st.expander(f"Random vs grid for {n_trials} trials: distinct values tried per setting"):
            st.dataframe(tuning.coverage(space, n_trials), hide_index=True)
            st.caption("A grid spends its budget on few values of each setting; random search tries a new value of "
                       "every setting in every trial, so the settings that matter get explored.")
    if st.button("Start the search", type="primary", disabled=space is None, key="search_start"):
        try:
            address = executors.reachable(sel.settings.executor_address(executor))
            study = f"{record.name}-{target}-{model}-{sampler}-s{seed}-{new_id()[:6]}"
            argv = ["tune", record.id, "--target", target, "--model", model, "--trials", str(n_trials),
                    "--sampler", sampler, "--seed", str(seed), "--executor", address, "--workers", str(workers),
                    "--space", json.dumps(rows.to_dict("records"), default=str), "--study", study,
                    "--author", sel.author or "anonymous"]
            if model == "mlp" and epochs:
                argv += ["--epochs", str(epochs)]
            runs.preflight(sel.settings, record, target, runs.config_from({"model": model}))
        except RecipeError as e:
            ui.show_error(e)
        else:
            jobs.start_command(sel.settings, argv)
            st.session_state["search_study"] = study
            st.toast(f"Study {markdown_literal(study)} started.")  # the study is named after the dataset

    names = tuning.studies(sel.store.url, record.id, target)
    if st.session_state.get("search_study") and st.session_state["search_study"] not in names:
        names = [st.session_state["search_study"]] + names
    if names:
        picked = st.selectbox("Study", names, key="search_pick",
                              index=names.index(st.session_state["search_study"])
                              if st.session_state.get("search_study") in names else 0)

        @st.fragment(run_every=POLL_S)
        def study_results(name: str) -> None:
            try:
                study = tuning.load(sel.store.url, name)
            except RecipeError:
                st.caption("Starting the study…")
                return
            total = study.user_attrs.get("n_trials", len(study.trials))
            frame = tuning.trials_frame(study)
            states = frame["state"].value_counts().to_dict() if not frame.empty else {}
            ended = sum(states.get(s, 0) for s in ("complete", "pruned", "fail"))
            running = ended < total and not tuning.stop_requested(study)
            st.progress(min(ended / max(total, 1), 1.0),
                        text=f"{ended} of {total} trials ended · " + ", ".join(f"{n} {s}" for s, n in states.items()))
            if running and st.button("Stop after the running trials", key="search_stop"):
                tuning.request_stop(sel.store.url, name)
            if frame.empty:
                return
            best = frame[frame["state"].eq("complete")].sort_values("val_loss").head(1)
            if not best.empty:
                st.markdown(f"**Best so far:** trial {int(best['trial'].iloc[0])}, val_loss "
                            f"{best['val_loss'].iloc[0]:.4g}")
            st.dataframe(frame, hide_index=True, width="stretch",
                         column_config={"val_loss": st.column_config.NumberColumn(format="%.4g")})
            compare_link([i for i in frame["run_id"].dropna()][:200], "Open the trials on Compare")
            complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if len(complete) >= 2:
                left, right = st.columns(2)
                left.plotly_chart(figures.importance_figure(tuning.importance(study)), width="stretch",
                                  key="search_importance")
                right.plotly_chart(optuna.visualization.plot_parallel_coordinate(study), width="stretch",
                                   key="search_parallel")
                st.plotly_chart(optuna.visualization.plot_slice(study), width="stretch", key="search_slice")

        study_results(picked)
    else:
        st.caption("No study on this dataset and target yet.")

# -- ensembles -----------------------------------------------------------------------------------------
with tab_ensemble:
    candidates = [r.id for r in finished if r.model != "prior"]
    c = st.columns([3, 1])
    members = c[0].multiselect("Runs to average", candidates, format_func=run_label, key="ens_members")
    k = int(c[1].number_input("or the top K", 2, 50, 3, key="ens_k"))
    b = st.columns(2)
    chosen = None
    if b[0].button("Ensemble the picked runs", disabled=not members, key="ens_picked"):
        chosen = members
    if b[1].button(f"Ensemble the top {k} by val_loss", key="ens_top", disabled=not candidates):
        try:
            chosen = ensembles.top_k(store, record.id, target, k)
        except RecipeError as e:
            ui.show_error(e)
    if chosen:
        try:
            made = ensembles.create(sel.settings, store, chosen, author=sel.author)
        except RecipeError as e:
            ui.show_error(e)
        else:
            st.session_state["ens_made"] = made.id
    made_id = st.session_state.get("ens_made")
    if made_id:
        try:
            result = ensembles.summary(store, made_id)
        except RecipeError:
            result = None
        if result:
            m = result["metrics"]
            cols = st.columns(4)
            cols[0].metric("Ensemble val_loss", f"{m['val_loss']:.4g}")
            cols[1].metric("Gain over the best member", f"{result['gain_vs_best']:+.4g}",
                           help="The best member's val_loss minus the ensemble's: positive means it helped")
            cols[2].metric("Parameters (all members)", f"{int(m.get('n_parameters', 0)):,}")
            cols[3].metric("Prediction time (validation split)", f"{m.get('predict_seconds', 0) * 1000:.1f} ms")
            evaluation = store.get_json(made_id, "evaluation")
            if evaluation:
                st.dataframe(reports.metrics_table(evaluation), hide_index=True, width="stretch")
            st.dataframe(pd.DataFrame(result["members"]), hide_index=True, width="stretch")
            compare_link([made_id] + [r["run_id"] for r in result["members"]], "Compare it with its members")
    ensembled = [r for r in store.list_runs(record.id, target) if r.model == "ensemble"]
    if ensembled:
        st.caption("Ensembles of this target so far")
        board = reports.leaderboard(ensembled)
        st.dataframe(board[[c for c in ("run", "id", "val_loss", "gain_vs_best", "n_members", "n_parameters",
                                        "created") if c in board]], hide_index=True, width="stretch")
