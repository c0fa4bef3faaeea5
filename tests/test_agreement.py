"""Agreement in numpy against its oracles: scikit-learn's cohen_kappa_score, and Fleiss' worked example."""
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from recipe_core.labelling import agreement


def sklearn_kappa(a, b, labels):
    with warnings.catch_warnings():  # scikit-learn warns on the degenerate case, then returns NaN
        warnings.simplefilter("ignore")
        return cohen_kappa_score(a, b, labels=labels)


@pytest.mark.parametrize("seed", range(20))
def test_cohen_kappa_matches_scikit_learn_on_random_raters(seed):
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c", "d"][: 2 + seed % 3]
    n = int(rng.integers(2, 60))
    a = list(rng.choice(labels, n))
    # b copies a on some items, so kappa spans chance to near-perfect agreement
    b = [x if rng.random() < seed / 20 else str(rng.choice(labels)) for x in a]
    assert agreement.cohen_kappa(a, b, labels) == pytest.approx(sklearn_kappa(a, b, labels), abs=1e-12)


@pytest.mark.parametrize("a, b", [
    (["x", "x", "x"], ["x", "x", "x"]),  # both gave one label to every item: chance agreement is certain
    (["x"], ["x"]),
])
def test_cohen_kappa_is_nan_where_scikit_learn_says_undefined(a, b):
    assert math.isnan(sklearn_kappa(a, b, ["x", "y"]))
    assert math.isnan(agreement.cohen_kappa(a, b, ["x", "y"]))


@pytest.mark.parametrize("a, b", [
    (["x", "x", "y"], ["x", "x", "y"]),  # perfect agreement: 1
    (["x", "y"], ["y", "x"]),  # perfect disagreement: below 0
    (["x", "x", "x"], ["x", "x", "y"]),  # one rater constant: 0, not NaN
    (["x", "z", "y"], ["x", "x", "y"]),  # a label outside the set is left out, as scikit-learn does
])
def test_cohen_kappa_matches_scikit_learn_at_the_edges(a, b):
    assert agreement.cohen_kappa(a, b, ["x", "y"]) == pytest.approx(sklearn_kappa(a, b, ["x", "y"]))


def test_fleiss_kappa_against_a_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories -> kappa 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    cats = list("abcde")
    ratings = [[c for c, k in zip(cats, row, strict=True) for _ in range(k)] for row in counts]
    assert agreement.fleiss_kappa(ratings, cats) == pytest.approx(0.210, abs=1e-3)


def test_fleiss_kappa_is_one_when_everyone_agrees_and_nan_when_chance_is_certain():
    assert agreement.fleiss_kappa([["a", "a", "a"], ["b", "b", "b"]], ["a", "b"]) == pytest.approx(1.0)
    assert math.isnan(agreement.fleiss_kappa([["a", "a", "a"], ["a", "a", "a"]], ["a", "b"]))
