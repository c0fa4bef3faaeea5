"""Ensemble candidates are runs trained on the whole training split, and a loss's 95% interval stays in [0, inf)."""
from pathlib import Path

import numpy as np
import pytest

from recipe_core.config import TrainConfig
from recipe_core.data import ingest
from recipe_core.search import ensembles
from recipe_core.training import evaluation, runs

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def skewed_log_loss(n=200, n_huge=3, seed=0):
    """Per-row log loss mostly ~0 (confident and right) and a few huge (confident and wrong, p = 1e-15)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p_true = np.full(n, 1 - 1e-6)
    p_true[:n_huge] = 1e-15
    pred = np.zeros((n, 2))
    pred[np.arange(n), y] = p_true
    pred[np.arange(n), 1 - y] = 1 - p_true
    return y, pred


def test_the_log_loss_interval_of_a_skewed_loss_stays_non_negative():
    y, pred = skewed_log_loss()
    losses = evaluation.per_example_loss("classification", y, pred)
    mean = losses.mean()
    half = evaluation.Z95 * losses.std(ddof=1) / np.sqrt(len(losses))
    assert mean - half < 0  # the normal interval the app showed: below 0 for a loss that cannot be
    out = evaluation.evaluate("classification", y, pred, 2, seed=0)
    low, high = out["intervals"]["val_loss"]
    assert out["metrics"]["val_loss"] == pytest.approx(mean)
    assert 0 <= low <= mean <= high <= losses.max()
    assert evaluation.evaluate("classification", y, pred, 2, seed=0)["intervals"]["val_loss"] == [low, high]


def test_regression_loss_intervals_stay_non_negative():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    pred = y.copy()
    pred[:2] += 1000.0  # two wild predictions, every other one exact
    out = evaluation.evaluate("regression", y, pred, seed=0)
    for name in ("val_loss", "val_mse", "val_mae"):
        low, high = out["intervals"][name]
        assert 0 <= low <= out["metrics"][name] <= high, name


def test_top_k_leaves_out_a_run_trained_on_part_of_the_training_split(settings, store):
    wine = ingest.ingest_file(settings, store, SAMPLES / "wine.csv")

    def train(**config):
        queued = runs.create(store, wine, "cultivar", TrainConfig(checks=False, **config))
        run = runs.execute(settings, store, queued.id)
        assert run.status == "finished", run.reason
        return run

    whole = [train(model="linear"), train(model="gbm", gbm_iterations=20)]
    quarter = train(model="linear", train_fraction=0.25)  # a learning curve's 25% point
    # even with the best val_loss of all, it is not a candidate
    store.update_run(quarter.id, metrics=quarter.metrics | {"val_loss": 1e-6})
    everything = ensembles.top_k(store, wine.id, "cultivar", 50)
    assert quarter.id not in everything and sorted(everything) == sorted(r.id for r in whole)
    assert ensembles.top_k(store, wine.id, "cultivar", 1) == [min(whole, key=lambda r: r.metrics["val_loss"]).id]
