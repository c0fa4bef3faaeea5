"""How much annotators agree beyond chance: Cohen's kappa for a pair, Fleiss' kappa for three or more.

Plain numpy, so the Label page never loads scikit-learn (tests check Cohen's kappa against its cohen_kappa_score).
"""
from __future__ import annotations

import math

import numpy as np


def cohen_kappa(a: list, b: list, labels: list) -> float:
    """Cohen's kappa of two raters' labels of the same items, over the given label set (pairs with a label outside
    it are left out, as scikit-learn does); NaN when chance agreement is certain (both gave one label to all)."""
    index = {label: k for k, label in enumerate(labels)}
    pairs = np.array([(index[x], index[y]) for x, y in zip(a, b, strict=True) if x in index and y in index],
                     dtype=np.int64)
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    if len(pairs):
        np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    n = int(counts.sum())
    # In whole numbers, so "no disagreement expected by chance" is exact: n^2 minus the diagonal of the marginals'
    # outer product.
    expected_disagreement = n * n - int(counts.sum(axis=1) @ counts.sum(axis=0))
    if expected_disagreement == 0:
        return math.nan
    observed_disagreement = n - int(np.trace(counts))
    return 1.0 - n * observed_disagreement / expected_disagreement


def fleiss_kappa(ratings: list[list[str]], categories: list[str]) -> float:
    """Fleiss' kappa over items each rated by the same number of raters (ratings[i] = the labels of item i)."""
    counts = np.array([[r.count(c) for c in categories] for r in ratings], dtype=float)
    n_raters = counts.sum(axis=1)[0]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts ** 2).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar, p_e = p_i.mean(), (p_j ** 2).sum()
    return float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else math.nan
