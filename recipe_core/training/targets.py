"""The target column as models and labellers see it: its task, its classes, each row's class index or value.

Torch-free and sklearn-free, so labelling can read a target without loading what training needs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from recipe_core.config import Settings
from recipe_core.data.db import DatasetDB
from recipe_core.data.records import DatasetRecord
from recipe_core.data.rows import columns_frame
from recipe_core.data.target import task_of
from recipe_core.errors import BadInput
from recipe_core.training import splits


def encode_target(y: pd.Series, task: str) -> tuple[list[str], np.ndarray]:
    """(class names, each row's class index) for classification; ([], float values, NaN where missing) else."""
    if task == "classification":
        return class_labels(y)
    return [], pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)


def class_labels(y: pd.Series) -> tuple[list[str], np.ndarray]:
    """Sorted classes (numbers in numeric order) as text, and each row's class index (-1 where missing)."""
    present = y.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        values = sorted(present.unique())
        names = [str(int(v)) if float(v).is_integer() else str(v) for v in values]
        lookup = dict(zip(values, range(len(values)), strict=True))
        codes = y.map(lookup)
    else:
        names = sorted(present.astype(str).unique())
        codes = y.astype(str).where(y.notna()).map(dict(zip(names, range(len(names)), strict=True)))
    return names, codes.fillna(-1).astype(int).to_numpy()


def check_target(y: pd.Series, task: str, target: str) -> None:
    """One line for a target nothing can be learned from: a regression target that is not numeric, or what
    splits.check_target refuses (no rows, one class, a constant)."""
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise BadInput(f"target {target!r} is not numeric, so it cannot be a regression target")
    splits.check_target(y, task, target)


def target_column(settings: Settings, record: DatasetRecord, target: str, task: str | None) -> tuple[str, pd.Series]:
    """The task (inferred unless given) and the whole target column, checked for something to learn."""
    record.column(target)
    db = DatasetDB(settings, record)
    try:
        task = task or task_of(db, target)
        y = columns_frame(db, [target])[target]
    finally:
        db.close()
    check_target(y, task, target)
    return task, y
