"""Random search with Optuna: reproducible with a seed, pruning stops a hopeless trial, trials run on a real Dask
cluster, the study lives in the store; learning curves; the search space's checks."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from trained import SAMPLES

from recipe_core.config import TrainConfig
from recipe_core.errors import BadInput
from recipe_core.search import executors, learning_curve, tuning
from recipe_core.training import runs

ROOT = Path(__file__).resolve().parents[1]
L2 = (tuning.Param("l2", "log", 1e-3, 1e2),)


@pytest.fixture
def wine(settings, store):
    from recipe_core.data import ingest

    return ingest.ingest_file(settings, store, SAMPLES / "wine.csv")


def params(out):
    return [t["params"] for t in out["trials"]]


def test_random_search_is_reproducible_with_a_seed_and_every_trial_is_a_run(settings, store, wine):
    base = TrainConfig(model="linear")
    one = tuning.run_study(settings, store, wine, "cultivar", base, L2, 4, seed=7, workers=2)
    two = tuning.run_study(settings, store, wine, "cultivar", base, L2, 4, seed=7, workers=1)
    other = tuning.run_study(settings, store, wine, "cultivar", base, L2, 2, seed=8, workers=2)
    assert params(one) == params(two) and params(other) != params(one)[:2]
    assert all(t["state"] == "complete" for t in one["trials"]) and one["best"]["value"] == min(
        t["value"] for t in one["trials"])
    for t in one["trials"]:
        run = store.get_run(t["run_id"])
        assert run.status == "finished" and run.config["l2"] == t["params"]["l2"] and run.metrics["val_loss"] == t[
            "value"]
        assert ("study:" + one["study"]) in run.tags and run.host == t["worker"]
    # the study lives in the store: a new process (or a restart) finds it
    assert one["study"] in tuning.studies(settings.store_url, wine.id, "cultivar")
    assert len(tuning.trials_frame(tuning.load(settings.store_url, one["study"]))) == 4


def test_pruning_stops_a_hopeless_trial(settings, store, wine):
    study = optuna.create_study(study_name="prune-me", storage=tuning.optuna_storage(settings.store_url),
                                pruner=optuna.pruners.MedianPruner(**tuning.PRUNER))
    lr = optuna.distributions.FloatDistribution(1e-9, 1.0, log=True)
    for _ in range(tuning.PRUNER["n_startup_trials"]):  # trials below the prior's loss (1.083) throughout
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-2}, distributions={"lr": lr}, value=0.05,
                                                  intermediate_values={p: 1.05 for p in range(1, 101)}))
    trial = study.ask({"lr": lr})
    hopeless = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", lr=1e-9, epochs=50, checks=False))
    result = executors.run_queued(str(settings.home), settings.store_url, hopeless.id,
                                  tuning.TrialReporter(settings.store_url, "prune-me", trial._trial_id))
    run = store.get_run(hopeless.id)
    assert result["status"] == run.status == "pruned" and "pruned at 25% of its training" in run.reason
    # it stopped at its first judged report (epoch 13 of 50 passes the 25% mark), 37 epochs early
    assert store.histories([run.id], "val_loss")[run.id].epoch.max() == 13
    good = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", lr=1e-2, epochs=50, checks=False))
    trial = study.ask({"lr": lr})
    assert executors.run_queued(str(settings.home), settings.store_url, good.id,
                                tuning.TrialReporter(settings.store_url, "prune-me", trial._trial_id)
                                )["status"] == "finished"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(settings):
    """A real scheduler and two workers, started the way a team would: `dask scheduler`, `dask worker`."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECIPE_HOME": str(settings.home)}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                 "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    from distributed import Client

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with Client(f"tcp://127.0.0.1:{port}", timeout="2s") as client:
                if len(client.scheduler_info()["workers"]) == 2:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("the Dask cluster did not start")
    yield f"dask://127.0.0.1:{port}"
    for proc in workers + [scheduler]:
        proc.terminate()
    for proc in workers + [scheduler]:
        proc.wait(30)


def test_a_study_on_a_dask_cluster_completes_every_trial(settings, store, wine, dask_cluster):
    out = tuning.run_study(settings, store, wine, "cultivar", TrainConfig(model="linear"), L2, 4, seed=3,
                           executor=dask_cluster, workers=2)
    assert [t["state"] for t in out["trials"]] == ["complete"] * 4
    workers = {t["worker"] for t in out["trials"]}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert {store.get_run(t["run_id"]).host for t in out["trials"]} == workers  # each run says where it ran
    local = tuning.run_study(settings, store, wine, "cultivar", TrainConfig(model="linear"), L2, 4, seed=3)
    assert params(local) == params(out)  # where trials run does not change what is sampled


def test_an_unreachable_cluster_is_one_line(settings, store, wine, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(BadInput, match="cannot reach the Dask scheduler"):
        tuning.run_study(settings, store, wine, "cultivar", TrainConfig(model="linear"), L2, 2,
                         executor=f"dask://127.0.0.1:{free_port()}")
    with pytest.raises(BadInput, match="'local' or dask://"):
        tuning.run_study(settings, store, wine, "cultivar", TrainConfig(model="linear"), L2, 2, executor="ssh://x")


def test_grid_tries_fewer_distinct_values_than_random_for_the_same_budget(settings, store, wine):
    space = (tuning.Param("lr", "log", 1e-4, 1e-1), tuning.Param("width", "int", 8, 64),
             tuning.Param("batch_size", "choice", choices=(32, 64)))
    table = tuning.coverage(space, 8).set_index("setting")
    assert table.loc["lr", "random search"] == 8 and table.loc["lr", "grid"] == 2
    assert table.loc["batch_size", "grid"] == table.loc["batch_size", "random search"] == 2
    out = tuning.run_study(settings, store, wine, "cultivar", TrainConfig(model="linear"), L2, 3, sampler="grid")
    tried = sorted(t["params"]["l2"] for t in out["trials"])
    assert len(tried) == 3 and tried == sorted(tuning.grid(L2, 3)["l2"])


@pytest.mark.parametrize("rows, message", [
    ([], "empty"),
    ([{"name": "lr", "kind": "log", "low": 0, "high": 1}], "start above 0"),
    ([{"name": "lr", "kind": "log", "low": 1e-2, "high": 1e-3}], "low below its high"),
    ([{"name": "width", "kind": "float", "low": 8, "high": 64}], "whole number"),
    ([{"name": "nope", "kind": "int", "low": 1, "high": 2}], "not a setting of mlp"),
    ([{"name": "batch_size", "kind": "choice", "choices": "32, 32"}], "distinct choices"),
    ([{"name": "lr", "kind": "log", "low": "abc", "high": 1}], "not a number"),
])
def test_a_bad_search_space_is_one_line(rows, message):
    with pytest.raises(BadInput, match=message):
        tuning.space_from_rows("mlp", rows)


def test_the_editor_rows_become_a_space():
    space = tuning.space_from_rows("mlp", [{"name": "lr", "kind": "log", "low": "1e-4", "high": 0.01},
                                           {"name": "batch_size", "kind": "choice", "choices": "32, 64,128"},
                                           {"name": "", "kind": "int"}])
    assert space == (tuning.Param("lr", "log", 1e-4, 0.01), tuning.Param("batch_size", "choice", choices=(32, 64, 128)))


def test_a_learning_curve_trains_nested_fractions(settings, store, wine):
    parent = runs.execute(settings, store, runs.create(store, wine, "cultivar",
                                                       TrainConfig(model="linear", checks=False)).id)
    curve, queued = learning_curve.start(store, parent, fractions=(0.25, 1.0), seeds=2)
    assert len(queued) == 4 and all(r.parent_id == parent.id for r in queued)
    learning_curve.execute(settings, store, queued, workers=2)
    frame = learning_curve.table(store, curve)
    assert sorted(frame["n_train"].unique().tolist()) == [31, 124] and (frame["status"] == "finished").all()
    points = learning_curve.summary(frame)
    assert points["runs"].tolist() == [2, 2] and (points["min"] <= points["mean"]).all()
    full = frame[frame["fraction"] == 1.0]
    assert full["val_loss"].min() == pytest.approx(parent.metrics["val_loss"]) or len(full) == 2
    assert learning_curve.verdict(points).split(":")[0] in ("Still improving", "Flattening", "Flat or worse")


def test_losing_the_race_to_create_optunas_tables_is_retried(tmp_path, monkeypatch):
    # Seen in CI: the Tune page and the search it started both stamped Optuna's schema version on a fresh store;
    # the loser's page showed an exception box.
    import sqlalchemy as sa

    real, calls = optuna.storages.RDBStorage, []

    def first_loses(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise sa.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", first_loses)
    storage = tuning.optuna_storage(f"sqlite:///{tmp_path / 'recipe.db'}")
    assert len(calls) == 2 and storage.get_all_studies() == []
