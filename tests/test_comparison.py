"""The Compare page's core: the runs table, filters, what changed and what it did, the URL view, exports."""
import io
import time

import numpy as np
import pandas as pd
import pytest

import recipe_core as rc
from recipe_core.compare import comparison
from recipe_core.compare.chart import ChartSpec
from recipe_core.errors import BadInput
from recipe_core.tracking.records import RunRecord

pytestmark = pytest.mark.usefixtures("settings")


def log(name, config, losses, accs=None, **kw):
    with rc.start_run(name=name, config=config, **kw) as run:
        for step, loss in enumerate(losses):
            run.log(step, val_loss=loss, **({"val_accuracy": accs[step]} if accs else {}))
    return run.run_id


@pytest.fixture
def three(store):
    a = log("base", {"lr": 1e-3, "dropout": 0.0, "seed": 0}, [1.0, 0.5, 0.7], [0.5, 0.8, 0.7], tags=["base"])
    b = log("dropout", {"lr": 1e-3, "dropout": 0.2, "seed": 0}, [1.0, 0.4, 0.3], [0.5, 0.85, 0.9], parent=a,
            hypothesis="dropout 0.2 should close the train/val gap")
    c = log("two-things", {"lr": 3e-3, "dropout": 0.5, "seed": 0}, [2.0, 1.5, 1.9], parent=a)
    return a, b, c


def test_runs_table_has_final_best_and_best_step_by_direction(store, three):
    a, b, c = three
    frame = comparison.runs_frame(store.list_runs(), store.metric_summaries())
    row = frame.set_index("id").loc[a]
    assert row["val_loss · final"] == 0.7 and row["val_loss · best"] == 0.5 and row["val_loss · best step"] == 1
    assert row["val_accuracy · best"] == 0.8 and row["val_accuracy · best step"] == 1  # accuracy: higher is better
    assert frame.set_index("id").loc[b, "parent"] == "base" and comparison.metric_keys(frame) == [
        "val_accuracy", "val_loss"]
    assert np.isnan(frame.set_index("id").loc[c, "val_accuracy · final"])  # c never logged it


def test_filters_search_and_top_n(store, three):
    a, b, c = three
    frame = comparison.runs_frame(store.list_runs(), store.metric_summaries())
    configs = {r.id: r.config for r in store.list_runs()}
    top = comparison.filter_runs(frame, comparison.RunFilter(metric="val_loss", top_n=2))
    assert top["id"].tolist() == [b, a]  # best (lowest) first
    assert comparison.filter_runs(frame, comparison.RunFilter(metric="val_accuracy"))["id"].tolist()[:2] == [b, a]
    assert comparison.filter_runs(frame, comparison.RunFilter(text="CLOSE THE"))["id"].tolist() == [b]
    assert comparison.filter_runs(frame, comparison.RunFilter(text="0.003"), configs)["id"].tolist() == [c]
    assert comparison.filter_runs(frame, comparison.RunFilter(tags=("base",)))["id"].tolist() == [a]
    bounded = comparison.filter_runs(frame, comparison.RunFilter(metric="val_loss", lo=0.35, hi=1.6))
    assert bounded["id"].tolist() == [a, c]
    with pytest.raises(BadInput, match="no run logged"):
        comparison.filter_runs(frame, comparison.RunFilter(metric="nope"))


def test_config_diff_and_the_change_from_a_parent(store, three):
    a, b, c = three
    runs = {r.id: r for r in store.list_runs()}
    diff = comparison.config_diff([runs[a], runs[b], runs[c]])
    assert diff["key"].tolist() == ["lr", "dropout"]
    assert diff.set_index("key").loc["dropout"].tolist() == ["0.0", "0.2", "0.5"]
    summaries = store.metric_summaries()
    one = comparison.change_from_parent(runs[b], runs[a], summaries)
    assert one.changed == {"dropout": (0.0, 0.2)} and one.one_change and not one.flagged
    assert one.deltas["val_loss"] == {"parent": 0.5, "run": 0.3, "delta": pytest.approx(-0.2), "better": True}
    assert one.hypothesis.startswith("dropout 0.2")
    two = comparison.change_from_parent(runs[c], runs[a], summaries)
    assert set(two.changed) == {"lr", "dropout"} and "2 things changed" in two.flagged
    assert two.deltas["val_loss"]["better"] is False
    same = comparison.change_from_parent(runs[a], runs[a], summaries)
    assert "nothing changed" in same.flagged


def test_a_different_model_or_dataset_counts_as_a_change():
    a = RunRecord(id="a", name="a", model="mlp", config={"seed": 0}, dataset_id="d1", target="y")
    b = RunRecord(id="b", name="b", model="gbm", config={"seed": 0}, dataset_id="d1", target="y")
    assert comparison.change_from_parent(b, a, {}).changed == {"model": ("mlp", "gbm")}


def test_the_view_round_trips_through_url_parameters():
    spec = ChartSpec(metric="val_loss", x="wall_time", log_y=True, smoothing="window", window=25, color_by="lr",
                     group_seeds=True, band="std", show_best=False, ema_weight=0.9)
    view = comparison.View(runs=("abc123", "def456"), spec=spec)
    params = comparison.view_to_params(view)
    assert all(isinstance(v, str) for v in params.values()) and params["runs"] == "abc123,def456"
    assert comparison.view_from_params(params) == view
    assert comparison.view_to_params(comparison.View(spec=ChartSpec(metric="m"))) == {"metric": "m"}


def test_hostile_url_values_keep_their_defaults():
    view = comparison.view_from_params({"runs": "ok1,../../etc,<script>,ok1", "x": "rm -rf", "ema_weight": "7",
                                        "window": "-3", "log_y": "maybe", "smoothing": "window", "metric": "m"})
    assert view.runs == ("ok1",)
    assert (view.spec.x, view.spec.ema_weight, view.spec.window, view.spec.log_y) == ("step", 0.6, 10, False)
    assert view.spec.smoothing == "window" and view.spec.metric == "m"


def test_exports_have_every_point(store):
    run_id = log("long", {}, list(np.linspace(1, 0, 30_000)))
    runs = comparison.selected_runs(store, [run_id])
    frame = comparison.histories_frame(runs, comparison.load_histories(store, [run_id], ["val_loss"]))
    assert len(frame) == 30_000 and frame["step"].tolist() == list(range(30_000))
    back = pd.read_parquet(io.BytesIO(comparison.export_bytes(frame, "parquet")))
    pd.testing.assert_frame_equal(back, frame)
    assert pd.read_csv(io.BytesIO(comparison.export_bytes(frame, "csv")))["value"].iloc[-1] == 0.0
    with pytest.raises(BadInput):
        comparison.export_bytes(frame, "xls")


def test_figure_exports_html_and_json(settings, store):
    ids = [log("a", {"seed": s}, [1.0, 0.5, 0.25]) for s in range(2)]
    fig, counts, runs = comparison.figure(settings, store, ids, ChartSpec(metric="val_loss"))
    assert counts["total"] == 6 and [r.id for r in runs] == ids
    html = comparison.figure_bytes(fig, "html")
    assert b"<html>" in html[:100] and b"plotly" in html and len(html) > 1_000_000  # plotly.js inlined: offline
    assert comparison.figure_bytes(fig, "json").startswith(b"{")


def test_reference_lines_apply_to_runs_of_one_target(settings, store):
    from trained import SAMPLES, train

    from recipe_core.data import ingest

    wine = ingest.ingest_file(settings, store, SAMPLES / "wine.csv")
    prior = train(settings, store, wine, "cultivar", model="prior")
    linear = train(settings, store, wine, "cultivar", model="linear", checks=False)
    refs = comparison.references(settings, store, [prior, linear], "val_loss")
    assert refs == {"prior": pytest.approx(prior.metrics["val_loss"])}
    api = log("script", {}, [0.5, 0.4])
    assert comparison.references(settings, store, [linear, store.get_run(api)], "val_loss") == {}  # mixed: none
    fig, _, _ = comparison.figure(settings, store, [linear.id], ChartSpec(metric="val_loss"))
    assert any("prior" in (a.text or "") for a in fig.layout.annotations) or any(
        "prior" in str(s) for s in fig.layout.shapes)


def test_a_run_whose_process_stopped_beating_is_shown_and_filtered_as_lost(store, monkeypatch):
    # The store derives "lost" when it reads a run (heartbeat.lost_after_s); the table shows what the store says.
    alive = store.add_run(RunRecord(id="a", name="a", model="m", config={}, status="running"))
    dead = store.add_run(RunRecord(id="b", name="b", model="m", config={}, status="running",
                                   heartbeat=time.time() - 3600, host="box", pid=4242))
    frame = comparison.runs_frame(store.list_runs(), {})
    assert frame["status"].tolist() == ["running", "lost"]
    assert comparison.filter_runs(frame, comparison.RunFilter(status=("running",)))["id"].tolist() == [alive.id]
    assert store.get_run(dead.id).reason.startswith("no sign of life from box pid 4242 since ")


def test_where_early_stopping_ended_a_run_is_in_the_table():
    stopped = RunRecord(id="a", name="a", model="mlp", config={}, status="finished",
                        metrics={"val_loss": 0.3, "best_epoch": 12, "stopped_epoch": 17, "max_epochs": 300})
    frame = comparison.runs_frame([stopped, RunRecord(id="b", name="b", model="mlp", config={})], {})
    assert frame["stopped"].tolist() == ["epoch 17 of 300, best 12", ""]
