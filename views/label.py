"""The Label page's views: where you are, the item as a person can judge it, the answer, the results."""
from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

import ui
from recipe_core import figures
from recipe_core.data import rows
from recipe_core.errors import RecipeError
from recipe_core.labelling import labels
from recipe_core.labelling.labels import Baseline
from recipe_core.labelling.progress import Progress, shown_text
from recipe_core.safetext import markdown_literal
from recipe_core.training import artifacts


def place(sel: ui.Selection, me: str, own: Progress) -> str:
    """The plain session key of where this person is in the sample, first set where they stopped."""
    key = f"label_pos:{sel.record.id}:{sel.target}:{me}"
    if key not in st.session_state:  # resume at the first item not yet labelled
        st.session_state[key] = own.resume_at
    st.session_state.setdefault("label_visit", uuid.uuid4().hex)  # client id: a resent click is one event
    return key


def _go(pos_key: str, n_items: int, step: int) -> None:
    st.session_state[pos_key] = min(max(st.session_state[pos_key] + step, 0), n_items - 1)


def _save(sel: ui.Selection, base: Baseline, me: str, pos_key: str, item: int, label) -> None:
    """Store the label (None: skip); say so only once the store has it, then move on."""
    visit = st.session_state["label_visit"]
    try:
        labels.add(sel.store, base, me, item, label, note=st.session_state.get("label_note", ""),
                   features=tuple(st.session_state.get("label_used", [])),
                   event_id=f"{visit}:{item}:{st.session_state.get('label_clicks', 0)}", who=sel.who)
    except RecipeError as e:
        st.session_state["label_error"] = str(e)
        return
    st.session_state["label_clicks"] = st.session_state.get("label_clicks", 0) + 1
    shown = "skipped" if label is None else markdown_literal(label)
    st.session_state["label_saved"] = f"Stored: item {item} = {shown}"
    st.session_state["label_note"] = ""  # note and features belong to this item only
    st.session_state["label_used"] = []
    _go(pos_key, len(base.items), 1)


def header(sel: ui.Selection, me: str, own: Progress) -> list[str]:
    """Progress, the columns to hide, and what the last click did; returns the hidden columns."""
    st.progress(own.done / own.n_items, text=f"{own.done} / {own.n_items} labelled by {markdown_literal(me)}")
    hidden = st.multiselect("Hide columns that leak the answer (the target is always hidden)",
                            [c for c in sel.record.column_names if c != sel.target],
                            key=f"label_hide:{sel.record.id}:{sel.target}")
    # Always one element, filled or empty: a message that came and went would shift the answer box below, and the
    # frontend would remount it and drop a number typed right after the last save (see item_view's caption).
    feedback = st.container()
    if "label_saved" in st.session_state:
        feedback.success(st.session_state.pop("label_saved"), icon=":material/check:")
    if "label_error" in st.session_state:
        feedback.error(markdown_literal(st.session_state.pop("label_error")), icon=":material/error:")
    return hidden


def item_view(sel: ui.Selection, base: Baseline, own: Progress, pos: int, hidden: list[str]) -> None:
    record, target, item = sel.record, sel.target, base.items[pos]
    st.subheader(f"Item {pos + 1} of {len(base.items)}  ·  row {item}")
    # The sample holds each input once; say how much of the data it stands for. Always one caption: an element that
    # comes and goes above the answer box shifts it, and the frontend then remounts it and drops what was typed.
    shared = base.shared.get(item, 1)
    st.caption(f"{shared:,} rows of the dataset have exactly this input; you label it once." if shared > 1 else
               "No other row of the dataset has exactly this input.")
    values = rows.row(ui.db(sel), item)
    shown = [c for c in record.column_names if c != target and c not in hidden]
    grid = labels.pixel_grid(shown)
    left, right = st.columns([1, 2])
    if grid is not None:
        left.plotly_chart(figures.pixel_figure([[values[c] for c in row] for row in grid]), key=f"img:{item}")
        shown = [c for c in shown if not any(c in row for row in grid)]
    profile_by_name = {p.name: p for p in ui.profile(sel).columns} if shown else {}
    text_columns = [c for c in shown if record.column(c).kind == "text"]
    for c in text_columns:
        right.markdown(f"**{markdown_literal(c)}**")
        right.text(shown_text(values[c]))
    table = pd.DataFrame([{"column": c, "value": str(values[c]),
                           "where it sits": labels.placed(values[c],
                                                          getattr(profile_by_name.get(c), "quantiles", None))}
                          for c in shown if c not in text_columns])
    if not table.empty:
        (right if grid is None else left).dataframe(table, hide_index=True, width="stretch")
    if item in own.mine:
        label = own.mine[item].label
        st.caption(f"Your label: {'skipped' if label is None else markdown_literal(label)}")


def answer(sel: ui.Selection, base: Baseline, me: str, pos_key: str, item: int) -> None:
    """Note, features used, one button per class (or a number box), and back / skip / next."""
    st.text_input("Note (optional): what made you decide", key="label_note", max_chars=labels.MAX_NOTE_CHARS)
    st.multiselect("Features I used", [c for c in sel.record.column_names if c != sel.target], key="label_used")
    if base.task == "classification":
        cols = st.columns(min(len(base.classes), 10))
        for k, name in enumerate(base.classes):
            cols[k % len(cols)].button(markdown_literal(name), key=f"class:{k}", shortcut=str(k) if k < 10 else None,
                                       on_click=_save, args=(sel, base, me, pos_key, item, name), width="stretch")
    else:
        with st.form("label_number", clear_on_submit=True, border=False):
            st.number_input(f"{markdown_literal(sel.target)} (Enter saves)", value=None, key="label_value")
            st.form_submit_button("Save", on_click=_save_number, args=(sel, base, me, pos_key, item))
    nav = st.columns(3)
    nav[0].button("← Back", key="label_back", shortcut="Left", on_click=_go, args=(pos_key, len(base.items), -1),
                  width="stretch")
    nav[1].button("Skip (S)", key="label_skip", shortcut="S", on_click=_save, args=(sel, base, me, pos_key, item, None),
                  width="stretch")
    nav[2].button("Next →", key="label_next", shortcut="Right", on_click=_go, args=(pos_key, len(base.items), 1),
                  width="stretch")


def _save_number(sel: ui.Selection, base: Baseline, me: str, pos_key: str, item: int) -> None:
    number = st.session_state.get("label_value")
    if number is None:
        st.session_state["label_error"] = f"type a number for {sel.target}"
    else:
        _save(sel, base, me, pos_key, item, number)


def your_score(base: Baseline, events: list, me: str, summary: dict) -> None:
    metric = _metric(base)
    you = next((a for a in summary["annotators"] if a["name"] == me), None)
    if you:
        st.markdown(f"**Your {metric}: {you[metric]:.4g}** (95% interval {you['ci_low']:.3g} – "
                    f"{you['ci_high']:.3g}) on {you['n_labelled']} items")
        if base.task == "classification":
            st.plotly_chart(figures.confusion_figure(labels.confusion(base, events, me), list(base.classes)),
                            width="stretch", key="label_confusion")


def _metric(base: Baseline) -> str:
    return "accuracy" if base.task == "classification" else "mae"


def human_baseline(sel: ui.Selection, base: Baseline, events: list, summary: dict) -> None:
    """Everyone's scores against the models', agreement, suspect labels and ambiguous inputs."""
    record, target, metric = sel.record, sel.target, _metric(base)
    st.subheader("The human baseline")
    team = pd.DataFrame(summary["annotators"])
    st.dataframe(team, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4g") for c in (metric, "ci_low", "ci_high")})
    model_runs = [r for r in sel.store.list_runs(record.id, target) if r.status == "finished"]
    predictions = {}
    for r in model_runs:
        stored = sel.store.get_artifact(r.id, "val_predictions")
        if stored is not None:
            predictions[r.id] = artifacts.load_predictions(stored)
    scores = labels.models_on_items(base, events, model_runs, predictions)
    st.plotly_chart(figures.human_vs_models_figure(scores, metric), width="stretch")
    st.dataframe(scores, hide_index=True, width="stretch")
    if summary["agreement"]:
        st.markdown("**Agreement** (Cohen's kappa per pair" + (f"; Fleiss' kappa {summary['fleiss_kappa']:.3f} on "
                    f"{summary['fleiss_n_items']} items" if "fleiss_kappa" in summary else "") + ")")
        st.dataframe(pd.DataFrame(summary["agreement"]), hide_index=True)
        st.caption(f"Items where people disagree: {', '.join(map(str, summary['disagreements'])) or 'none'}")
    suspects = summary["suspect_labels"]
    st.markdown(f"**Suspect labels**: {len(suspects)} items where people agree with each other but not with the "
                "dataset, on an input that has one label in the data")
    here = {"dataset": record.id, "target": target, **ui.author_param(sel)}  # a link keeps who you are
    for s in suspects:  # a page link, not a markdown one: the Data page is the app's root, "data?" is "Page not found"
        st.page_link("pages/data.py", label=f"row {s}", icon=":material/table_rows:",
                     query_params={**here, "row": str(s)})
    if base.n_ambiguous_inputs:
        st.markdown(f"**Ambiguous inputs**: {base.n_ambiguous_inputs:,} inputs of the dataset "
                    f"({base.n_ambiguous_rows:,} rows) have identical rows with different values of "
                    f"{markdown_literal(target)}: noise no labeller can remove; {len(summary['ambiguous_inputs'])} "
                    "are in the sample")
        st.dataframe(pd.DataFrame(summary["ambiguous_inputs"]), hide_index=True, width="stretch")
    st.plotly_chart(figures.features_used_figure(labels.features_used(events)), width="stretch")


def export_import(sel: ui.Selection, base: Baseline, me: str, events: list) -> None:
    with st.expander("Export and import labels"):
        for fmt, mime in (("csv", "text/csv"), ("parquet", "application/vnd.apache.parquet")):
            st.download_button(f"Download all labels ({fmt})",
                               data=lambda fmt=fmt: labels.export_bytes(base, events, fmt),
                               file_name=f"{sel.record.name}-{sel.target}-labels.{fmt}", mime=mime,
                               key=f"label_export_{fmt}")
        if not ui.may_write_or_say(sel, "import labels"):
            return
        upload = st.file_uploader("Import labels made elsewhere, as yours (CSV: item,label[,note])", type=["csv"],
                                  key="label_import")
        if upload is not None and st.button("Import", key="label_import_go"):
            try:
                n = labels.import_csv(sel.store, base, me, upload.getvalue(), who=sel.who)
                st.success(f"Imported {n} labels.")
            except RecipeError as e:
                ui.show_error(e)
