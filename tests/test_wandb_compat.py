"""recipe_core.compat.wandb: a W&B-style script logs into Recipe, with W&B's step semantics, define_metric as the x
axis, summary as the final metrics, the config saved, alerts as notes, and one line for anything unsupported."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_core.compat import wandb
from recipe_core.errors import BadInput, RecipeError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("settings")


@pytest.fixture(autouse=True)
def no_run_left():
    yield
    wandb.finish()


def points(store, run_id, key):
    h = store.histories([run_id], key)[run_id]
    return [(int(s), float(v)) for s, v in zip(h.step, h.value)]


def test_the_step_advances_on_each_commit_and_commit_false_accumulates(store):
    run = wandb.init(project="p", name="steps")
    wandb.log({"a": 1})                      # step 0
    wandb.log({"a": 2})                      # step 1
    wandb.log({"a": 3}, commit=False)        # step 2, pending
    wandb.log({"b": 30, "a": 3.5})           # the same row: a overwritten, as in W&B; committed
    assert run.step == 3
    wandb.log({"a": 4}, step=10)             # a larger step commits what is pending and moves there, no commit
    wandb.log({"b": 40})                     # joins step 10's row, committed: step 11 next
    wandb.log({"a": 5}, step=11, commit=True)
    with pytest.warns(UserWarning, match="below the current step"):
        wandb.log({"a": 99}, step=3)         # W&B ignores a step that goes back, with a warning
    wandb.log({"nested": {"x": 1, "y": {"z": 2}}})
    wandb.log({"a": 6}, step=20)             # pending at finish: written then
    wandb.finish()
    assert points(store, run.id, "a") == [(0, 1), (1, 2), (2, 3.5), (10, 4), (11, 5), (20, 6)]
    assert points(store, run.id, "b") == [(2, 30), (10, 40)]
    assert points(store, run.id, "nested/x") == [(12, 1)] and points(store, run.id, "nested/y/z") == [(12, 2)]
    assert wandb.run is None


def test_define_metric_is_the_x_axis_stored_in_the_epoch_column(store):
    run = wandb.init(name="axes")
    wandb.define_metric("val/*", step_metric="epoch")
    wandb.define_metric("lr", step_metric="epoch")
    for epoch in range(3):
        for _ in range(4):
            wandb.log({"train/loss": 1.0})
        wandb.log({"val/loss": 0.5 - epoch / 10, "epoch": epoch})
        wandb.log({"lr": 0.1 / (epoch + 1)})  # no epoch in this row: the last logged one (W&B's step_sync)
    wandb.finish()
    val = store.histories([run.id], "val/loss")[run.id]
    assert list(val.epoch) == [0, 1, 2] and list(val.step) == [4, 10, 16]
    assert list(store.histories([run.id], "lr")[run.id].epoch) == [0, 1, 2]
    train = store.histories([run.id], "train/loss")[run.id]
    assert len(train.step) == 12 and all(e != e for e in train.epoch), "no axis defined: no epoch"


def test_summary_values_are_the_final_metrics(store):
    run = wandb.init(name="summary")
    for step in range(5):
        wandb.log({"loss": 1.0 / (step + 1), "acc": step / 10})
    assert wandb.summary["loss"] == pytest.approx(0.2)  # the last logged value, until set
    wandb.summary["best_acc"] = 0.9
    wandb.summary.update({"loss": 0.0, "extra": {"f1": 0.5}})
    run.summary.note_count = 3
    assert run.summary.best_acc == 0.9
    with pytest.raises(BadInput, match="numbers only"):
        wandb.summary["comment"] = "text"
    wandb.finish()
    assert store.get_run(run.id).metrics == {"loss": 0.0, "acc": pytest.approx(0.4), "best_acc": 0.9,
                                             "extra/f1": 0.5, "note_count": 3.0}


def test_config_is_saved_with_attribute_and_item_access(store):
    run = wandb.init(name="config", config=argparse.Namespace(lr=0.1, layers=2))
    assert wandb.config.lr == 0.1 and wandb.config["layers"] == 2 and "lr" in wandb.config
    wandb.config.dropout = 0.2
    wandb.config["opt"] = {"name": "adam", "betas": [0.9, 0.99]}
    wandb.config.update({"seed": 3})
    wandb.config.update({"lr": 0.1})  # the same value again is fine
    with pytest.raises(BadInput, match="allow_val_change"):
        wandb.config.lr = 0.5
    wandb.config.update({"lr": 0.5}, allow_val_change=True)
    with pytest.raises(AttributeError):
        _ = wandb.config.missing
    assert store.get_run(run.id).config == {"lr": 0.5, "layers": 2, "dropout": 0.2, "seed": 3,
                                            "opt": {"name": "adam", "betas": [0.9, 0.99]}}
    wandb.finish()


def test_init_maps_tags_project_group_and_notes(store):
    run = wandb.init(project="digits", name="tagged", tags=["a", "b"], group="sweep-1", job_type="train",
                     notes="wider layers should help")
    wandb.finish()
    got = store.get_run(run.id)
    assert got.tags == ("a", "b", "project:digits", "group:sweep-1", "job_type:train")
    assert (got.hypothesis, got.source, got.name, got.status) == ("wider layers should help", "wandb", "tagged",
                                                                  "finished")


def test_alert_is_a_note_and_exit_code_one_fails_the_run(store):
    run = wandb.init(name="alerting")
    wandb.log({"loss": 1.0})
    wandb.alert(title="diverged", text="loss is nan", level=wandb.AlertLevel.ERROR)
    run.alert("plain", "info by default")
    with pytest.raises(BadInput, match="INFO, WARN or ERROR"):
        wandb.alert("x", "y", level="LOUD")
    wandb.finish(exit_code=1)
    got = store.get_run(run.id)
    assert got.status == "failed" and "exit code 1" in got.reason
    assert [c.text for c in store.comments([run.id])] == ["[ERROR] diverged: loss is nan",
                                                          "[INFO] plain: info by default"]


def test_a_crash_in_a_with_block_fails_the_run_with_its_points(store):
    with pytest.raises(ZeroDivisionError):
        with wandb.init(name="crash") as run:
            wandb.log({"loss": 1.0})
            wandb.log({"loss": 0.5}, commit=False)  # pending when the crash comes: kept
            1 / 0
    got = store.get_run(run.id)
    assert got.status == "failed" and got.reason.startswith("ZeroDivisionError")
    assert points(store, run.id, "loss") == [(0, 1.0), (1, 0.5)]
    assert wandb.run is None


def test_a_second_init_finishes_the_first(store):
    first = wandb.init(name="one")
    wandb.log({"x": 1})
    second = wandb.init(name="two")
    assert store.get_run(first.id).status == "finished" and wandb.run is second
    with pytest.raises(BadInput, match="has finished"):
        first.log({"x": 2})


@pytest.mark.parametrize("call, what", [
    (lambda: wandb.Image([[0]]), "wandb.Image"),
    (lambda: wandb.Table(columns=["a"]), "wandb.Table"),
    (lambda: wandb.save("model.pt"), "wandb.save"),
    (lambda: wandb.sweep({}), "wandb.sweep"),
    (lambda: wandb.init(name="r", resume="allow"), "wandb.init(resume=...)"),
    (lambda: wandb.init(name="d", mode="disabled"), "mode='disabled'"),
    (lambda: wandb.log({"points": [1, 2, 3]}), "logging a list"),
    (lambda: wandb.run.log_artifact("x"), "run.log_artifact"),
    (lambda: wandb.watch(object(), log_graph=True), "log_graph"),
    (lambda: wandb.define_metric("loss", summary="min"), "summary"),
])
def test_what_is_not_supported_raises_one_line(call, what):
    wandb.init(name="unsupported")
    with pytest.raises(wandb.Unsupported) as caught:
        call()
    message = str(caught.value)
    assert message.startswith("recipe_core.compat.wandb does not support") and what in message
    assert "\n" not in message and isinstance(caught.value, RecipeError)


def test_non_numbers_are_refused_and_dunders_stay_attribute_errors():
    wandb.init(name="numbers")
    with pytest.raises(BadInput, match="'note' is a str; recipe_core.compat.wandb logs numbers only"):
        wandb.log({"note": "hello"})
    with pytest.raises(BadInput, match="dict of numbers"):
        wandb.log([1, 2])
    assert not hasattr(wandb, "__wrapped__")  # inspection, mocks and doctest look these up
    with pytest.raises(wandb.Unsupported, match="wandb.Image"):
        from recipe_core.compat.wandb import Image  # noqa: F401


def test_calls_before_init_are_one_line():
    assert wandb.run is None
    for call in (lambda: wandb.log({"a": 1}), lambda: wandb.config, lambda: wandb.summary,
                 lambda: wandb.define_metric("a"), lambda: wandb.alert("t", "x"), lambda: wandb.watch(None)):
        with pytest.raises(BadInput, match=r"before wandb.init\(\)"):
            call()
    wandb.finish()  # nothing to finish is no error, as in W&B


def run_example(settings, *args):
    env = {**os.environ, "RECIPE_HOME": str(settings.home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "examples" / "wandb_style.py"), *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def test_the_example_script_logs_into_the_store(settings, store):
    proc = run_example(settings, "--epochs", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = store.get_run(proc.stdout.split()[-1])
    assert (got.status, got.source, got.name) == ("finished", "wandb", "mlp-digits")
    assert got.tags == ("example", "project:digits", "group:mlp") and "MLP" in got.hypothesis
    assert got.config["epochs"] == 4 and got.config["optimizer"] == "sgd"
    assert got.metrics["best_accuracy"] > 0.8 and got.metrics["best_accuracy"] >= got.metrics["val/accuracy"]
    val = store.histories([got.id], "val/accuracy")[got.id]
    assert list(val.epoch) == [0, 1, 2, 3]
    assert len(store.histories([got.id], "train/loss")[got.id].step) == 4 * 22
    watch = store.get_json(got.id, "watch")
    assert {"gradients/0.weight", "parameters/2.bias"} <= set(watch["series"]) and watch["every"] == 10
    assert any(c.text.startswith("[INFO] done: best validation accuracy") for c in store.comments([got.id]))


def test_the_example_script_crashing_leaves_its_run_failed(settings, store):
    proc = run_example(settings, "--epochs", "3", "--fail")
    assert proc.returncode != 0 and "deliberate crash" in proc.stderr
    (got,) = store.list_runs()
    assert got.status == "failed" and "deliberate crash" in got.reason
    assert len(store.histories([got.id], "train/loss")[got.id].step) == 2 * 22
