"""The baselines and the MLP: the last layer initialized as the recipe says (checked against the formula and a
net without it), scikit-learn estimators made from the config, and probabilities over every class."""
import math

import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from recipe_core.config import TrainConfig
from recipe_core.training import models
from recipe_core.training.loop import mean_loss, target_tensor


def test_the_head_starts_small_and_its_bias_is_the_log_class_prior():
    config = TrainConfig(model="mlp", seed=3, width=16, depth=2)
    y = np.array([0] * 6 + [1] * 3 + [2])
    net = models.make_mlp(config, 5, "classification", y, 3)
    torch.manual_seed(3)
    plain = models.MLP(5, 3, 16, 2)  # the same seed without the recipe's init
    assert torch.allclose(net.head.weight, plain.head.weight * models.HEAD_INIT_SCALE)
    assert torch.allclose(net.body[0].weight, plain.body[0].weight)  # only the last layer is changed
    assert net.head.bias.tolist() == pytest.approx(np.log([0.6, 0.3, 0.1]).tolist(), rel=1e-6)


def test_the_loss_at_init_is_the_entropy_of_the_prior_with_bias_init_and_ln_c_without():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(200, 4)).astype(np.float32))
    y = rng.choice(3, size=200, p=[0.7, 0.2, 0.1])
    prior = np.bincount(y, minlength=3) / len(y)
    entropy = float(-(prior * np.log(prior)).sum())
    with_bias = models.make_mlp(TrainConfig(model="mlp"), 4, "classification", y, 3)
    without = models.make_mlp(TrainConfig(model="mlp", bias_init=False), 4, "classification", y, 3)
    assert mean_loss(with_bias, X, target_tensor(y, "classification"), "classification") == pytest.approx(
        entropy, rel=0.02)
    assert mean_loss(without, X, target_tensor(y, "classification"), "classification") == pytest.approx(
        math.log(3), rel=0.02)
    assert torch.count_nonzero(without.head.bias) == 0


def test_a_class_absent_from_training_gets_a_finite_bias_far_below_the_others():
    bias = models.head_bias("classification", np.array([0, 0, 2]), 3)
    assert np.isfinite(bias).all() and bias[1] < bias[0] - 20 and bias[1] < bias[2] - 20


def test_the_regression_head_starts_at_the_training_mean():
    y = np.array([100.0, 110.0, 130.0])
    net = models.make_mlp(TrainConfig(model="mlp"), 2, "regression", y, 0)
    assert net.head.bias.tolist() == pytest.approx([340 / 3])
    out = net(torch.zeros(4, 2)).squeeze(-1)
    assert out.detach().numpy() == pytest.approx(np.full(4, 340 / 3), rel=1e-3)  # small weights: about the bias


@pytest.mark.parametrize("model, task, cls", [
    ("prior", "classification", DummyClassifier), ("prior", "regression", DummyRegressor),
    ("linear", "classification", LogisticRegression), ("linear", "regression", Ridge),
    ("gbm", "classification", HistGradientBoostingClassifier), ("gbm", "regression", HistGradientBoostingRegressor),
])
def test_each_baseline_is_its_scikit_learn_estimator(model, task, cls):
    est = models.estimator(TrainConfig(model=model, seed=5, l2=4.0, gbm_iterations=30), task)
    assert type(est) is cls
    params = est.get_params()
    if model == "prior":
        assert params["strategy"] == ("prior" if task == "classification" else "mean")
    elif model == "linear":
        assert params["C" if task == "classification" else "alpha"] == (0.25 if task == "classification" else 4.0)
        assert params["random_state"] == 5
    else:  # grown in chunks by the run: warm start, and no early stopping of its own
        assert params["warm_start"] and params["early_stopping"] is False and params["max_iter"] == 30
        assert params["random_state"] == 5


def test_the_mlp_has_no_scikit_learn_estimator():
    with pytest.raises(ValueError):
        models.estimator(TrainConfig(model="mlp"), "classification")


def test_predict_gives_a_column_to_every_class_even_one_absent_from_training():
    X = np.array([[0.0], [0.1], [1.0], [1.1]])
    est = LogisticRegression().fit(X, [0, 0, 2, 2])  # class 1 never seen
    p = models.predict(est, X, "classification", 3)
    assert p.shape == (4, 3) and (p[:, 1] == 0).all() and p.sum(axis=1) == pytest.approx(np.ones(4))
    assert p[:, [0, 2]] == pytest.approx(est.predict_proba(X))
    full = LogisticRegression().fit(X, [0, 1, 2, 2])
    assert models.predict(full, X, "classification", 3) == pytest.approx(full.predict_proba(X))


def test_parameters_are_counted_for_the_net_and_the_linear_model():
    net = models.MLP(5, 3, width=8, depth=2)
    assert models.n_parameters(net) == (5 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    est = LogisticRegression().fit(np.eye(4), [0, 1, 2, 2])
    assert models.n_parameters(est) == 3 * 4 + 3
