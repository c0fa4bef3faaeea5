"""Metrics against scikit-learn as the oracle; the Wilson interval against its formula."""
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from recipe_core.training import evaluation


def classification_case(n=400, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 2.0 * np.eye(n_classes)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def test_classification_metrics_match_sklearn():
    y, p = classification_case()
    out = evaluation.evaluate("classification", y, p, 3)
    m = out["metrics"]
    assert m["val_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1, 2]), rel=1e-9)
    assert m["val_accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert m["val_balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p.argmax(1)))
    assert m["val_macro_f1"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"))
    assert out["confusion"] == skm.confusion_matrix(y, p.argmax(1), labels=[0, 1, 2]).tolist()
    for name, value in m.items():
        low, high = out["intervals"][name]
        assert low <= value <= high, name


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(150, 70, 300)
    pred = y + rng.normal(0, 30, 300)
    m = evaluation.evaluate("regression", y, pred)["metrics"]
    assert m["val_mse"] == pytest.approx(skm.mean_squared_error(y, pred)) and m["val_loss"] == m["val_mse"]
    assert m["val_mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["val_r2"] == pytest.approx(skm.r2_score(y, pred))


def test_wilson_interval_formula():
    # Known values: 8 of 10 -> (0.4902, 0.9433); 0 of 10 -> (0, 0.2775)
    assert evaluation.wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    low, high = evaluation.wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)


def test_interval_narrows_with_more_examples():
    small = evaluation.evaluate("classification", *classification_case(100), 3)["intervals"]["val_accuracy"]
    large = evaluation.evaluate("classification", *classification_case(10_000), 3)["intervals"]["val_accuracy"]
    assert large[1] - large[0] < (small[1] - small[0]) / 5


def test_a_zero_probability_on_the_truth_is_finite():
    y = np.array([0, 1])
    p = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert math.isfinite(evaluation.evaluate("classification", y, p, 2)["metrics"]["val_loss"])


def test_four_significant_digits():
    assert evaluation.sig4(0.123456) == "0.1235" and evaluation.sig4(12345.6) == "1.235e+04"
    assert evaluation.sig4(float("nan")) == "–"
