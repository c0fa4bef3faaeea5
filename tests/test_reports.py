"""What the pages show of runs, as plain values: verdicts, the leaderboard, references, the Compare page's table
columns, chart metric, shared view and import summary."""
import math

import pandas as pd

from recipe_core.compare import comparison, reports
from recipe_core.compare.chart import ChartSpec
from recipe_core.compare.reports import Outcome
from recipe_core.tracking.records import RunRecord


def run(i: int, **kw) -> RunRecord:
    return RunRecord(id=f"r{i}", name=f"run{i}", model=kw.pop("model", "mlp"), config=kw.pop("config", {}),
                     status=kw.pop("status", "finished"), created_at=f"2026-01-0{i}T10:00:00.000+00:00", **kw)


def test_a_check_outcome_is_a_word_without_markup():
    assert [reports.outcome(ok) for ok in (True, False, None)] == [Outcome.PASS, Outcome.FAIL, Outcome.NA]
    assert {v.value for v in Outcome} == {"pass", "FAIL", "n/a"}
    assert not any(":" in v.value or "[" in v.value for v in Outcome)  # the colour and the icon are the view's


def test_checks_summary_counts_only_the_checks_that_apply():
    assert reports.checks_summary({}) == "–"
    assert reports.checks_summary({"a": {"ok": True}, "b": {"ok": None}}) == "1/1 passed"
    assert reports.checks_summary({"a": {"ok": True}, "b": {"ok": False}, "c": {"ok": None}}) == "1 failed of 2"


def test_checks_come_in_the_recipe_order_then_the_rest():
    checks = {"zzz": {}, "reproducible": {}, "loss_at_init": {}}
    assert [name for name, _ in reports.ordered_checks(checks)] == ["loss_at_init", "reproducible", "zzz"]


def test_the_leaderboard_puts_the_best_validation_loss_first_and_unfinished_runs_last():
    runs = [run(1, metrics={"val_loss": 0.5}), run(2, status="running"), run(3, metrics={"val_loss": 0.2})]
    board = reports.leaderboard(runs)
    assert board["id"].tolist() == ["r3", "r1", "r2"] and math.isnan(board["val_loss"].iloc[2])
    assert board["created"].iloc[0] == "2026-01-03 10:00:00"
    assert reports.leaderboard([]).empty


def test_references_take_the_latest_finished_baselines_and_the_people():
    prior_old = run(1, model="prior", metrics={"val_loss": 0.9})
    prior_new = run(2, model="prior", metrics={"val_loss": 0.8, "val_accuracy": 0.4})
    prior_running = run(3, model="prior", status="running", metrics={"val_loss": 0.1})
    twin = run(4, checks={"input_independent": {"twin_val_loss": 0.7}})
    runs = [prior_old, prior_new, twin, prior_running]
    assert reports.references(runs) == {"prior": 0.8, "input-independent": 0.7}
    human = {"annotators": [{"accuracy": 0.9}, {"accuracy": 0.7}, {"accuracy": None}]}
    refs = reports.references(runs, "val_accuracy", human)
    assert refs["prior"] == 0.4 and "input-independent" not in refs
    assert refs["human (2 annotators, labelled sample)"] == 0.8


def test_the_metrics_table_has_four_digits_and_the_interval():
    table = reports.metrics_table({"metrics": {"acc": 0.912345}, "intervals": {"acc": [0.8, 0.95]}})
    assert table.to_dict("records") == [{"metric": "acc", "value": "0.9123", "95% interval": "0.8 – 0.95"}]


def test_a_signed_metric_keeps_fixed_decimals():
    assert reports.metric_format("val_r2") == "%.3f" and reports.metric_format("val_loss") == "%.4g"


def test_history_frame_names_the_stored_fields():
    frame = reports.history_frame([("r1", "loss", 0, 1.0, None, 5.0)])
    assert list(frame.columns) == ["run_id", "key", "step", "value", "epoch", "wall_time"]


# -- the Compare page ---------------------------------------------------------------------------------------
def test_a_link_with_a_new_view_replaces_the_one_drawn_and_none_keeps_it():
    drawn = comparison.View(runs=("a1",), spec=ChartSpec(metric="val_loss", log_y=True))
    assert reports.linked_view({}, None) == comparison.View()  # a first visit without a view: the default
    assert reports.linked_view({"dataset": "d1"}, drawn) is None  # back from another page: keep what was drawn
    assert reports.linked_view(comparison.view_to_params(drawn), drawn) is None  # the URL the page wrote itself
    linked = reports.linked_view({"runs": "b1,b2", "metric": "train_loss", "dataset": "d1"}, drawn)
    assert linked.runs == ("b1", "b2") and linked.spec.metric == "train_loss" and not linked.spec.log_y


def test_the_table_leads_with_the_focus_metric_then_the_others_finals():
    frame = comparison.runs_frame([run(1)], {})
    present = [*frame.columns, "loss · final", "loss · best", "loss · best step", "acc · final", "acc · best"]
    keys = ["acc", "loss"]
    focus = reports.focus_metric("", keys)
    assert focus == "acc"  # no val_loss: the first logged
    assert reports.focus_metric("", ["acc", "val_loss"]) == "val_loss"
    assert reports.focus_metric("loss", keys) == "loss" and reports.focus_metric("", []) == ""
    columns = reports.table_columns(present, keys, "loss")
    assert columns[:9] == list(reports.RUN_COLUMNS)
    assert columns[9:13] == ["loss · final", "loss · best", "loss · best step", "acc · final"]
    assert columns[13:] == list(reports.PROVENANCE_COLUMNS)
    assert "acc · best" not in columns  # only the focus metric shows its best


def test_the_chart_keeps_the_metric_asked_for_when_the_runs_logged_it():
    assert reports.chart_metric("train_loss", ["train_loss", "val_loss"]) == "train_loss"
    assert reports.chart_metric("acc", ["train_loss", "val_loss"]) == "val_loss"
    assert reports.chart_metric("acc", ["b", "a"]) == "b"
    assert reports.chart_metric("acc", []) == "acc"  # nothing charted yet: what the link asked for


def test_config_keys_are_the_scalar_ones():
    runs = [run(1, config={"lr": 1e-3, "layers": [64, 64]}), run(2, config={"seed": 1, "opt": {"name": "adam"}})]
    assert reports.config_keys(runs) == ["lr", "seed"]


def test_a_note_time_is_in_utc():
    assert reports.note_time(0) == "1970-01-01 00:00 UTC"


def test_an_import_says_what_was_new_and_what_was_there():
    imported = [{"name": "a", "run_id": "1"}, {"name": "b", "run_id": "2", "already": True}]
    assert reports.imported_names(imported) == (["a"], 1)
    assert reports.imported_names([]) == ([], 0)


def test_the_core_report_has_no_streamlit_markup():
    board = reports.leaderboard([run(1, checks={"a": {"ok": False}})])
    assert isinstance(board, pd.DataFrame) and board["checks"].iloc[0] == "FAIL a"
    source = open(reports.__file__, encoding="utf-8").read()
    assert ":green[" not in source and ":red[" not in source and ":material/" not in source
