"""The recipe's checks in a team's own test suite: a pytest test that fails with the red checks' messages.

    from recipe_core.testing import assert_recipe

    def test_my_model_follows_the_recipe():
        assert_recipe(make_model, x, y, loss="cross_entropy")

Recorded or not: by default the checks are recorded as a run (source "check") only when the environment names a
store, RECIPE_STORE_URL (a team's CI pointed at the team store) or RECIPE_HOME; a developer's plain `pytest` then
leaves no .recipe folder behind. record=True or False decides it explicitly.
"""
from __future__ import annotations

import os
from typing import Callable

from recipe_core.errors import BadInput


def assert_recipe(factory: Callable, x, y, loss: str | None = None, causal: bool = False, skip=(),
                  record: bool | None = None, **kw):
    """Run recipe_core.training.own_model.check_model and raise AssertionError naming each red check with its
    message; return the report when none is red. skip: names of checks whose red does not fail the test (they
    still run, and are recorded); a name that is not a check is refused, so a typo never skips silently.
    kw: check_model's other options (name, tolerance, budget, store_url, tags, seed...)."""
    from recipe_core.training import own_model  # torch, only when a test calls this

    unknown = sorted(set(skip) - set(own_model.CHECKS))
    if unknown:
        raise BadInput(f"skip names no check of a model: {', '.join(map(repr, unknown))}; the checks are "
                       f"{', '.join(own_model.CHECKS)}")
    if record is None:
        record = bool(os.environ.get("RECIPE_STORE_URL") or os.environ.get("RECIPE_HOME"))
    report = own_model.check_model(factory, x, y, loss=loss, causal=causal, record=record, **kw)
    red = [name for name in report.red if name not in skip]
    if red:
        where = f" (run {report.run_id})" if report.run_id else ""
        lines = [f"{name}: {report.checks[name].message}" for name in red]
        raise AssertionError(f"{len(red)} of the recipe's checks failed{where}:\n  " + "\n  ".join(lines))
    return report
