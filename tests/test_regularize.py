"""Regularizing one change at a time: early stopping keeps the best epoch, a training subset for learning curves."""
import numpy as np
import pytest
import torch
from trained import SAMPLES, train

from recipe_core.config import TrainConfig
from recipe_core.errors import BadInput
from recipe_core.training import dataset, runs
from recipe_core.training.loop import EarlyStopping
from recipe_core.units import ceil_div


def test_early_stopping_picks_the_best_epoch_of_an_overfitting_curve():
    model = torch.nn.Linear(2, 1)
    curve = [1.0, 0.8, 0.6, 0.55, 0.58, 0.61, 0.7, 0.9]  # best at epoch 4, then it overfits
    stopper, stopped_at, weights = EarlyStopping(patience=3), None, {}
    for epoch, loss in enumerate(curve, start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)  # the weights of each epoch are recognizable
        weights[epoch] = model.weight.clone()
        if stopper.update(epoch, loss, model):
            stopped_at = epoch
            break
    assert (stopper.best_epoch, stopped_at, stopper.best_loss) == (4, 7, 0.55)
    stopper.restore(model)
    assert torch.equal(model.weight, weights[4])
    never = EarlyStopping(patience=2)
    assert not never.update(1, float("nan"), model) and never.update(2, float("nan"), model)  # NaN never improves


@pytest.fixture
def noise(settings, store):
    from recipe_core.data import ingest

    return ingest.ingest_file(settings, store, SAMPLES / "noise.csv")


def test_an_mlp_that_memorizes_noise_stops_early_with_its_best_epoch(settings, store, noise):
    run = train(settings, store, noise, "label", model="mlp", width=256, epochs=300, patience=5, checks=False)
    m = run.metrics
    assert run.status == "finished" and m["stopped_epoch"] == m["best_epoch"] + 5 < 300 and m["max_epochs"] == 300
    curve = store.histories([run.id], "val_loss")[run.id]
    at_best = curve.value[np.flatnonzero(curve.epoch == m["best_epoch"])[0]]
    assert m["val_loss"] == pytest.approx(at_best, rel=1e-5)  # the reported metrics are the best epoch's
    assert m["val_loss"] == pytest.approx(np.nanmin(curve.value[curve.epoch >= 1]), rel=1e-5)
    assert curve.epoch.max() == m["stopped_epoch"]  # nothing trained after the stop


def test_training_rows_are_a_nested_seeded_subset():
    rows = np.arange(100, 200)
    tenth, half = dataset.training_rows(rows, 0.1, 3), dataset.training_rows(rows, 0.5, 3)
    assert len(tenth) == 10 and len(half) == 50 and set(tenth) <= set(half)
    assert list(dataset.training_rows(rows, 0.1, 3)) == list(tenth) and list(tenth) == sorted(tenth)
    assert list(dataset.training_rows(rows, 1.0, 3)) == list(rows)
    assert len(dataset.training_rows(rows, 0.001, 0)) == 2


def test_a_fraction_trains_on_fewer_rows(settings, store, noise):
    record = noise
    data = dataset.prepare(settings, store, record, "label", TrainConfig(model="linear", train_fraction=0.25))
    full = dataset.prepare(settings, store, record, "label", TrainConfig(model="linear"))
    assert len(data.rows_train) == ceil_div(len(full.rows_train), 4) and list(data.rows_val) == list(full.rows_val)


@pytest.mark.parametrize("bad", [{"patience": 0}, {"patience": 3, "model": "gbm"}, {"train_fraction": 0.0},
                                 {"train_fraction": 1.5}])
def test_bad_regularization_values_are_refused(bad):
    with pytest.raises(BadInput):
        runs.validate(TrainConfig(**{"model": "mlp", **bad}))
