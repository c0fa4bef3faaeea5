"""The target as models and labellers read it: classes in a stable order, missing values marked, and one line for
a target nothing can be learned from; read without torch or scikit-learn."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recipe_core.errors import BadInput
from recipe_core.training import targets

ROOT = Path(__file__).resolve().parents[1]


def test_numeric_classes_sort_as_numbers_and_print_without_a_trailing_zero():
    names, codes = targets.class_labels(pd.Series([10.0, 9.0, 2.5, None, 9.0]))
    assert names == ["2.5", "9", "10"]  # as text, "10" would sort before "9"
    assert codes.tolist() == [2, 1, 0, -1, 1]  # missing: -1


def test_text_classes_sort_as_text_and_missing_is_minus_one():
    names, codes = targets.encode_target(pd.Series(["b", None, "a", "b"]), "classification")
    assert names == ["a", "b"] and codes.tolist() == [1, -1, 0, 1]


def test_booleans_are_classes_named_as_text():
    names, codes = targets.class_labels(pd.Series([True, False, True]))
    assert names == ["False", "True"] and codes.tolist() == [1, 0, 1]


def test_a_regression_target_is_its_values_with_nan_where_missing():
    names, values = targets.encode_target(pd.Series([1.5, None, 3]), "regression")
    assert names == [] and values[0] == 1.5 and np.isnan(values[1]) and values[2] == 3.0


def test_check_target_refuses_what_cannot_be_learned_in_one_line():
    with pytest.raises(BadInput, match="not numeric, so it cannot be a regression target"):
        targets.check_target(pd.Series(list("abcdefghijkl")), "regression", "y")
    with pytest.raises(BadInput, match="only one class"):
        targets.check_target(pd.Series(["a"] * 20), "classification", "y")
    with pytest.raises(BadInput, match="a constant value"):
        targets.check_target(pd.Series([1.0] * 20), "regression", "y")
    targets.check_target(pd.Series(np.arange(20.0)), "regression", "y")  # learnable: no error


def test_target_column_infers_the_task_and_reads_the_whole_column(settings, wine):
    task, y = targets.target_column(settings, wine, "cultivar", None)
    assert task == "classification" and len(y) == wine.n_rows == 178
    assert targets.class_labels(y)[0] == ["class_0", "class_1", "class_2"]
    with pytest.raises(BadInput, match="cannot be a regression target"):
        targets.target_column(settings, wine, "cultivar", "regression")


def test_reading_a_target_loads_no_torch_or_scikit_learn():
    code = ("import sys, recipe_core.training.targets; "
            "print(sorted(m for m in ('torch', 'sklearn', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
