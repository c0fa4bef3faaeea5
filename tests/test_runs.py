"""Runs end to end on the sample data: oracles (Dummy*, the formula), seeds, and the checks going red on
broken data (noise, shuffled labels)."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import log_loss
from trained import SAMPLES, train

from recipe_core.config import TrainConfig
from recipe_core.data import ingest
from recipe_core.errors import BadInput
from recipe_core.training import artifacts, runs, splits


@pytest.fixture
def sample(settings, store):
    def add(name: str):
        return ingest.ingest_file(settings, store, SAMPLES / f"{name}.csv")
    return add


def test_prior_equals_dummy_classifier_on_the_same_split(settings, store, sample):
    wine = sample("wine")
    run = train(settings, store, wine, "cultivar", model="prior")
    assert run.status == "finished", run.reason
    # The oracle, computed without the app's features or models: the raw file and the stored split.
    raw = pd.read_csv(SAMPLES / "wine.csv")
    split = splits.load(store.get_split(wine.id, "cultivar"))
    y_train, y_val = raw["cultivar"].iloc[split.rows("train")], raw["cultivar"].iloc[split.rows("val")]
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((len(y_train), 1)), y_train)
    expected = log_loss(y_val, dummy.predict_proba(np.zeros((len(y_val), 1))), labels=dummy.classes_)
    assert run.metrics["val_loss"] == pytest.approx(expected, rel=1e-9)
    assert run.metrics["val_accuracy"] == pytest.approx((y_val == y_train.mode()[0]).mean())
    assert run.checks["input_independent"]["ok"] is None  # the prior is the reference, not a model to judge


def test_mlp_on_wine_passes_every_check_and_records_its_views(settings, store, sample):
    wine = sample("wine")
    run = train(settings, store, wine, "cultivar", model="mlp")
    assert run.status == "finished", run.reason
    assert {name: c["ok"] for name, c in run.checks.items()} == {
        "loss_at_init": True, "input_independent": True, "overfit_one_batch": True, "batch_independence": True,
        "capacity": True, "reproducible": None}
    assert run.metrics["val_accuracy"] > 0.9
    # the loss at init is the entropy of the training split's class prior
    raw = pd.read_csv(SAMPLES / "wine.csv")
    split = splits.load(store.get_split(wine.id, "cultivar"))
    prior = raw["cultivar"].iloc[split.rows("train")].value_counts(normalize=True).to_numpy()
    assert run.checks["loss_at_init"]["expected"] == pytest.approx(-(prior * np.log(prior)).sum())
    # what the page shows: the batch, the dynamics, the top losses, the validation predictions
    batch = store.get_json(run.id, "batch")
    assert len(batch["rows"]) == 64 and batch["n_features"] == 13 and sum(batch["stats"]["nan"]) == 0
    assert set(batch["rows"]) <= set(split.rows("train").tolist())
    dynamics = store.get_json(run.id, "dynamics")
    assert dynamics["snapshots"][0][0] == 0 and len(dynamics["snapshots"]) > 10
    top = store.get_json(run.id, "top_losses")
    assert top == sorted(top, key=lambda t: -t["loss"]) and set(t["row"] for t in top) <= set(split.rows("val"))
    rows, pred = artifacts.load_predictions(store.get_artifact(run.id, "val_predictions"))
    assert (rows == split.rows("val")).all() and pred.shape == (len(rows), 3)
    history = store.metric_history([run.id], ["val_loss", "twin_val_loss", "train_loss"])
    keys = {k for _, k, *_ in history}
    assert keys == {"val_loss", "twin_val_loss", "train_loss"}


def test_same_seed_same_metrics_different_seed_differs(settings, store, sample):
    wine = sample("wine")
    first = train(settings, store, wine, "cultivar", model="mlp", epochs=30, checks=False)
    again = train(settings, store, wine, "cultivar", model="mlp", epochs=30, checks=False)
    other = train(settings, store, wine, "cultivar", model="mlp", epochs=30, checks=False, seed=1)
    assert again.metrics == first.metrics
    assert again.checks["reproducible"]["ok"] is True and again.checks["reproducible"]["earlier_run"] == first.id
    assert other.metrics["val_loss"] != first.metrics["val_loss"]
    assert other.checks["reproducible"]["ok"] is None


def test_no_bias_init_starts_at_ln_c(settings, store, sample):
    wine = sample("wine")
    run = train(settings, store, wine, "cultivar", model="mlp", epochs=5, bias_init=False)
    check = run.checks["loss_at_init"]
    assert check["ok"] is True and check["expected"] == pytest.approx(np.log(3))
    assert check["measured"] == pytest.approx(np.log(3), rel=0.01)


def test_regression_predicts_in_the_targets_units(settings, store, sample):
    diabetes = sample("diabetes")
    run = train(settings, store, diabetes, "disease_progression", model="mlp")
    assert run.status == "finished" and run.task == "regression"
    raw = pd.read_csv(SAMPLES / "diabetes.csv")
    split = splits.load(store.get_split(diabetes.id, "disease_progression"))
    y_train = raw["disease_progression"].iloc[split.rows("train")]
    assert run.checks["loss_at_init"]["expected"] == pytest.approx(np.var(y_train))  # variance around the mean
    assert all(c["ok"] is not False for c in run.checks.values()), run.checks
    _, pred = artifacts.load_predictions(store.get_artifact(run.id, "val_predictions"))
    assert 50 < pred.mean() < 250  # the target's own units, no hidden scaling
    assert set(run.metrics) == {"val_loss", "val_mse", "val_mae", "val_r2"}


@pytest.mark.parametrize("model", ["linear", "gbm"])
def test_input_independent_goes_red_on_noise(settings, store, sample, model):
    noise = sample("noise")
    run = train(settings, store, noise, "label", model=model)
    assert run.checks["input_independent"]["ok"] is False
    assert "does not use its input" in run.checks["input_independent"]["message"]


def test_input_independent_goes_red_on_shuffled_labels(settings, store, tmp_path):
    raw = pd.read_csv(SAMPLES / "wine.csv")
    raw["cultivar"] = raw["cultivar"].sample(frac=1.0, random_state=0).to_numpy()  # labels no longer match rows
    path = tmp_path / "wine_shuffled.csv"
    raw.to_csv(path, index=False)
    record = ingest.ingest_file(settings, store, path)
    sound = train(settings, store, ingest.ingest_file(settings, store, SAMPLES / "wine.csv"), "cultivar",
                  model="linear")
    broken = train(settings, store, record, "cultivar", model="linear")
    assert sound.checks["input_independent"]["ok"] is True
    assert broken.checks["input_independent"]["ok"] is False


def test_id_like_columns_are_left_out_by_default(settings, store, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer_id": np.arange(300) * 7 + 1000, "x": rng.normal(size=300)})
    frame["y"] = np.where(frame["x"] > 0, "up", "down")
    path = tmp_path / "ids.csv"
    frame.to_csv(path, index=False)
    record = ingest.ingest_file(settings, store, path)
    run = train(settings, store, record, "y", model="linear", checks=False)
    used = store.get_json(run.id, "features")
    assert used["excluded"] == ["customer_id"] and used["columns"] == ["x"]
    kept = train(settings, store, record, "y", model="linear", checks=False, exclude=())
    assert store.get_json(kept.id, "features")["columns"] == ["customer_id", "x"]


@pytest.mark.parametrize("values, message", [
    (["same"] * 40, "only one class"),
    ([None] * 40, "no rows with a value"),
])
def test_a_hopeless_target_is_one_line_before_any_run(settings, store, tmp_path, values, message):
    frame = pd.DataFrame({"x": np.arange(40.0), "t": values})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    record = ingest.ingest_file(settings, store, path)
    with pytest.raises(BadInput, match=message):
        runs.preflight(settings, record, "t", TrainConfig(model="linear"))
    assert store.list_runs() == []


def test_a_run_that_fails_says_why_in_one_line(settings, store, sample):
    wine = sample("wine")
    run = train(settings, store, wine, "cultivar", model="linear", exclude=("no such column",))
    assert run.status == "failed" and "no such column" in run.reason and "\n" not in run.reason


def test_no_feature_left_fails_in_one_line(settings, store, sample):
    wine = sample("wine")
    every = tuple(c for c in wine.column_names if c != "cultivar")
    run = train(settings, store, wine, "cultivar", model="linear", exclude=every)
    assert run.status == "failed" and run.reason == "no feature columns are left: put back at least one column"


def test_cancel_keeps_the_points_logged_before(settings, store, sample):
    wine = sample("wine")
    run = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", epochs=5000, checks=False))
    calls = []

    def stop_on_third_flush():
        calls.append(1)
        return len(calls) >= 3

    ended = runs.execute(settings, store, run.id, should_stop=stop_on_third_flush)
    assert ended.status == "cancelled" and ended.reason == "cancelled on request"
    points = store.metric_history([run.id], ["train_loss"])
    assert len(points) >= 2 and points[-1][2] < 10_000  # logged, and stopped long before the planned 10,000 steps


def test_bad_config_values_are_refused(settings, store, sample):
    wine = sample("wine")
    for bad in (dict(width=0), dict(lr=float("nan")), dict(dropout=1.5), dict(model="svm"), dict(epochs=-1)):
        with pytest.raises(BadInput):
            runs.create(store, wine, "cultivar", replace(TrainConfig(), **bad))
    assert store.list_runs() == []


def test_config_round_trips_through_the_store(settings, store, sample):
    wine = sample("wine")
    config = TrainConfig(model="gbm", seed=3, exclude=("alcohol",))
    run = runs.create(store, wine, "cultivar", config)
    assert runs.config_from(store.get_run(run.id).config) == config
    assert json.loads(json.dumps(store.get_run(run.id).config))["exclude"] == ["alcohol"]
