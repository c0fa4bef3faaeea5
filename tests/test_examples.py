"""The examples of examples/: each run as the script a user runs, which checks itself through the API
(rc.check_model) and records a run, and each checked in-process through the pytest helper (assert_recipe). Their
checks pass honestly, with the default budget: a red here is the example to fix, not the check."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_core.testing import assert_recipe
from recipe_core.tracking.store import Store
from recipe_core.training import verdicts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CAUSAL = {"digits_cnn": False, "char_transformer": True}
CHECKS = {"loss_at_init", "gradients", "batch_independence", "overfit_one_batch", "input_independent", "lr_range",
          "just_before_the_net"}


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CAUSAL)
def test_example_script_checks_itself_through_the_api(name, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "RECIPE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("RECIPE_STORE_URL", None)
    out = subprocess.run([sys.executable, EXAMPLES / f"{name}.py"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr  # the script exits 1 on a red check
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("PASS loss_at_init: ") and not any(line.startswith("FAIL") for line in lines)
    assert "on the Compare page" in lines[-1]

    (run,) = Store(f"sqlite:///{home / 'recipe.db'}").list_runs()
    assert (run.source, run.status, run.config["causal"]) == ("check", "finished", CAUSAL[name])
    found = verdicts.read(run.checks)
    assert set(found) == CHECKS | ({"causality"} if CAUSAL[name] else set())
    assert {n for n, v in found.items() if v.ok is not True} == {"lr_range"}  # informational: ok is None
    assert run.id in lines[-1]


@pytest.mark.parametrize("name", CAUSAL)
def test_example_is_green_through_the_pytest_helper(name, settings):
    ex = example(name)
    x, y = ex.data()
    report = assert_recipe(ex.make_model, x, y, causal=CAUSAL[name], record=False)
    assert report.run_id is None and report.ok
    assert ("causality" in report.checks) == CAUSAL[name]
