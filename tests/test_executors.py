"""Where queued runs execute: the local pool runs a queued run to its end in a worker process; a trial's pruner
crosses to the worker pickled, by name; and executors.py knows no Optuna (no import cycle with tuning)."""
import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from recipe_core.config import TrainConfig
from recipe_core.errors import BadInput, Pruned
from recipe_core.search import executors, tuning
from recipe_core.training import runs

ROOT = Path(__file__).resolve().parents[1]


def test_executors_imports_neither_tuning_nor_optuna():
    tree = ast.parse((ROOT / "recipe_core" / "search" / "executors.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not [n for n in names if "tuning" in n or "optuna" in n]
    code = "import sys, recipe_core.search.executors; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def study_with_good_trials(url: str, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=tuning.optuna_storage(url),
                                pruner=optuna.pruners.MedianPruner(**tuning.PRUNER))
    lr = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
    for _ in range(tuning.PRUNER["n_startup_trials"]):
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-2}, distributions={"lr": lr}, value=0.1,
                                                  intermediate_values={p: 0.1 for p in range(5, 101, 5)}))
    return study


def test_the_reporter_pickles_by_name_and_without_its_open_trial(settings):
    study = study_with_good_trials(settings.store_url, "pickle-me")
    trial = study.ask()
    reporter = tuning.TrialReporter(settings.store_url, "pickle-me", trial._trial_id)
    sent = pickle.loads(pickle.dumps(reporter))
    assert type(sent) is tuning.TrialReporter and (sent.storage, sent.study, sent.trial_id) == (
        settings.store_url, "pickle-me", trial._trial_id)
    sent(50, 0.05)  # better than the median: no prune, and now it holds an open trial
    assert sent._trial is not None
    again = pickle.loads(pickle.dumps(sent))  # a live Optuna handle never crosses to a worker
    assert again._trial is None
    assert optuna.load_study(study_name="pickle-me", storage=tuning.optuna_storage(settings.store_url)).trials[
        -1].intermediate_values == {50: 0.05}


def test_the_reporter_raises_pruned_when_the_study_says_so(settings):
    study = study_with_good_trials(settings.store_url, "prune-me")
    reporter = tuning.TrialReporter(settings.store_url, "prune-me", study.ask()._trial_id)
    reporter(20, 5.0)  # before the warm-up (25%) nothing is judged
    with pytest.raises(Pruned, match="pruned at 30% of its training"):
        reporter(30, 5.0)


def test_the_local_executor_runs_a_queued_run_in_a_worker_process(settings, store, wine):
    run = runs.create(store, wine, "cultivar", TrainConfig(model="linear", checks=False))
    with executors.executor(executors.LOCAL, workers=1) as ex:
        future = ex.submit(executors.run_queued, str(settings.home), settings.store_url, run.id)
        assert ex.wait_one({future}) == {future}
        result = future.result()
    assert result["run_id"] == run.id and result["status"] == "finished" == store.get_run(run.id).status
    assert result["val_loss"] == store.get_run(run.id).metrics["val_loss"]
    assert result["worker"].split(":")[-1] != str(os.getpid())  # another process trained it


@pytest.mark.parametrize("address", ["tcp://host:1", "dask://nohost", "http://x:1"])
def test_a_malformed_address_is_refused_in_one_line(address):
    with pytest.raises(BadInput, match="executor must be 'local' or dask://HOST:PORT"):
        executors.check(address)


def test_local_needs_no_connection():
    assert executors.check("") == executors.LOCAL == executors.reachable("local")
