"""The views of a run on a table of duplicated rows: the fixed batch of "predictions over training" is seeded,
stratified and made of distinct inputs; top losses and the batch view show each distinct input once, with how
many rows share it."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recipe_core.config import TrainConfig, load_settings
from recipe_core.data import ingest
from recipe_core.tracking.store import Store
from recipe_core.training import artifacts, dataset, features, runs, splits


def test_stratified_order_takes_every_class_then_in_proportion():
    labels = np.array([0] * 12 + [1] * 4 + [2])
    order = splits.stratified_order(labels)
    assert sorted(order.tolist()) == list(range(17))
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]  # every class once first
    assert np.bincount(labels[order[:8]]).tolist() == [5, 2, 1]  # then about 12:4 (the one 2 is already in)
    assert order[labels[order] == 0].tolist() == list(range(12))  # within a class, the given order


def sorted_by_label_with_copies(n_inputs=100, minority=0.1, copies=5, d=3, seed=0):
    """Validation rows in the worst order for "the first 16": every majority row first, each input repeated."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_inputs, d)).astype(np.float32)
    y = (np.arange(n_inputs) >= n_inputs * (1 - minority)).astype(int)
    return np.repeat(X, copies, axis=0), np.repeat(y, copies)


def test_the_dynamics_batch_is_distinct_stratified_and_seeded():
    X, y = sorted_by_label_with_copies()
    chosen = dataset.dynamics_batch(features.input_groups(X), y, "classification", seed=0)
    assert len(chosen) == dataset.DYNAMICS_ROWS
    assert len(np.unique(X[chosen], axis=0)) == dataset.DYNAMICS_ROWS  # 16 distinct inputs, no copies
    # 10% of the inputs are the minority class: it is there, about in proportion (16 x 10% = 1.6)
    assert np.bincount(y[chosen]).tolist() in ([14, 2], [15, 1])
    assert y[chosen].tolist() == sorted(y[chosen].tolist())  # ordered by label: the figure reads class by class
    assert dataset.dynamics_batch(features.input_groups(X), y, "classification", seed=0).tolist() == chosen.tolist()
    assert dataset.dynamics_batch(features.input_groups(X), y, "classification", seed=1).tolist() != chosen.tolist()
    assert chosen.tolist() != list(range(dataset.DYNAMICS_ROWS))  # not the lowest row ids (one row x5, one class)


def test_the_dynamics_batch_never_repeats_an_input():
    X, y = sorted_by_label_with_copies(n_inputs=6, copies=10, minority=0.5)
    chosen = dataset.dynamics_batch(features.input_groups(X), y, "classification", seed=0)
    assert len(chosen) == 6 and len(np.unique(X[chosen], axis=0)) == 6  # fewer distinct inputs: fewer examples
    values = np.linspace(0, 1, 60)
    chosen = dataset.dynamics_batch(features.input_groups(X), values, "regression", seed=0)
    assert len(chosen) == 6 and values[chosen].tolist() == sorted(values[chosen].tolist())


def test_top_losses_show_each_distinct_input_once_with_its_count():
    # 3 copies of input A labelled 0, 1, 1; 2 copies of B labelled 1; C once labelled 0. Predictions are per input.
    A, B, C = [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]
    data = SimpleNamespace(task="classification", classes=["no", "yes"],
                           X_val=np.array([A, B, A, C, A, B], dtype=np.float32), y_val=np.array([0, 1, 1, 0, 1, 1]),
                           rows_val=np.array([10, 11, 12, 13, 14, 15]))
    data.val_groups = features.input_groups(data.X_val)
    p = {"A": [0.9, 0.1], "B": [0.3, 0.7], "C": [0.6, 0.4]}
    pred = np.array([p["A"], p["B"], p["A"], p["C"], p["A"], p["B"]])
    top = artifacts.top_losses(data, pred)
    # by hand: A's worst rows are 12 and 14 (label 1, loss -ln 0.1); then C (-ln 0.6); then B (-ln 0.7)
    assert [(t.row, t.n_rows, t.n_labels) for t in top] == [(12, 3, 2), (13, 1, 1), (11, 2, 1)]
    assert [t.loss for t in top] == pytest.approx([-np.log(0.1), -np.log(0.6), -np.log(0.7)])
    assert top[0].label == "yes" and top[0].predicted == "no" and top[0].p_label == pytest.approx(0.1)
    assert [t.row for t in artifacts.top_losses(data, pred, k=2)] == [12, 13]
    # stored as before: the keys the page's table shows, p_label only for classification
    assert list(top[0].to_json()) == ["row", "label", "loss", "predicted", "p_label", "n_rows", "n_labels"]
    assert artifacts.read("top_losses", [t.to_json() for t in top]) == top


@pytest.fixture(scope="module")
def duplicated_run(tmp_path_factory):
    """One MLP run on 600 rows of 60 distinct inputs, sorted by label (the lowest ids are all one class)."""
    home = tmp_path_factory.mktemp("duplicates") / "recipe_home"
    home.mkdir()
    settings = load_settings({"RECIPE_HOME": str(home)})
    store = Store(settings.store_url)
    rng = np.random.default_rng(0)
    inputs = pd.DataFrame({"a": rng.normal(size=60).round(3), "b": rng.normal(size=60).round(3)})
    frame = inputs.iloc[rng.integers(0, 60, 600)].reset_index(drop=True)
    frame["y"] = np.where(frame["a"] > 0.5, "up", "down")
    frame = frame.sort_values("y", kind="stable").reset_index(drop=True)
    path = home.parent / "duplicated.csv"
    frame.to_csv(path, index=False)
    record = ingest.ingest_file(settings, store, path)
    run = runs.create(store, record, "y", TrainConfig(model="mlp", epochs=5, checks=False))
    run = runs.execute(settings, store, run.id)
    assert run.status == "finished", run.reason
    return store, run, frame


def test_the_runs_fixed_batch_is_distinct_inputs_of_both_classes(duplicated_run):
    store, run, frame = duplicated_run
    dyn = store.get_json(run.id, "dynamics")
    shown = frame.iloc[dyn["rows"]]
    assert len(dyn["rows"]) == dataset.DYNAMICS_ROWS and not shown[["a", "b"]].duplicated().any()
    assert set(dyn["labels"]) == {"down", "up"} and dyn["labels"] == shown["y"].tolist()
    assert all(len(p) == len(dyn["rows"]) for _, p in dyn["snapshots"])  # every snapshot predicts that batch
    split = splits.load(store.get_split(run.dataset_id, "y"))
    val = frame.iloc[split.rows("val")]
    copies = val.groupby(["a", "b"]).size()
    assert dyn["n_rows"] == [int(copies[(r.a, r.b)]) for r in shown.itertuples()]


def test_top_losses_and_the_batch_view_group_identical_inputs(duplicated_run):
    store, run, frame = duplicated_run
    top = store.get_json(run.id, "top_losses")
    inputs = frame.iloc[[t["row"] for t in top]][["a", "b"]]
    assert not inputs.duplicated().any() and top == sorted(top, key=lambda t: -t["loss"])
    split = splits.load(store.get_split(run.dataset_id, "y"))
    val = frame.iloc[split.rows("val")]
    for t in top:
        same = val[(val["a"] == frame.at[t["row"], "a"]) & (val["b"] == frame.at[t["row"], "b"])]
        assert t["n_rows"] == len(same) and t["n_labels"] == same["y"].nunique()

    batch = store.get_json(run.id, "batch")
    assert batch["batch_rows"] == 64 == sum(batch["n_rows"]) == len({r for ids in batch["row_ids"] for r in ids})
    assert not frame.iloc[batch["rows"]][["a", "b"]].duplicated().any()  # one entry per distinct input
    assert len(batch["values"]) == len(batch["rows"]) == len(batch["labels"]) == len(batch["decoded"]["a"])
    for row, ids, labels in zip(batch["rows"], batch["row_ids"], batch["row_labels"], strict=True):
        assert ids[0] == row and (frame.iloc[ids][["a", "b"]] == frame.loc[row, ["a", "b"]]).all().all()
        assert labels == frame.iloc[ids]["y"].tolist()
