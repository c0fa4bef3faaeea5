"""The one persisted train/val/test split per dataset and target: seeded, stratified for classification.

Every run and the human baseline use it, so their numbers are comparable. Rows with a missing target are
excluded and counted.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recipe_core.errors import BadInput
from recipe_core.tracking.records import SplitRecord, new_id
from recipe_core.tracking.store import Store

TRAIN, VAL, TEST, EXCLUDED = 0, 1, 2, 255
NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 0
MIN_ROWS = 10  # fewer usable rows cannot give a validation split worth a number
MAX_CLASSES = 1000  # more distinct labels than this is an ID or a number, not a set of classes


@dataclass(frozen=True)
class Split:
    record: SplitRecord
    codes: np.ndarray  # one code per snapshot row (TRAIN, VAL, TEST or EXCLUDED)

    @property
    def id(self) -> str:
        return self.record.id

    def rows(self, name: str) -> np.ndarray:
        """Row ids (0-based positions in the snapshot) of one part, in snapshot order."""
        code = {v: k for k, v in NAMES.items()}[name]
        return np.flatnonzero(self.codes == code)

    @property
    def counts(self) -> dict:
        return dict(self.record.counts)


def usable_target(y: pd.Series, task: str) -> pd.Series:
    """True where the target has a value: not null, and finite for a regression target."""
    ok = y.notna()
    if task == "regression":
        ok &= np.isfinite(pd.to_numeric(y, errors="coerce").astype(float))
    return ok


def check_target(y: pd.Series, task: str, target: str) -> None:
    """One clear line for a target nothing can be learned from: no rows, one class, a constant value."""
    values = y[usable_target(y, task)]
    if len(values) == 0:
        raise BadInput(f"target {target!r} has no rows with a value")
    if len(values) < MIN_ROWS:
        raise BadInput(f"target {target!r} has only {len(values)} rows with a value; at least {MIN_ROWS} are needed")
    distinct = values.astype(str).unique() if task == "classification" else values.unique()
    if len(distinct) == 1:
        what = "only one class" if task == "classification" else "a constant value"
        raise BadInput(f"target {target!r} has {what} ({distinct[0]!r}): there is nothing to learn")
    if task == "classification" and len(distinct) > MAX_CLASSES:
        raise BadInput(f"target {target!r} has {len(distinct):,} classes (at most {MAX_CLASSES:,}); "
                       "if it is a number, train it as regression")


def assign(y: pd.Series, task: str, seed: int = DEFAULT_SEED,
           fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Codes per row of y (in row-id order): each class (or the whole table, for regression) is shuffled with the
    seed and cut by the fractions, so every part keeps the class balance."""
    codes = np.full(len(y), EXCLUDED, dtype=np.uint8)
    usable = usable_target(y, task).to_numpy()
    rng = np.random.default_rng(seed)
    if task == "classification":
        labels = y.astype(str).to_numpy()
        groups = [np.flatnonzero(usable & (labels == c)) for c in sorted(set(labels[usable]))]
    else:
        groups = [np.flatnonzero(usable)]
    for rows in groups:
        rows = rng.permutation(rows)
        n_val = int(round(len(rows) * fractions[1]))
        n_test = int(round(len(rows) * fractions[2]))
        codes[rows] = TRAIN
        codes[rows[:n_val]] = VAL
        codes[rows[n_val:n_val + n_test]] = TEST
    return codes


def stratified_order(labels: np.ndarray) -> np.ndarray:
    """An order of the positions that takes the classes in turn, in proportion to their counts, each class's
    positions in their given order: the first C positions hold every one of C classes, and any longer prefix is
    close to the class balance (the k-th item of a class comes at k / its count of the way through)."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    by_class = np.argsort(codes, kind="stable")
    rank = np.empty(len(labels), dtype=np.int64)
    rank[by_class] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.lexsort((np.arange(len(labels)), rank / counts[codes]))


def get_or_create(store: Store, dataset_id: str, target: str, y: pd.Series, task: str,
                  seed: int = DEFAULT_SEED, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> Split:
    """The persisted split of this dataset and target; made (once, race-safe) on first use.

    y is the whole target column in row-id order; it is read only to make a new split.
    """
    existing = store.get_split(dataset_id, target)
    if existing is not None:
        return load(existing)
    check_target(y, task, target)
    codes = assign(y, task, seed, fractions)
    counts = {name: int((codes == code).sum()) for code, name in NAMES.items()}
    counts["excluded"] = int((codes == EXCLUDED).sum())
    if counts["val"] == 0 or counts["train"] == 0:
        raise BadInput(f"target {target!r}: too few rows for a train/validation split")
    record = SplitRecord(id=new_id(), dataset_id=dataset_id, target=target, seed=seed, fractions=tuple(fractions),
                         stratified=task == "classification", counts=counts,
                         assignment=zlib.compress(codes.tobytes(), 6))
    return load(store.add_split(record))


def load(record: SplitRecord) -> Split:
    return Split(record, np.frombuffer(zlib.decompress(record.assignment), dtype=np.uint8))


def summary(split: Split, y: pd.Series, task: str) -> pd.DataFrame:
    """Per part (rows): the share of each class, or the target's mean and spread, so the page shows the parts alike."""
    parts = pd.Series(split.codes).map(NAMES).to_numpy()
    keep = split.codes != EXCLUDED
    if task == "classification":
        table = pd.crosstab(parts[keep], y.astype(str).to_numpy()[keep], normalize="index").round(3)
    else:
        values = pd.Series(pd.to_numeric(y, errors="coerce").to_numpy()[keep], name="target")
        table = values.groupby(parts[keep]).describe()[["mean", "std", "min", "max"]]
    table.insert(0, "rows", pd.Series(split.counts))
    table = table.reindex([n for n in NAMES.values() if n in table.index])
    return table.rename_axis(index="part", columns=None)
