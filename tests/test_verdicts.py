"""Check results and run views as dataclasses: stored as the same JSON as before, read back by kind, and runs
stored by older code (fewer fields) or newer code (more fields) still read."""
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_core.training import artifacts, verdicts

ROOT = Path(__file__).resolve().parents[1]


def test_a_skipped_check_is_stored_as_ok_none_and_its_reason():
    assert verdicts.skipped("applies to the MLP").to_json() == {"ok": None, "message": "applies to the MLP"}


@pytest.mark.parametrize("name, kind, extra", [
    ("loss_at_init", verdicts.LossAtInit, {"expected": 1.09, "measured": 1.1, "tolerance": 0.02, "loss": None,
                                           "uninformed": None, "bias": None, "advice": ""}),
    ("loss_at_init", verdicts.LossAtInit, {"expected": 0.9, "measured": 1.1, "tolerance": 0.1,
                                           "loss": "cross_entropy", "uninformed": 1.0986, "bias": [-0.3, -1.6],
                                           "advice": "init well: set the last layer's bias to [-0.3, -1.6]"}),
    ("gradients", verdicts.Gradients, {"checked": 4, "without": ["unused.weight"], "non_finite": [],
                                       "norms": {"0.weight": 1.5}}),
    ("causality", verdicts.Causality, {"length": 2, "first_leak": [0, 1], "matrix": [[1.0, 0.2], [0.5, 1.0]]}),
    ("lr_range", verdicts.LrRange, {"lrs": [1e-7, 1e-3], "losses": [2.3, 1.9], "suggested": 1e-3, "steps": 2}),
    ("just_before_the_net", verdicts.BatchSeen, {"shape": [8, 1, 8, 8], "dtype": "float32", "min": -1.0,
                                                 "max": 2.0, "nan": 0, "channels": [{"channel": 0, "mean": 0.0,
                                                                                     "std": 1.0}], "images": 8}),
    ("capacity", verdicts.Capacity, {"widths": [16, 32], "train_losses": [0.5, 0.4], "init_losses": [1.0, 1.0],
                                     "best_fall": 0.6, "min_fall": 0.2, "steps": 300, "rows": 512}),
    ("reproducible", verdicts.Reproducibility, {"earlier_run": "r1", "differences": {}}),
])
def test_each_check_reads_back_as_its_own_kind(name, kind, extra):
    stored = {"ok": True, "message": "fine", **extra}
    verdict = verdicts.read({name: stored})[name]
    assert type(verdict) is kind and verdict.ok is True and verdict.to_json() == stored


def test_older_and_newer_stored_checks_still_read():
    old = verdicts.of({"overfit_one_batch": {"ok": True, "message": "8 examples trained"}}, "overfit_one_batch")
    assert old.labels is None and old.floor == 0.0 and old.rows == []  # fields it never stored: defaults
    new = verdicts.read({"capacity": {"ok": False, "message": "rises", "widths": [8], "a_field_from_later": 1}})
    assert new["capacity"].widths == [8]  # an unknown field is left out, not an error
    assert type(verdicts.read({"some_new_check": {"ok": True, "message": "m"}})["some_new_check"]) is verdicts.Verdict


def test_a_check_that_did_not_run_says_so():
    missing = verdicts.of({}, "capacity")
    assert missing.ok is None and missing.message == "not run" and missing.widths == []
    assert verdicts.of(None, "overfit_one_batch").message == "not run"


def test_run_views_read_back_with_defaults_for_older_runs():
    old_batch = {"rows": [3], "labels": ["a"], "features": ["x"], "n_features": 1, "values": [[0.5]],
                 "stats": {"feature": ["x"]}, "decoded": {"x": ["0.5"]}}  # before duplicates were grouped
    batch = artifacts.read("batch", old_batch)
    assert batch.rows == [3] and batch.n_rows is None and batch.batch_rows is None
    assert artifacts.read("batch", None) is None
    top = [{"row": 1, "label": 2.5, "loss": 0.1, "predicted": 2.0, "n_rows": 1, "n_labels": 1}]  # regression
    items = artifacts.read("top_losses", top)
    assert items[0].p_label is None and [t.to_json() for t in items] == top  # no p_label column for regression
    assert list(artifacts.top_losses_frame(items).columns) == ["row", "label", "loss", "predicted", "n_rows",
                                                              "n_labels"]


def test_reading_checks_and_views_loads_no_torch_or_scikit_learn():
    code = ("import sys, recipe_core.training.verdicts, recipe_core.training.artifacts; "
            "print(sorted(m for m in ('torch', 'sklearn', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
