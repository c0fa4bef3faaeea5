"""The persisted split: stratified, seeded, stable, excluding missing targets, refusing hopeless targets."""
import numpy as np
import pandas as pd
import pytest

from recipe_core.errors import BadInput
from recipe_core.training import splits


def labels(n_a=700, n_b=300, n_missing=0):
    values = ["a"] * n_a + ["b"] * n_b + [None] * n_missing
    return pd.Series(np.random.default_rng(1).permutation(np.array(values, dtype=object)))


def test_fractions_and_stratification():
    y = labels()
    codes = splits.assign(y, "classification", seed=0)
    for code, share in ((splits.TRAIN, 0.70), (splits.VAL, 0.15), (splits.TEST, 0.15)):
        part = y[codes == code]
        assert len(part) == pytest.approx(1000 * share, abs=2)
        assert (part == "b").mean() == pytest.approx(0.3, abs=0.005)  # each part keeps the class balance


def test_seeded_and_deterministic():
    y = labels()
    assert (splits.assign(y, "classification", 0) == splits.assign(y, "classification", 0)).all()
    assert (splits.assign(y, "classification", 0) != splits.assign(y, "classification", 1)).any()


def test_missing_targets_are_excluded_and_counted(store):
    y = labels(n_missing=37)
    split = splits.get_or_create(store, "d1", "y", y, "classification")
    assert split.counts["excluded"] == 37
    assert sum(split.counts[k] for k in ("train", "val", "test")) == 1000
    assert (split.codes[y.isna().to_numpy()] == splits.EXCLUDED).all()


def test_regression_excludes_nan_and_inf(store):
    y = pd.Series(np.r_[np.arange(100.0), [np.nan, np.inf, -np.inf]])
    split = splits.get_or_create(store, "d1", "r", y, "regression")
    assert split.counts["excluded"] == 3 and not split.record.stratified


def test_persisted_once_per_dataset_and_target(store):
    y = labels()
    first = splits.get_or_create(store, "d1", "y", y, "classification")
    # even a different seed or different values later return the stored split: every run shares it
    again = splits.get_or_create(store, "d1", "y", labels(500, 500), "classification", seed=7)
    assert again.id == first.id and (again.codes == first.codes).all()
    other = splits.get_or_create(store, "d1", "z", y, "classification")
    assert other.id != first.id
    assert set(np.flatnonzero(first.codes == splits.VAL)) == set(first.rows("val"))


@pytest.mark.parametrize("y, task, message", [
    (pd.Series([None] * 20, dtype=object), "classification", "no rows with a value"),
    (pd.Series(["a"] * 50), "classification", "only one class"),
    (pd.Series([3.0] * 50), "regression", "constant value"),
    (pd.Series(["a", "b"] * 3), "classification", "at least 10"),
    (pd.Series([f"id{i}" for i in range(1500)]), "classification", "1,500 classes"),
])
def test_hopeless_targets_get_one_line(store, y, task, message):
    with pytest.raises(BadInput, match=message) as e:
        splits.get_or_create(store, "d1", "t", y, task)
    assert "\n" not in str(e.value)
    assert store.get_split("d1", "t") is None  # nothing half-registered


def test_summary_shows_balance_per_part(store):
    split = splits.get_or_create(store, "d1", "y", labels(), "classification")
    table = splits.summary(split, labels(), "classification")
    assert list(table.index) == ["train", "val", "test"]
    assert table.loc["val", "b"] == pytest.approx(0.3, abs=0.01)
