"""A run's checks on the pages: their badges, then the details of each kind (the dependency heatmaps, the overfit
curve, the learning-rate range test, the batch as the net saw it, gradients and loss at init), and the watched
histograms. Compare draws them for a charted check run; Train for the run it shows."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import ui
from recipe_core import check_figures
from recipe_core.compare import reports
from recipe_core.safetext import markdown_literal
from recipe_core.tracking.records import RunRecord
from recipe_core.training import verdicts

WATCH_SCAN = 20  # charted runs whose "watch" artifact is looked for (each one read once, then cached)
PICK = "cmp_checks_run"  # widget: the run whose checks Compare shows


def badges(run: RunRecord) -> None:
    """One line per check: its outcome, its name and its one-line message."""
    for name, check in reports.ordered_checks(verdicts.read(run.checks)):
        st.markdown(f"{ui.verdict_badge(check.ok)} **{markdown_literal(name)}**: "
                    f"{markdown_literal(check.message)}")  # read back from the shared store


def compare_section(sel: ui.Selection, chosen: list[RunRecord]) -> None:
    """Compare: when charted runs carry check details (a `check` run, a script's run.check or run.watch), the
    checks of one of them, in full; a run picker when there are several."""
    shown = [r for r in chosen if reports.has_check_details(r)]
    shown += [r for r in chosen[:WATCH_SCAN] if r not in shown and _watch(sel, r)]
    if not shown:
        return
    by_id = {r.id: r for r in shown}
    picked = shown[0].id
    if len(shown) > 1:
        picked = st.selectbox("Checks of", list(by_id), key=PICK, format_func=lambda i: f"{by_id[i].name} · "
                              f"{by_id[i].model} · {by_id[i].source} · {i[:6]}",
                              help="The charted runs with check details") or picked
    run = by_id.get(picked, shown[0])
    st.subheader(f"Checks of run {markdown_literal(run.name)}")
    st.caption(" · ".join(markdown_literal(a) for a in (run.model, f"source {run.source}", f"id {run.id}",
                                                         reports.checks_badge(run.checks)) if a))
    if run.status in ("failed", "cancelled"):  # a model that raised: the one line the CLI printed
        st.error(f"Run {run.status}: {markdown_literal(run.reason or 'no reason recorded')}", icon=":material/error:")
    badges(run)
    details(sel, run, key="cmp")


def details(sel: ui.Selection, run: RunRecord, key: str, skip: tuple[str, ...] = ()) -> None:
    """Every check of the run that has more than its badge to show, two to a row, then the watched histograms."""
    found = verdicts.read(run.checks)
    drawn = [(name, check) for name, check in reports.ordered_checks(found)
             if name not in skip and name in DRAWERS and DRAWERS[name][0](check)]
    for start in range(0, len(drawn), 2):
        columns = st.columns(2)
        for column, (name, check) in zip(columns, drawn[start:start + 2]):
            with column.container(border=True):
                st.markdown(f"{ui.verdict_badge(check.ok)} **{markdown_literal(name)}**")
                DRAWERS[name][1](sel, run, check, f"{key}:{run.id}:{name}")
    watch(sel, run, key)


# -- one drawer per kind: (has something to draw, draw it) -----------------------------------------------------
def _loss_at_init(sel, run, check: verdicts.LossAtInit, key: str) -> None:
    rows = [("measured at step 0", check.measured), ("expected (the formula)", check.expected),
            ("uninformed (ignores its input)", check.uninformed),
            ("tolerance (relative)", check.tolerance)]
    table = pd.DataFrame([{"": label, "value": value} for label, value in rows if value is not None])
    if check.loss:
        st.caption(f"loss: {markdown_literal(check.loss)}")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"value": st.column_config.NumberColumn(format="%.4g")})
    if check.advice and check.advice not in check.message:  # else the badge above says it already
        st.info(markdown_literal(check.advice), icon=":material/lightbulb:")
    if check.bias:
        st.markdown("Init well: set the last layer's bias to")
        st.dataframe(pd.DataFrame({"output": range(len(check.bias)), "bias": check.bias}), hide_index=True,
                     width="stretch", height=min(36 + 35 * len(check.bias), 250),
                     column_config={"bias": st.column_config.NumberColumn(format="%.4f")})


def _gradients(sel, run, check: verdicts.Gradients, key: str) -> None:
    st.caption(f"{check.checked:,} parameters that require grad, on a real batch")
    problems = [{"parameter": name, "problem": "no gradient (None or all zeros)"} for name in check.without]
    problems += [{"parameter": name, "problem": "NaN or inf in its gradient"} for name in check.non_finite]
    if problems:
        st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")
    if check.norms:
        st.dataframe(pd.DataFrame({"parameter": list(check.norms), "gradient norm": list(check.norms.values())}),
                     hide_index=True, width="stretch", height=min(36 + 35 * len(check.norms), 250),
                     column_config={"gradient norm": st.column_config.NumberColumn(format="%.3g")})


def _batch_independence(sel, run, check: verdicts.BatchIndependence, key: str) -> None:
    st.plotly_chart(check_figures.dependency_figure(
        check.matrix, "Which output depends on which input (the batch)", "output of example",
        "input of example", marks=verdicts.dependent_cells(check.matrix, future_only=False),
        floor=verdicts.DEPENDENCE_THRESHOLD), width="stretch", key=key)
    if check.pairs:
        st.text(f"Examples that mix (output ← input), the first {len(check.pairs)}: "
                + ", ".join(_pair(p, "{} ← {}") for p in check.pairs))
    if check.batch_norm:
        st.info("BatchNorm in train mode mixes the examples of a batch by design (expected, not a bug): "
                + ", ".join(markdown_literal(name) for name in check.batch_norm), icon=":material/info:")


def _causality(sel, run, check: verdicts.Causality, key: str) -> None:
    st.plotly_chart(check_figures.dependency_figure(
        check.matrix, "Which position's output depends on which input position", "output position",
        "input position", marks=verdicts.dependent_cells(check.matrix, future_only=True),
        floor=verdicts.DEPENDENCE_THRESHOLD), width="stretch", key=key)
    if check.first_leak:
        st.text("First leak: " + _pair(check.first_leak, "the output at position {} sees the input at {}, "
                                                         "a future position"))


def _overfit(sel, run, check: verdicts.OverfitOneBatch, key: str) -> None:
    st.plotly_chart(check_figures.overfit_figure(check.curve, check.threshold, check.floor), width="stretch",
                    key=key)
    numbers = [f"{check.n} examples", f"{check.steps} steps"]
    numbers += [f"final loss {check.final_loss:.3g}"] if check.final_loss is not None else []
    numbers += [f"must get under {check.threshold:.3g}"] if check.threshold is not None else []
    st.caption(" · ".join(numbers))


def _input_independent(sel, run, check: verdicts.InputIndependent, key: str) -> None:
    table = pd.DataFrame({"": ["the model", "its twin on zeroed inputs"],
                          "held-out loss": [check.real_val_loss, check.twin_val_loss],
                          "training loss": [check.real_train_loss, check.twin_train_loss]})
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in ("held-out loss", "training loss")})


def _lr_range(sel, run, check: verdicts.LrRange, key: str) -> None:
    if check.suggested is not None:
        st.metric("Suggested learning rate", f"{check.suggested:.3g}",
                  help="The steepest fall of the smoothed loss, as fastai's and Lightning's finders pick")
    st.plotly_chart(check_figures.lr_range_figure(check.lrs, check.losses, check.suggested), width="stretch",
                    key=key)
    st.caption(f"{check.steps or len(check.lrs)} steps, the learning rate growing exponentially")


def _batch_seen(sel, run, check: verdicts.BatchSeen, key: str) -> None:
    about = [("shape", " x ".join(str(n) for n in check.shape)), ("dtype", check.dtype),
             ("min", _number(check.min)), ("max", _number(check.max)), ("NaN or inf", f"{check.nan:,}")]
    st.dataframe(pd.DataFrame(about, columns=["", "value"]), hide_index=True, width="stretch")
    if check.nan:
        st.error(f"{check.nan:,} NaN or inf values enter the net.", icon=":material/error:")
    if check.channels:
        st.dataframe(pd.DataFrame(check.channels), hide_index=True, width="stretch",
                     height=min(36 + 35 * len(check.channels), 250), column_config={
            c: st.column_config.NumberColumn(format="%.4g") for c in ("mean", "std")})
    seen = ui.run_artifact(sel, run, "batch_seen") or {}
    images = seen.get("images") if isinstance(seen, dict) else None
    if images:
        labels = [str(v) for v in seen.get("labels") or []]
        st.plotly_chart(check_figures.image_grid_figure(images, labels), width="content", key=key)
        st.caption(f"The first {len(images)} images of the batch, each titled by its label, as they enter the net "
                   "(scaled to 0–255)")


def _pair(pair, text: str) -> str:
    try:
        return text.format(int(pair[0]), int(pair[1]))
    except (TypeError, ValueError, IndexError):
        return str(pair)


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


DRAWERS = {
    "loss_at_init": (lambda c: bool(c.loss or c.advice or c.bias), _loss_at_init),
    "gradients": (lambda c: bool(c.checked or c.without or c.non_finite), _gradients),
    "batch_independence": (lambda c: bool(c.matrix), _batch_independence),
    "causality": (lambda c: bool(c.matrix), _causality),
    "overfit_one_batch": (lambda c: bool(c.curve) and not c.rows, _overfit),  # the app's (rows set): Train's tab
    "input_independent": (lambda c: c.twin_val_loss is not None and c.real_val_loss is not None, _input_independent),
    "lr_range": (lambda c: bool(c.lrs), _lr_range),
    "just_before_the_net": (lambda c: bool(c.shape), _batch_seen),
}


# -- the watched histograms --------------------------------------------------------------------------------------
def _watch(sel: ui.Selection, run: RunRecord) -> dict | None:
    value = ui.run_artifact(sel, run, "watch")
    return value if isinstance(value, dict) and isinstance(value.get("series"), dict) and value["series"] else None


def watch(sel: ui.Selection, run: RunRecord, key: str) -> None:
    """run.watch's histograms: pick a series (a layer's gradients, weights or activations), see it over steps."""
    found = _watch(sel, run)
    if found is None:
        return
    series = found["series"]
    with st.container(border=True):
        st.markdown("**Watched histograms** (run.watch)")
        name = st.selectbox("Series", sorted(series), key=f"{key}:watch:{run.id}",
                            help="gradients/…: a parameter's gradient; parameters/…: its values; activations/…: a "
                                 "module's output")
        st.plotly_chart(check_figures.watch_figure(series.get(name) or [], name), width="stretch",
                        key=f"{key}:watchfig:{run.id}")
        st.caption(f"{len(series)} series, a histogram every {markdown_literal(found.get('every', '?'))} steps")
