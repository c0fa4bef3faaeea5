"""Settings from the environment (every RECIPE_* variable, its default, and one line for a bad value) and a run's
TrainConfig: validated one line at a time, and the same config again after a trip through the store's JSON."""
import json
import os
from dataclasses import fields, replace
from pathlib import Path

import pytest

from recipe_core.config import MB, Settings, TrainConfig, load_settings
from recipe_core.errors import BadInput
from recipe_core.training.runs import config_from, config_json, validate


# -- load_settings -----------------------------------------------------------------------------------------------
def test_an_empty_environment_gives_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.home == tmp_path / ".recipe" and s.store_url == f"sqlite:///{tmp_path / '.recipe' / 'recipe.db'}"
    assert s.snapshots_dir == tmp_path / ".recipe" / "snapshots"
    assert s.max_upload_bytes == 1024 * MB and s.train_threads == 1 and s.query_memory_bytes == 2048 * MB
    assert (s.max_rows, s.max_cells, s.max_cell_bytes) == (Settings.max_rows, Settings.max_cells, 16 * MB)
    assert (s.max_columns, s.max_import_points) == (Settings.max_columns, Settings.max_import_points)
    assert s.executors == (("local", "local"),)
    assert s.max_jobs == len(os.sched_getaffinity(0)) and s.job_memory_bytes >= 1024 * MB
    assert s.undo_seconds == 24 * 3600 and s.check_tolerance == 0.10


def test_empty_values_mean_the_default():
    names = ["RECIPE_HOME", "RECIPE_STORE_URL", "RECIPE_MAX_UPLOAD_MB", "RECIPE_TRAIN_THREADS", "RECIPE_MAX_ROWS",
             "RECIPE_QUERY_MEMORY_MB", "RECIPE_EXECUTORS", "RECIPE_MAX_JOBS", "RECIPE_JOB_MEMORY_MB",
             "RECIPE_UNDO_HOURS", "RECIPE_CHECK_TOLERANCE"]
    assert load_settings(dict.fromkeys(names, "")) == load_settings({})


def test_every_variable_is_read(tmp_path):
    env = {"RECIPE_HOME": str(tmp_path / "h"), "RECIPE_STORE_URL": "postgresql://db/recipe",
           "RECIPE_MAX_UPLOAD_MB": "2.5", "RECIPE_TRAIN_THREADS": "4", "RECIPE_QUERY_MEMORY_MB": "512",
           "RECIPE_MAX_ROWS": "1000", "RECIPE_MAX_CELLS": "5000", "RECIPE_MAX_CELL_MB": "1",
           "RECIPE_MAX_COLUMNS": "30", "RECIPE_MAX_IMPORT_POINTS": "100",
           "RECIPE_EXECUTORS": "local, lab=dask://10.0.0.5:8786 dask://10.0.0.6:8786",
           "RECIPE_MAX_JOBS": "3", "RECIPE_JOB_MEMORY_MB": "1500", "RECIPE_UNDO_HOURS": "0.5",
           "RECIPE_CHECK_TOLERANCE": "0.25"}
    s = load_settings(env)
    assert s.home == tmp_path / "h" and s.store_url == "postgresql://db/recipe"
    assert s.max_upload_bytes == int(2.5 * MB) and s.train_threads == 4 and s.query_memory_bytes == 512 * MB
    assert (s.max_rows, s.max_cells, s.max_cell_bytes, s.max_columns, s.max_import_points) == (
        1000, 5000, MB, 30, 100)
    assert s.executors == (("local", "local"), ("lab", "dask://10.0.0.5:8786"),
                           ("dask://10.0.0.6:8786", "dask://10.0.0.6:8786"))
    assert s.executor_address("lab") == "dask://10.0.0.5:8786"
    assert s.max_jobs == 3 and s.job_memory_bytes == 1500 * MB
    assert s.undo_seconds == 1800 and s.check_tolerance == 0.25


def test_the_store_defaults_to_sqlite_in_the_home_which_may_start_at_the_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings({"RECIPE_HOME": "~/recipe"})
    assert s.home == tmp_path / "recipe" and s.store_url == f"sqlite:///{tmp_path / 'recipe' / 'recipe.db'}"


def test_the_environment_is_read_at_each_call(monkeypatch):
    monkeypatch.setenv("RECIPE_TRAIN_THREADS", "2")
    assert load_settings().train_threads == 2
    monkeypatch.setenv("RECIPE_TRAIN_THREADS", "3")
    assert load_settings().train_threads == 3


@pytest.mark.parametrize("threads", ["1", "2", "256"])
def test_train_threads_from_1_to_256(threads):
    assert load_settings({"RECIPE_TRAIN_THREADS": threads}).train_threads == int(threads)


@pytest.mark.parametrize("name, raw, says", [
    ("RECIPE_TRAIN_THREADS", "0", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", "257", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", "1.5", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", "-2", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", "two", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", " 2", "a whole number from 1 to 256"),
    ("RECIPE_TRAIN_THREADS", "²", "a whole number from 1 to 256"),  # str.isdigit accepts it, int() does not
    ("RECIPE_MAX_UPLOAD_MB", "lots", "a number of megabytes"),
    ("RECIPE_MAX_UPLOAD_MB", "0", "a number of megabytes above 0"),
    ("RECIPE_MAX_UPLOAD_MB", "-5", "a number of megabytes above 0"),
    ("RECIPE_MAX_UPLOAD_MB", "nan", "a number of megabytes above 0"),
    ("RECIPE_MAX_UPLOAD_MB", "inf", "a number of megabytes above 0"),
    ("RECIPE_QUERY_MEMORY_MB", "2GB", "a number of megabytes"),
    ("RECIPE_MAX_ROWS", "1.5", "a whole number of rows above 0"),
    ("RECIPE_MAX_CELLS", "many", "a whole number of cells"),
    ("RECIPE_MAX_CELL_MB", "0", "a number of megabytes above 0"),
    ("RECIPE_MAX_COLUMNS", "2.5", "a whole number of columns above 0"),
    ("RECIPE_MAX_IMPORT_POINTS", "-1", "a whole number of points above 0"),
    ("RECIPE_MAX_JOBS", "0", "a whole number of jobs above 0"),
    ("RECIPE_JOB_MEMORY_MB", "x", "a number of megabytes"),
    ("RECIPE_UNDO_HOURS", "a day", "a number of hours"),
    ("RECIPE_UNDO_HOURS", "0", "a number of hours above 0"),
    ("RECIPE_UNDO_HOURS", "-1", "a number of hours above 0"),
    ("RECIPE_CHECK_TOLERANCE", "10%", "a fraction, e.g. 0.1"),
    ("RECIPE_EXECUTORS", "dask://host", "is not 'local', NAME=dask://HOST:PORT or dask://HOST:PORT"),
    ("RECIPE_EXECUTORS", "lab=ssh://host:22", "is not 'local'"),
    ("RECIPE_EXECUTORS", "local a=dask://h:1 a=dask://h:2", "a name of its own"),
    ("RECIPE_EXECUTORS", "=dask://h:1", "a name of its own"),
    ("RECIPE_EXECUTORS", " , ", "lists no executor"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, raw, says):
    with pytest.raises(BadInput) as e:
        load_settings({name: raw})
    message = str(e.value)
    assert message.startswith(name) and says in message and "\n" not in message and len(message) < 200
    if name != "RECIPE_EXECUTORS":
        assert repr(raw) in message  # what was typed, quoted


def test_an_executor_that_is_not_listed_is_refused_by_name():
    s = load_settings({"RECIPE_EXECUTORS": "local lab=dask://10.0.0.5:8786"})
    with pytest.raises(BadInput, match=r"'dask://evil:1' is not one this server offers \(local, lab\)"):
        s.executor_address("dask://evil:1")


# -- TrainConfig ---------------------------------------------------------------------------------------------------
CONFIGS = [TrainConfig(), TrainConfig(model="linear", seed=7, task="regression", exclude=("id", "name")),
           TrainConfig(model="gbm", exclude=(), gbm_iterations=50, gbm_learning_rate=0.05, gbm_max_leaf_nodes=2),
           TrainConfig(width=8, depth=3, dropout=0.5, weight_decay=1e-4, batch_size=1, epochs=1, lr=1e-3,
                       bias_init=False, patience=3, train_fraction=0.25, top_k=1, text_features=1, checks=False)]


@pytest.mark.parametrize("config", CONFIGS, ids=["defaults", "linear", "gbm", "mlp"])
def test_a_config_survives_the_stores_json(config):
    stored = json.loads(json.dumps(config_json(config)))  # what the store keeps, and gives back
    assert set(stored) == {f.name for f in fields(TrainConfig)}
    assert stored["exclude"] is None or isinstance(stored["exclude"], list)
    again = config_from(stored)
    assert again == validate(config) and validate(again) == config
    assert isinstance(again.exclude, (tuple, type(None)))


def test_a_stored_config_keeps_what_it_knows():
    # A run stored by another version of the app: unknown settings are left out, missing ones take the default.
    assert config_from({"model": "linear", "l2": 0.5, "retired_setting": 1}) == TrainConfig(model="linear", l2=0.5)


@pytest.mark.parametrize("change, says", [
    ({"model": "svm"}, "unknown model 'svm'; choose one of prior, linear, gbm, mlp"),
    ({"task": "clustering"}, "unknown task 'clustering'"),
    ({"width": 0}, "width must be a whole number from 1 to 100,000, not 0"),
    ({"width": True}, "width must be a whole number"),
    ({"batch_size": 2.0}, "batch_size must be a whole number"),
    ({"top_k": 100_001}, "top_k must be a whole number"),
    ({"depth": 51}, "depth must be at most 50"),
    ({"gbm_max_leaf_nodes": 1}, "gbm_max_leaf_nodes at least 2"),
    ({"epochs": 0}, "epochs must be a whole number from 1 to 100,000, not 0"),
    ({"seed": -1}, "seed must be a whole number from 0 to 4294967295"),
    ({"seed": 2**32}, "seed must be a whole number"),
    ({"dropout": 0.995}, "dropout must be a number from 0 to 0.99"),
    ({"lr": float("nan")}, "lr must be a number from 0 to 10, not nan"),
    ({"lr": "0.1"}, "lr must be a number"),
    ({"l2": 0.0}, "l2 must be a number from 1e-09 to 1e+09"),
    ({"weight_decay": float("inf")}, "weight_decay must be a number"),
    ({"patience": 0}, "patience must be a whole number of epochs"),
    ({"model": "linear", "patience": 5}, "early stopping (patience) applies to the MLP; linear trains in one go"),
    ({"train_fraction": 0}, "train_fraction must be above 0 and at most 1"),
    ({"train_fraction": 1.5}, "train_fraction must be above 0 and at most 1"),
])
def test_a_bad_config_is_one_line(change, says):
    with pytest.raises(BadInput) as e:
        validate(replace(TrainConfig(), **change))
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("n_train, batch_size, epochs", [
    (640, 64, 200),  # 10 steps an epoch: 200 epochs make the 2,000 steps
    (100_000, 64, 5),  # at least 5 epochs, however many steps one holds
    (10, 64, 2000),  # one step an epoch, at most 2,000 epochs
    (650, 64, 182),  # 11 steps an epoch (the last batch is partial): rounded up
])
def test_default_epochs_make_about_2000_steps(n_train, batch_size, epochs):
    assert TrainConfig(batch_size=batch_size).epochs_for(n_train) == epochs
    assert TrainConfig(epochs=3).epochs_for(n_train) == 3


def test_settings_and_configs_are_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().seed = 1
    with pytest.raises(AttributeError):
        load_settings({}).home = Path("/")
