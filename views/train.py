"""The Train page's views: the split and features every run shares, the form that starts a run, the leaderboard, and
one run: live while it trains, then its checks, metrics and what the model saw."""
from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

import ui
from recipe_core import figures
from recipe_core.compare import reports
from recipe_core.config import MODELS, TrainConfig
from recipe_core.errors import NotFound, RecipeError
from recipe_core.labelling import labels
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access
from recipe_core.tracking.records import RunRecord
from recipe_core.training import artifacts, capacity, jobs, verdicts
from views import checks as check_views

RUN = "train_run"  # plain session key: the run shown below (also ?run= in the URL)
POLL_S = 1.0
TASKS = {"auto": None, "classification": "classification", "regression": "regression"}
TABS = ["The batch the net sees", "Predictions over training", "Top-loss examples", "Overfit one batch", "Capacity",
        "Config"]


# -- the skeleton every run shares: task, split, features ---------------------------------------------
def task_and_split(sel: ui.Selection) -> tuple[str, str] | None:
    """The task picked (auto or an override) and the task it means, beside the persisted split; None (with its
    error shown) when the target cannot be learned as that task."""
    left, right = st.columns([2, 3])
    with left:  # the task first: a wrong override must stay fixable after its error
        task_choice = st.selectbox("Task", list(TASKS), key=f"task:{sel.record.id}:{sel.target}",
                                   format_func=lambda t: f"auto ({ui.task(sel)})" if t == "auto" else t)
    try:
        task, split, summary = ui.split_overview(sel, TASKS[task_choice])
    except RecipeError as e:
        ui.show_error(e)
        return None
    with left:
        counts = split.counts
        st.markdown(f"**Split** (seed {split.record.seed}, {'stratified' if split.record.stratified else 'shuffled'}, "
                    f"persisted: every run and the human baseline use it): "
                    f"{counts['train']:,} train · {counts['val']:,} validation · {counts['test']:,} test")
        if counts["excluded"]:
            st.caption(f"{counts['excluded']:,} {'row' if counts['excluded'] == 1 else 'rows'} with a missing target "
                       f"{'is' if counts['excluded'] == 1 else 'are'} excluded.")
    with right:
        st.dataframe(summary, width="stretch")
    return task_choice, task


def feature_columns(sel: ui.Selection) -> list[str]:
    """The columns left out of the features (the ID-like ones by default)."""
    plan = ui.feature_plan(sel)
    id_like = plan.loc[plan["id_like"], "column"].tolist()
    exclude = st.multiselect("Columns left out (ID-like columns are left out by default)", plan["column"].tolist(),
                             default=id_like, key=f"exclude:{sel.record.id}:{sel.target}")
    st.caption(f"{len(plan) - len(exclude)} feature columns: numeric standardized on the training split, categorical "
               "one-hot (top 20 and other), text hashed, a missing indicator where needed.")
    return exclude


def show_run(run_id: str) -> None:
    st.session_state[RUN] = run_id
    st.query_params["run"] = run_id


# -- a new run -------------------------------------------------------------------------------------------
def new_run_form(sel: ui.Selection, task_choice: str, exclude: list[str]) -> None:
    earlier = {r.id: r for r in reversed(sel.store.list_runs(sel.record.id, sel.target))}  # newest first
    # enter_to_submit=False: Enter in a number box must not start a run (accidental duplicates cannot be removed)
    with st.form("train_form", enter_to_submit=False, border=True):
        model = st.segmented_control("Model", MODELS, default="prior", required=True, key="train_model",
                                     help="Simple to complex: prior, then linear, boosted trees, then the MLP.")
        c1, c2, c3, c4 = st.columns(4)
        seed = c1.number_input("Seed", 0, 2**32 - 1, 0, key="train_seed")
        epochs = c2.number_input("Epochs (0: about 2,000 steps)", 0, 100_000, 0, key="train_epochs")
        width = c3.number_input("Width", 1, 4096, 64, key="train_width")
        depth = c4.number_input("Depth", 1, 20, 2, key="train_depth")
        c1, c2, c3, c4 = st.columns(4)
        batch_size = c1.number_input("Batch size", 1, 65_536, 64, key="train_batch")
        lr = c2.number_input("Learning rate (Adam)", 0.0, 10.0, 3e-4, step=1e-4, format="%.5f", key="train_lr")
        dropout = c3.number_input("Dropout", 0.0, 0.99, 0.0, step=0.05, key="train_dropout")
        weight_decay = c4.number_input("Weight decay", 0.0, 10.0, 0.0, step=1e-4, format="%.5f", key="train_wd")
        c1, c2 = st.columns([3, 1])
        bias_init = c1.toggle("Initialize the last layer's bias (log class prior / target mean)", True,
                              key="train_bias_init",
                              help="Off: watch the hockey-stick loss curve of a badly initialized net.")
        patience = c2.number_input("Early stopping patience (MLP; 0: off)", 0, 10_000, 0, key="train_patience",
                                   help="Stop after this many epochs without a better validation loss; keep the best "
                                        "epoch's weights")
        c1, c2 = st.columns([1, 2])
        parent = c1.selectbox("Changes run (parent, optional)", list(earlier), index=None, key="train_parent",
                              format_func=lambda i: f"{earlier[i].name} · {i[:6]}", placeholder="none",
                              help="Compare shows what changed from the parent and what it did to the metrics.")
        hypothesis = c2.text_input("Hypothesis (optional)", key="train_hypothesis", max_chars=500,
                                   placeholder="e.g. dropout 0.2 should close the train/val gap")
        submitted = st.form_submit_button("Train", type="primary", icon=":material/play_arrow:")
    if submitted:
        config = TrainConfig(model=model, seed=int(seed), epochs=int(epochs) or None, width=int(width),
                             depth=int(depth), batch_size=int(batch_size), lr=float(lr), dropout=float(dropout),
                             weight_decay=float(weight_decay), bias_init=bias_init, task=TASKS[task_choice],
                             patience=(int(patience) or None) if model == "mlp" else None, exclude=tuple(exclude))
        try:
            run = jobs.submit(sel.settings, sel.store, sel.record, sel.target, config, author=sel.who.name,
                              parent_id=parent, hypothesis=hypothesis)
        except RecipeError as e:
            st.session_state["train_error"] = str(e)
        else:
            show_run(run.id)
    if "train_error" in st.session_state:
        st.error(markdown_literal(st.session_state.pop("train_error")), icon=":material/error:")


# -- the leaderboard -------------------------------------------------------------------------------------
def leaderboard(sel: ui.Selection, task: str) -> dict[str, str]:
    """Every run of the dataset and target, best first; a row picked shows that run below. The status of each run
    as shown: the live view reruns the page when one changes."""
    all_runs = sel.store.list_runs(sel.record.id, sel.target)  # a run whose process died reads lost
    statuses = {r.id: r.status for r in all_runs}  # of every run, archived too: live() compares the same
    st.subheader("Leaderboard")
    if any(r.archived for r in all_runs):  # archived runs leave the board unless asked for
        if not st.toggle("Show archived runs", key="train_show_archived"):
            all_runs = [r for r in all_runs if not r.archived]
    board = reports.leaderboard(all_runs)
    if board.empty:
        st.caption("No runs yet: start with the prior baseline, the number every model must beat.")
        return statuses
    metric = st.segmented_control("Leaderboard metric", ["val_loss", "val_accuracy" if task == "classification"
                                  else "val_mae"], default="val_loss", required=True, key="train_board_metric")
    events = sel.store.label_events(sel.record.id, sel.target)
    human = labels.summary(ui.label_baseline(sel), events) if events else None
    finished = board[board["status"].eq("finished") & board[metric].notna()] if metric in board else board.iloc[:0]
    st.plotly_chart(figures.leaderboard_figure(finished, reports.references(all_runs, metric, human), metric),
                    width="stretch")
    shown = [c for c in ["run", "model", "seed", "status", "checks", "val_loss", "val_accuracy",
                         "val_balanced_accuracy", "val_macro_f1", "val_mse", "val_mae", "val_r2", "author", "created"]
             if c in board]
    ids = board["id"].tolist()  # as shown now: the callback runs before the next render

    def show_picked() -> None:  # only when the selection changes, so a run just started stays shown
        rows = st.session_state["train_board"]["selection"]["rows"]
        if rows:
            show_run(ids[rows[0]])

    st.dataframe(board[shown], on_select=show_picked, selection_mode="single-row", key="train_board",
                 hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format=reports.metric_format(c), width=reports.METRIC_COLUMN_PX)
        for c in shown if c.startswith("val_")})  # wide enough that a negative R² keeps its minus sign
    curves = [i for i, status in zip(ids, board["status"], strict=True) if status == "finished"][:20]
    st.page_link("pages/compare.py", label=f"Compare the curves of the {len(curves)} best finished runs",
                 icon=":material/stacked_line_chart:", query_params={"runs": ",".join(curves), "metric": "val_loss"},
                 disabled=not curves)
    return statuses


def shown_run(sel: ui.Selection) -> RunRecord | None:
    """The run to show: the URL's first (a link from another page, "Watch it train", names its run there while the
    session still holds the run shown on an earlier visit), else the page's own last choice; None for a run of
    another dataset or target."""
    run_id = st.query_params.get("run") or st.session_state.get(RUN)
    if not run_id:
        return None
    try:
        run = sel.store.get_run(run_id)
    except NotFound:
        run = None
    if run is None or run.dataset_id != sel.record.id or run.target != sel.target:
        st.query_params.pop("run", None)
        return None
    st.query_params["run"] = run.id
    return run


# -- the run: live while it trains -----------------------------------------------------------------------
def live(sel: ui.Selection, run_id: str, shown_status: dict[str, str]) -> None:
    """The run's header, progress and loss curves (a fragment polls it while the run is active)."""
    run = sel.store.get_run(run_id)
    st.subheader(f"Run {markdown_literal(run.name)}")
    about = [markdown_literal(run.model), f"seed {run.seed}", run.task, f"by {markdown_literal(run.author)}",
             f"code {markdown_literal(run.code_version)}", f"id `{run.id}`"]
    st.caption(" · ".join(a for a in about if a))
    history = reports.history_frame(sel.store.metric_history([run.id]))
    if run.active:
        st.progress(run.progress, text=f"{run.status}… {run.progress:.0%}")
        if run.status == "queued" and capacity.slots_in_use(sel.settings) >= sel.settings.max_jobs:
            st.caption(f"Waiting for a free training slot: {sel.settings.max_jobs} runs train at once on this "
                       "server (RECIPE_MAX_JOBS); it starts by itself.")
        elif run.status == "queued":
            st.caption("Starting its process…")
        if access.may_change(sel.who, run.author):  # its author or an admin
            st.button("Cancel", icon=":material/stop:", key="train_cancel", on_click=jobs.cancel,
                      args=(sel.store, run.id), kwargs={"who": sel.who})
    elif run.status != "finished":
        st.error(f"Run {run.status}: {markdown_literal(run.reason)}", icon=":material/error:")
    st.plotly_chart(figures.loss_curves_figure(history, log_y=st.session_state.get("train_log_y", False)),
                    width="stretch", key=f"curves:{run.id}")
    if {r.id: r.status for r in sel.store.list_runs(sel.record.id, sel.target)} != shown_status:
        st.rerun(scope="app")  # a run started, ended or was lost: the leaderboard and this run's results follow


def next_steps(run: RunRecord) -> None:
    links = st.columns(3)
    links[0].page_link("pages/tune.py", label="New run from this one (change one thing)", icon=":material/tune:",
                       query_params={"run": run.id})
    links[1].page_link("pages/compare.py", label="Its curves on Compare", icon=":material/stacked_line_chart:",
                       query_params={"runs": ",".join(filter(None, [run.parent_id, run.id])), "metric": "val_loss"})
    if run.metrics.get("stopped_epoch") is not None:
        links[2].caption(f"Early stopping: stopped at epoch {run.metrics['stopped_epoch']:g} of "
                         f"{run.metrics['max_epochs']:g}; the metrics are the best epoch's "
                         f"({run.metrics['best_epoch']:g}).")


# -- the checks first, then the numbers -------------------------------------------------------------------
def checks(sel: ui.Selection, run: RunRecord) -> None:
    """The badges, then the details a user's own model's checks carry (the app's own are drawn in the tabs; its
    zero-input twin is a line on the leaderboard and the curves)."""
    st.markdown("#### Checks")
    check_views.badges(run)
    check_views.details(sel, run, key="train", skip=("input_independent",))


def validation_metrics(sel: ui.Selection, run: RunRecord) -> None:
    evaluation = ui.run_artifact(sel, run, "evaluation") or {}
    if not evaluation:
        return
    st.markdown(f"#### Validation metrics ({evaluation['n']:,} examples, the whole split)")
    cols = st.columns([2, 3])
    cols[0].dataframe(reports.metrics_table(evaluation), hide_index=True, width="stretch")
    if evaluation.get("confusion"):
        cols[1].plotly_chart(figures.confusion_figure(evaluation["confusion"], evaluation["classes"]), width="stretch")
    st.caption(f"{evaluation['n_parameters']:,} parameters · trained in {evaluation['train_seconds']:.1f} s · "
               f"predicts the validation split in {evaluation['predict_seconds'] * 1000:.0f} ms")


# -- what the model saw: one function per tab -----------------------------------------------------------------
def first_batch(sel: ui.Selection, run: RunRecord) -> None:
    batch = artifacts.read("batch", ui.run_artifact(sel, run, "batch"))
    if not batch:
        return
    distinct = len(batch.rows)  # identical inputs are shown once, with how many rows of the batch share it
    st.caption(f"The first training batch exactly as the model receives it: {batch.batch_rows or distinct} "
               f"rows ({distinct} distinct inputs) × {batch.n_features} features"
               + (f" (first {len(batch.features)} shown)" if batch.n_features > len(batch.features) else ""))
    tensor = pd.DataFrame(batch.values, columns=batch.features, index=batch.rows).rename_axis("row")
    tensor.insert(0, "label", [str(v) for v in batch.labels])
    if batch.n_rows is not None:
        tensor.insert(1, "rows with this input", batch.n_rows)
    st.dataframe(tensor, height=260)
    st.markdown("Decoded back into the columns' own terms")
    st.dataframe(pd.DataFrame(batch.decoded, index=batch.rows).rename_axis("row"), height=220)
    stats = pd.DataFrame(batch.stats)
    bad = int(stats["nan"].sum())
    (st.error if bad else st.caption)(f"Per-feature mean, std and NaN count over the batch: {bad} NaN values.")
    st.dataframe(stats, hide_index=True, height=220, column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in ("mean", "std")})


def predictions_over_training(sel: ui.Selection, run: RunRecord) -> None:
    dyn = artifacts.read("dynamics", ui.run_artifact(sel, run, "dynamics"))
    if not (dyn and dyn.snapshots):
        return
    marks = [at for at, _ in dyn.snapshots]
    at = st.select_slider("Epoch (trees for gbm)", marks, value=marks[-1], key=f"dyn:{run.id}") \
        if len(marks) > 1 else marks[0]
    preds = dict((m, p) for m, p in dyn.snapshots)[at]
    st.plotly_chart(figures.predictions_figure(dyn.labels, preds, dyn.classes,
                                               f"A fixed validation batch at {at}"), width="stretch")


def top_losses(sel: ui.Selection, run: RunRecord) -> None:
    top = artifacts.read("top_losses", ui.run_artifact(sel, run, "top_losses")) or []
    if not top:
        return
    table = artifacts.top_losses_frame(top)
    # The Data page is the default page, served at the app's root: "/data" is "Page not found". "./" keeps a
    # path prefix; a LinkColumn opens a new tab (a new session), so the URL carries the whole selection.
    here = {"dataset": sel.record.id, "target": sel.target, **ui.author_param(sel)}
    table["open"] = [f"./?{urlencode({**here, 'row': r})}" for r in table["row"]]
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "open": st.column_config.LinkColumn("row in the Data page", display_text="open row"),
        "loss": st.column_config.NumberColumn(format="%.4g"),
        "n_rows": st.column_config.NumberColumn("rows with this input"),
        "n_labels": st.column_config.NumberColumn("distinct labels (over 1: an ambiguous input)")})


def overfit_one_batch(run: RunRecord) -> None:
    over = verdicts.of(run.checks, "overfit_one_batch")
    if over.floor:
        st.caption(f"Loss floor {over.floor:.3g}: {over.n_ambiguous} of the {over.n} examples share their "
                   "input with a different label, so no model can reach zero on this batch.")
    if over.labels is not None and over.rows:  # the app's own check (a user's model's is drawn with its checks)
        cmp = pd.DataFrame({"row": over.rows, "label": over.labels, "prediction": over.predictions})
        st.dataframe(cmp, hide_index=True)
        curve = pd.DataFrame(over.curve, columns=["step", "value"]).assign(key="train_loss")
        st.plotly_chart(figures.loss_curves_figure(curve, "Overfitting one batch", log_y=True), width="stretch")
    else:
        st.caption(markdown_literal(over.message))


def capacity_ladder(run: RunRecord) -> None:
    cap = verdicts.of(run.checks, "capacity")
    if cap.widths:
        st.plotly_chart(figures.capacity_figure(cap.widths, cap.train_losses), width="stretch")
    else:
        st.caption(markdown_literal(cap.message))
