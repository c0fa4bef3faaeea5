"""Table -> the float matrix a model receives, and back: the decoded "just before the net" view.

Statistics come from the training split only. Numeric, datetime and boolean columns are standardized;
categorical ones one-hot encoded (top k values plus "other"); text a hashed bag of words; every column that has
missing values in training gets an indicator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OTHER = "(other)"
MISSING = " (missing)"


@dataclass(frozen=True)
class Block:
    """The features made from one column."""
    column: str
    treat: str  # numeric, datetime, boolean, categorical, text
    start: int  # first feature index
    names: tuple[str, ...]
    mean: float = 0.0  # numeric-like: standardization statistics from training rows
    std: float = 1.0
    categories: tuple[str, ...] = ()  # categorical: the top values, in feature order
    has_missing: bool = False  # the last feature of the block is the missing indicator


def _as_numbers(values: pd.Series, treat: str) -> np.ndarray:
    """The column as floats (a datetime in seconds since 1970), NaN where missing or not a number."""
    if treat == "datetime":
        stamps = pd.to_datetime(values, errors="coerce", utc=True)
        out = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        return out.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").astype(float).to_numpy(na_value=np.nan)


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), None)


class FeatureEncoder:
    """fit on the training rows, then transform any rows to float32; feature_names_ name the matrix columns."""

    def __init__(self, treatments: dict[str, str], top_k: int = 20, text_features: int = 256):
        self.treatments = treatments
        self.top_k = top_k
        self.text_features = text_features

    def fit(self, frame: pd.DataFrame) -> "FeatureEncoder":
        blocks, start = [], 0
        for column, treat in self.treatments.items():
            values = frame[column]
            missing = _missing(values, treat)
            has_missing = bool(missing.any())
            extra = (column + MISSING,) if has_missing else ()
            if treat in ("numeric", "datetime", "boolean"):
                x = _as_numbers(values, treat)[~missing]
                mean = float(x.mean()) if len(x) else 0.0
                std = float(x.std()) if len(x) > 1 else 0.0
                block = Block(column, "numeric" if treat == "boolean" else treat, start, (column,) + extra,
                              mean=mean, std=std if std > 0 else 1.0, has_missing=has_missing)
            elif treat == "text":
                names = tuple(f"{column}#{i}" for i in range(self.text_features))
                block = Block(column, treat, start, names + extra, has_missing=has_missing)
            else:
                counts = values[~missing].astype(str).value_counts(sort=False)
                top = sorted(counts.index, key=lambda v: (-counts[v], v))[: self.top_k]
                names = tuple(f"{column}={v}" for v in top) + (f"{column}={OTHER}",)
                block = Block(column, "categorical", start, names + extra, categories=tuple(top),
                              has_missing=has_missing)
            blocks.append(block)
            start += len(block.names)
        self.blocks_ = blocks
        self.feature_names_ = [n for b in blocks for n in b.names]
        self.n_features_ = start
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), self.n_features_), dtype=np.float32)
        for b in self.blocks_:
            values = frame[b.column]
            missing = _missing(values, self.treatments[b.column])
            end = b.start + len(b.names) - b.has_missing
            if b.treat in ("numeric", "datetime"):
                x = (_as_numbers(values, self.treatments[b.column]) - b.mean) / b.std
                out[:, b.start] = np.where(missing, 0.0, x)  # missing sits at the training mean
            elif b.treat == "text":
                # scikit-learn only here: reading a run's views (Train page, Label page) never loads it
                from sklearn.feature_extraction.text import HashingVectorizer

                hasher = HashingVectorizer(n_features=self.text_features, alternate_sign=False, norm="l2")
                out[:, b.start:end] = hasher.transform(_as_text(values).fillna("")).toarray()
            else:
                index = {v: i for i, v in enumerate(b.categories)}
                cols = values.astype(str).map(index).fillna(len(b.categories)).astype(int).to_numpy()
                hot = np.zeros((len(frame), end - b.start), dtype=np.float32)
                hot[np.arange(len(frame)), cols] = 1.0
                hot[missing] = 0.0
                out[:, b.start:end] = hot
            if b.has_missing:
                out[:, end] = missing
        return out

    def decode(self, X: np.ndarray) -> pd.DataFrame:
        """What each row of the matrix means in the columns' own terms (the inverse of transform, where one exists)."""
        decoded = {}
        for b in self.blocks_:
            end = b.start + len(b.names) - b.has_missing
            missing = X[:, end] > 0.5 if b.has_missing else np.zeros(len(X), dtype=bool)
            if b.treat in ("numeric", "datetime"):
                x = X[:, b.start].astype(float) * b.std + b.mean
                col = pd.Series(np.where(missing, np.nan, x))
                if b.treat == "datetime":
                    col = pd.to_datetime(col, unit="s", utc=True)
            elif b.treat == "text":
                col = pd.Series([f"{int((row > 0).sum())} hashed tokens" for row in X[:, b.start:end]])
            else:
                labels = list(b.categories) + [OTHER]
                col = pd.Series([labels[int(i)] for i in X[:, b.start:end].argmax(axis=1)], dtype=object)
            decoded[b.column] = col.where(~missing, None)
        return pd.DataFrame(decoded)


def _missing(values: pd.Series, treat: str) -> np.ndarray:
    if treat in ("numeric", "datetime", "boolean"):
        return ~np.isfinite(_as_numbers(values, treat))
    return values.isna().to_numpy()


def batch_stats(X: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Per feature of a batch: mean, std and NaN count; a NaN here, or a std far from 1, means a bug upstream."""
    x = X.astype(np.float64)
    return pd.DataFrame({
        "feature": names,
        "mean": np.nanmean(x, axis=0) if len(x) else np.nan,
        "std": np.nanstd(x, axis=0) if len(x) else np.nan,
        "nan": np.isnan(x).sum(axis=0),
    })


def input_groups(X: np.ndarray) -> np.ndarray:
    """A group id per row of an encoded matrix: rows the net cannot tell apart (identical inputs) share one."""
    if X.ndim != 2 or X.shape[1] == 0:
        return np.zeros(len(X), dtype=np.int64)
    rows = np.ascontiguousarray(X)
    if (np.signbit(rows) & (rows == 0)).any():  # -0.0 and 0.0 are the same input but not the same bytes
        rows = rows + rows.dtype.type(0)  # -0.0 + 0.0 is 0.0; copied only then, the matrix can be large
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def distinct_inputs_first(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded random order of the rows in which every distinct input comes once (a random row of its group)
    before any input repeats: the first k positions are k distinct inputs whenever there are k of them."""
    order = rng.permutation(len(groups))
    _, first = np.unique(groups[order], return_index=True)
    is_first = np.zeros(len(order), dtype=bool)
    is_first[first] = True
    return np.concatenate([order[is_first], order[~is_first]])


def labels_per_group(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many distinct labels each group of identical inputs carries (indexed by group id): above 1, identical
    inputs with different outcomes, noise that no model can fit."""
    pairs = np.unique(np.stack([groups.astype(np.float64), labels.astype(np.float64)], axis=1), axis=0)
    return np.bincount(pairs[:, 0].astype(np.int64), minlength=int(groups.max()) + 1 if len(groups) else 0)
