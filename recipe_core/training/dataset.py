"""The data one run trains on: the target encoded, the persisted split, the features fitted on the training rows,
and the fixed validation batch watched over training; and the Train page's preview of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recipe_core.config import Settings, TrainConfig
from recipe_core.data.columns import treatments
from recipe_core.data.db import DatasetDB
from recipe_core.data.profile import profile
from recipe_core.data.records import DatasetRecord
from recipe_core.data.rows import columns_frame
from recipe_core.data.target import task_of
from recipe_core.errors import BadInput, RecipeError
from recipe_core.tracking.store import Store
from recipe_core.training import features, splits, targets

DYNAMICS_ROWS = 16  # the fixed validation batch whose predictions are kept over training (distinct inputs)


@dataclass
class Data:
    task: str
    classes: list[str]  # classification: the label of each class index
    split: splits.Split
    encoder: features.FeatureEncoder
    columns: list[str]  # the feature columns used
    excluded: list[str]  # columns left out (by default the ID-like ones)
    id_like: list[str]
    rows_train: np.ndarray
    rows_val: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    val_groups: np.ndarray  # a group id per validation row: identical inputs share one (features.input_groups)
    fixed_val: np.ndarray  # positions in the validation split of the batch whose predictions are kept over training

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def shown_label(data: Data, value) -> str | float:
    """A target value as people read it: the class's name, or the number."""
    return data.classes[int(value)] if data.task == "classification" else float(value)


def id_like_columns(db: DatasetDB) -> list[str]:
    return [w.column for w in profile(db).warnings if w.kind == "id_like"]


def prepare(settings: Settings, store: Store, record: DatasetRecord, target: str, config: TrainConfig) -> Data:
    """Read the target and feature columns, get the persisted split, fit the features on the training rows."""
    record.column(target)  # NotFound for a column that does not exist
    db = DatasetDB(settings, record, isolated=False)  # a job's own bounded process: no worker needed
    try:
        task = config.task or task_of(db, target)
        treat = treatments(db)
        id_like = [c for c in id_like_columns(db) if c != target]
        excluded = list(id_like if config.exclude is None else config.exclude)
        unknown = [c for c in excluded if c not in treat]
        if unknown:
            raise BadInput(f"cannot exclude {unknown[0]!r}: dataset {record.name!r} has no such column")
        columns = [c for c in record.column_names if c != target and c not in excluded]
        if not columns:
            raise BadInput("no feature columns are left: put back at least one column")
        frame = columns_frame(db, columns + [target])
    finally:
        db.close()
    y_raw = frame[target]
    targets.check_target(y_raw, task, target)
    split = splits.get_or_create(store, record.id, target, y_raw, task)
    if len(split.codes) != len(frame):
        raise RecipeError(f"the stored split of {target!r} does not match the dataset's {len(frame):,} rows")
    classes, y_all = targets.encode_target(y_raw, task)
    if task == "classification" and len(classes) < 2:
        raise BadInput(f"target {target!r} has only one class: there is nothing to learn")
    rows_train, rows_val = training_rows(split.rows("train"), config.train_fraction, config.seed), split.rows("val")
    encoder = features.FeatureEncoder({c: treat[c] for c in columns}, config.top_k, config.text_features)
    encoder.fit(frame.iloc[rows_train])
    X_val, y_val = encoder.transform(frame.iloc[rows_val]), y_all[rows_val]
    val_groups = features.input_groups(X_val)
    return Data(task=task, classes=classes, split=split, encoder=encoder, columns=columns, excluded=excluded,
                id_like=id_like, rows_train=rows_train, rows_val=rows_val,
                X_train=encoder.transform(frame.iloc[rows_train]), y_train=y_all[rows_train],
                X_val=X_val, y_val=y_val, val_groups=val_groups,
                fixed_val=dynamics_batch(val_groups, y_val, task, config.seed))


def dynamics_batch(val_groups: np.ndarray, y_val: np.ndarray, task: str, seed: int) -> np.ndarray:
    """Positions in the validation split of the fixed batch watched over training: up to DYNAMICS_ROWS distinct
    inputs drawn with the seed, for classification every class in turn in proportion to its count, ordered by
    label so the figure reads class by class. The first rows by id were often one class, or one row repeated on a
    table of duplicates, and a repeated input only repeats its prediction."""
    n_distinct = int(val_groups.max()) + 1 if len(val_groups) else 0
    chosen = features.distinct_inputs_first(val_groups, np.random.default_rng(seed))[:n_distinct]
    if task == "classification":
        chosen = chosen[splits.stratified_order(y_val[chosen])]
    chosen = chosen[:DYNAMICS_ROWS]
    return chosen[np.lexsort((chosen, y_val[chosen]))]


def training_rows(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded subset of the training rows (all of them at 1.0), in their original order; at least 2 rows.
    The subsets of one seed are nested (10% inside 25% inside 50%), so a learning curve adds data, never swaps it."""
    if fraction >= 1:
        return rows
    order = np.random.default_rng(seed).permutation(len(rows))
    keep = max(2, math.ceil(fraction * len(rows)))
    return rows[np.sort(order[:keep])]


# -- the Train page's preview, before any run ------------------------------------------------------------
def split_overview(settings: Settings, store: Store, record: DatasetRecord, target: str,
                   task: str | None = None) -> tuple[str, splits.Split, pd.DataFrame]:
    """The task, the persisted split (made now if this is the target's first use) and its sizes and balance."""
    task, y = targets.target_column(settings, record, target, task)
    split = splits.get_or_create(store, record.id, target, y, task)
    return task, split, splits.summary(split, y, task)


def feature_plan(settings: Settings, record: DatasetRecord, target: str) -> pd.DataFrame:
    """Every column but the target: how it is treated and whether it is ID-like (excluded by default)."""
    db = DatasetDB(settings, record)
    try:
        treat = treatments(db)
        id_like = set(id_like_columns(db))
    finally:
        db.close()
    return pd.DataFrame([{"column": c, "treated as": treat[c], "id_like": c in id_like}
                         for c in record.column_names if c != target])
