"""overfit_one_batch on messy data: identical inputs with different labels put a floor under the loss; the check
allows for that floor (computed here by hand from the batch), still goes red on a broken model, and the run picks
its batch from distinct inputs."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recipe_core.config import TrainConfig
from recipe_core.data import ingest
from recipe_core.training import checks, features, models, runs
from recipe_core.training.loop import target_tensor


def noisy_batch(task):
    """8 examples: 4 copies of one input (labels 0,0,1,1 or 10,12,14,16) and 4 distinct inputs."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 5)).astype(np.float32)
    X[1:4] = X[0]
    if task == "classification":
        y = np.array([0, 0, 1, 1, 2, 0, 1, 2])
    else:
        y = np.array([10.0, 12.0, 14.0, 16.0, -40.0, 50.0, -20.0, 30.0])
    return torch.from_numpy(X), target_tensor(y, task), y


def test_the_floor_is_the_label_entropy_within_identical_inputs():
    X, yt, _ = noisy_batch("classification")
    # by hand: the 4 copies are best predicted 50/50, costing ln 2 each; the 4 distinct inputs can reach 0
    assert checks.irreducible_loss(X, yt, "classification") == {
        "floor": pytest.approx(math.log(2) * 4 / 8), "n_ambiguous": 4, "n_distinct": 5}
    # a group of 3 labelled 0,0,1: best p = (2/3, 1/3), costing -(2 ln 2/3 + ln 1/3) over the batch of 8
    X2 = X.clone()
    X2[4:7] = X2[4]
    y2 = target_tensor(np.array([0, 0, 1, 1, 0, 0, 1, 2]), "classification")
    by_hand = (4 * math.log(2) - 2 * math.log(2 / 3) - math.log(1 / 3)) / 8
    assert checks.irreducible_loss(X2, y2, "classification")["floor"] == pytest.approx(by_hand)
    # copies that agree cost nothing
    agree = target_tensor(np.array([1, 1, 1, 1, 2, 0, 1, 2]), "classification")
    assert checks.irreducible_loss(X, agree, "classification") == {"floor": 0.0, "n_ambiguous": 0, "n_distinct": 5}


def test_the_floor_of_squared_error_is_the_variance_within_identical_inputs():
    X, yt, _ = noisy_batch("regression")
    # by hand: the copies' mean is 13; squared deviations 9 + 1 + 1 + 9 = 20, over 8 examples
    assert checks.irreducible_loss(X, yt, "regression") == {
        "floor": pytest.approx(20 / 8), "n_ambiguous": 4, "n_distinct": 5}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_overfit_one_batch_passes_at_the_floor_of_a_noisy_batch(task):
    X, yt, y = noisy_batch(task)
    model = models.make_mlp(TrainConfig(), 5, task, y, 3)
    verdict = checks.overfit_one_batch(model, X, yt, task, lr=3e-4)
    floor = math.log(2) / 2 if task == "classification" else 2.5
    assert verdict.ok is True, verdict.message
    assert verdict.floor == pytest.approx(floor) and verdict.n_ambiguous == 4
    assert floor <= verdict.final_loss <= verdict.threshold  # nothing can go under the floor
    assert f"floor {floor:.3g} from 4 identical inputs with different labels" in verdict.message


class DropsInput(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("broken", ["zero learning rate", "input dropped"])
def test_overfit_one_batch_still_goes_red_on_a_noisy_batch(broken):
    X, yt, y = noisy_batch("classification")
    model = models.make_mlp(TrainConfig(), 5, "classification", y, 3)
    if broken == "input dropped":  # a bug: every example looks the same, so the floor does not excuse it
        model = nn.Sequential(DropsInput(), model)
    verdict = checks.overfit_one_batch(model, X, yt, "classification", lr=0.0 if broken.startswith("zero") else 3e-4,
                                       max_steps=600)
    assert verdict.ok is False and "cannot fit even one batch" in verdict.message
    assert verdict.final_loss > verdict.floor + checks.OVERFIT_CLASS_LOSS


def test_distinct_inputs_come_first_then_repeats():
    groups = np.array([0, 0, 0, 1, 1, 2, 0, 0])
    order = features.distinct_inputs_first(groups, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(8))
    assert sorted(groups[order[:3]].tolist()) == [0, 1, 2]  # the 3 distinct inputs first
    X = np.array([[1.0, 0.0], [1.0, -0.0], [2.0, 0.0]], dtype=np.float32)
    groups = features.input_groups(X)
    assert groups[0] == groups[1] != groups[2]  # -0.0 is the same input as 0.0


def duplicated_table(path, n_inputs, n_rows, flip, seed=0):
    """A table of a few distinct inputs, each repeated, whose label is a noisy function of the input (a share flip
    of the rows flipped): copies of one input often disagree."""
    rng = np.random.default_rng(seed)
    inputs = pd.DataFrame({"a": rng.normal(size=n_inputs).round(3), "b": rng.normal(size=n_inputs).round(3)})
    frame = inputs.iloc[rng.integers(0, n_inputs, n_rows)].reset_index(drop=True)
    clean = frame["a"] + frame["b"] > 0
    frame["y"] = np.where(clean ^ (rng.random(n_rows) < flip), "up", "down")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("n_inputs, flip", [(40, 0.2), (3, 0.5)])
def test_a_run_on_duplicated_rows_overfits_distinct_inputs_and_passes(settings, store, tmp_path, n_inputs, flip):
    record = ingest.ingest_file(settings, store, duplicated_table(tmp_path / "dup.csv", n_inputs, 400, flip))
    run = runs.execute(settings, store, runs.create(store, record, "y", TrainConfig(model="mlp", epochs=5)).id)
    assert run.status == "finished", run.reason
    over = run.checks["overfit_one_batch"]
    assert over["ok"] is True, over["message"]
    assert over["n_distinct"] == min(n_inputs, checks.OVERFIT_N)  # distinct inputs first, repeats only to fill
    if n_inputs == 3:  # 8 rows of 3 inputs whose labels are coin flips: copies that disagree, so a floor
        assert over["floor"] > 0 and "identical inputs with different labels" in over["message"]
