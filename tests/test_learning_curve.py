"""The learning curve's core: start queues one run per share and seed of a run's config (checks off, tagged, named),
refuses what it cannot train, the background start hands the CLI exactly that, and the points, the count of ended
runs and the verdict read the curve's table."""
import inspect
from dataclasses import replace

import pandas as pd
import pytest
from trained import wait_for

from recipe_core.config import TrainConfig
from recipe_core.errors import BadInput
from recipe_core.search import learning_curve
from recipe_core.training import jobs, runs


@pytest.fixture
def parent(settings, store, wine):
    """A finished linear run of wine -> cultivar, trained inline (seed 7, so the seeds of the curve show)."""
    return runs.execute(settings, store, runs.create(store, wine, "cultivar",
                                                     TrainConfig(model="linear", seed=7, l2=0.5, checks=False)).id)


def test_start_needs_no_settings():
    assert list(inspect.signature(learning_curve.start).parameters)[:2] == ["store", "parent"]


def test_start_queues_one_run_per_share_and_seed(store, parent):
    curve, queued = learning_curve.start(store, parent, fractions=(1.0, 0.25, 0.25), seeds=2, author="ann")
    assert len(queued) == 4  # the shares sorted, a share given twice trained once
    assert [(r.config["train_fraction"], r.seed) for r in queued] == [(0.25, 7), (0.25, 8), (1.0, 7), (1.0, 8)]
    assert all(r.status == "queued" and r.parent_id == parent.id and r.author == "ann" for r in queued)
    assert all(r.tags == (learning_curve.TAG + curve,) for r in queued)
    assert [r.name for r in queued] == [f"curve-{curve} 25% s7", f"curve-{curve} 25% s8",
                                        f"curve-{curve} 100% s7", f"curve-{curve} 100% s8"]
    assert queued[0].hypothesis == "learning curve: 25% of the training rows"
    # the parent's config otherwise, with the checks off: points of one curve, not runs to inspect one by one
    assert all(r.config["l2"] == 0.5 and r.config["model"] == "linear" and r.config["checks"] is False
               for r in queued)
    assert learning_curve.curves_of(store, parent) == {curve: min(r.created_at for r in queued)}


@pytest.mark.parametrize("fractions, seeds, message", [
    ((), 3, "fractions must be"), ((0.0, 0.5), 3, "fractions must be"), ((1.5,), 3, "fractions must be"),
    ((0.5,), 0, "seeds must be"), ((0.5,), 21, "seeds must be"), ((0.5,), 1.5, "seeds must be"),
])
def test_start_refuses_shares_and_seeds_it_cannot_train(store, parent, fractions, seeds, message):
    with pytest.raises(BadInput, match=message):
        learning_curve.start(store, parent, fractions=fractions, seeds=seeds)
    assert [r.id for r in store.list_runs()] == [parent.id]  # nothing queued


def test_start_refuses_a_run_not_trained_here(store, parent):
    with pytest.raises(BadInput, match="a run trained here"):
        learning_curve.start(store, replace(parent, source="tensorboard"))


def test_the_table_reads_each_run_and_the_rows_it_trained_on(settings, store, parent):
    curve, queued = learning_curve.start(store, parent, fractions=(0.25, 1.0), seeds=1)
    runs.execute(settings, store, queued[0].id)  # the 25% run trains; the other still waits
    frame = learning_curve.table(store, curve)
    assert frame.set_index("run_id").loc[queued[0].id, "n_train"] == 31  # a quarter of wine's 124 training rows
    assert sorted(frame["status"]) == ["finished", "queued"] and learning_curve.ended(frame) == 1
    assert learning_curve.in_progress(settings, store, parent)  # a run of the curve is still queued
    points = learning_curve.summary(frame)
    assert points["fraction"].tolist() == [0.25] and points["runs"].tolist() == [1]  # finished runs only


def frame_of(rows):
    return pd.DataFrame(rows, columns=["fraction", "n_train", "seed", "status", "run_id", "val_loss"])


def test_the_points_are_mean_min_max_and_std_over_the_finished_seeds():
    frame = frame_of([(0.5, 50, 0, "finished", "a", 1.0), (0.5, 50, 1, "finished", "b", 2.0),
                      (0.5, 50, 2, "failed", "c", None), (1.0, 100, 0, "finished", "d", 0.5),
                      (1.0, 100, 1, "finished", "e", 0.7), (1.0, 100, 2, "cancelled", "f", 9.0)])
    points = learning_curve.summary(frame)
    assert points.columns.tolist() == ["fraction", "n_train", "runs", "mean", "min", "max", "std"]
    assert points[["fraction", "n_train", "runs", "mean", "min", "max"]].values.tolist() == [
        [0.5, 50, 2, 1.5, 1.0, 2.0], [1.0, 100, 2, 0.6, 0.5, 0.7]]
    assert points["std"].tolist() == pytest.approx([0.7071, 0.1414], abs=1e-4)
    assert learning_curve.ended(frame) == 6
    assert learning_curve.summary(frame, "val_accuracy").empty  # a metric no run logged: no points
    assert learning_curve.summary(frame.iloc[:0]).empty


def points(means, spread):
    return pd.DataFrame({"fraction": [0.5, 1.0], "n_train": [50, 100], "runs": 3, "mean": means,
                         "min": [m - spread / 2 for m in means], "max": [m + spread / 2 for m in means], "std": 0.1})


def test_the_verdict_weighs_the_last_step_against_the_spread_between_seeds():
    assert learning_curve.verdict(points([1.0, 0.5], 0.1)).startswith("Still improving")
    assert learning_curve.verdict(points([1.0, 0.95], 0.1)).startswith("Flattening")
    assert learning_curve.verdict(points([1.0, 1.1], 0.1)).startswith("Flat or worse")
    assert learning_curve.verdict(points([0.8, 0.9], 0.05), "val_accuracy").startswith("Still improving")
    assert learning_curve.verdict(points([1.0, 0.5], 0.1).iloc[:1]).startswith("Train at least two")


def test_the_background_start_hands_the_cli_the_shares_seeds_and_author(settings, parent, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start_command", lambda settings_, argv, **kw: started.append((argv, kw)))
    learning_curve.start_in_background(settings, parent, [0.25, 1.0], 2, author="")
    assert started == [(["learning-curve", parent.id, "--seeds", "2", "--fractions", "0.25,1.0",
                         "--author", "anonymous"], {"label": f"curve-of:{parent.id}"})]


def test_a_background_curve_that_fails_is_found_by_its_run_and_says_why(settings, store, parent):
    command = learning_curve.start_in_background(settings, parent, [1.5], 1, author="ann")
    assert learning_curve.background_command(settings, parent.id) == command
    state = wait_for(lambda: (s := jobs.command_state(settings, command)) and not s.active and s, timeout=120)
    assert state.status == "failed" and "fractions must be" in state.error
    assert not learning_curve.in_progress(settings, store, parent)  # its process ended, and it queued nothing
    assert learning_curve.background_command(settings, "another-run") is None
