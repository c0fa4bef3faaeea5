"""RecipeCallback: a Lightning fit as a Recipe run, with the recipe's checks on the LightningModule at the start of
fit; its metrics match what Lightning's own CSVLogger writes (and today's CSV import reads back)."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import own_models
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from recipe_core.compat.lightning import RecipeCallback
from recipe_core.tracking.importers import import_path
from recipe_core.training.model_checks import Budget

pytestmark = [pytest.mark.usefixtures("settings"),
              pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]
FAST = Budget(overfit_steps=200, twin_steps=100, lr_steps=40)


class Classifier(pl.LightningModule):
    def __init__(self, broken: bool = False, crash_at_epoch: int | None = None, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.net = own_models.BatchMeanMLP(6, 3) if broken else own_models.make_mlp(6, 3)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        if self.hparams.crash_at_epoch == self.current_epoch:
            raise RuntimeError("deliberate crash")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _index):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders():
    x, y = own_models.blobs(n=200)
    data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    return DataLoader(data, batch_size=20, shuffle=True), DataLoader(data, batch_size=100)


def fit(module, callback, logger=False, epochs=2):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                         log_every_n_steps=1)
    train, val = loaders()
    trainer.fit(module, train, val)
    return trainer


def test_a_fit_is_a_run_with_checks_and_its_metrics(store, tmp_path):
    torch.manual_seed(5)
    callback = RecipeCallback(name="clf", budget=FAST, watch=5)
    trainer = fit(Classifier(), callback, logger=CSVLogger(tmp_path, name="csv"))
    got = store.get_run(callback.run.run_id)
    assert (got.status, got.source, got.name, got.model) == ("finished", "lightning", "clf", "Classifier")
    assert got.config["lr"] == 0.05 and got.config["max_epochs"] == 2
    assert callback.report.ok, str(callback.report)
    assert {"loss_at_init", "gradients", "batch_independence", "overfit_one_batch"} <= set(got.checks)
    assert all(got.checks[name]["ok"] is not False for name in got.checks)
    train = store.histories([got.id], "train_loss")[got.id]
    assert list(train.step) == list(range(20)) and list(train.epoch[:10]) == [0] * 10  # Lightning's logger step
    val = store.histories([got.id], "val_loss")[got.id]
    assert list(val.step) == [9, 19] and list(val.epoch) == [0, 1], "no sanity-check point; one per epoch"
    assert got.metrics["val_acc"] == pytest.approx(float(trainer.callback_metrics["val_acc"]))
    assert "gradients/net.0.weight" in store.get_json(got.id, "watch")["series"]

    # Lightning's own CSVLogger wrote the same run; today's CSV import reads it back with the same points
    (imported,) = import_path(store, tmp_path / "csv")
    assert imported["source"] == "lightning"
    csv_id = imported["run_id"]
    for key in ("train_loss", "val_loss", "val_acc"):
        ours, theirs = store.histories([got.id], key)[got.id], store.histories([csv_id], key)[csv_id]
        assert list(ours.step) == list(theirs.step) and np.allclose(ours.value, theirs.value), key


def test_the_checks_leave_the_training_as_it_would_have_been(store):
    torch.manual_seed(5)
    fit(Classifier(), RecipeCallback(name="checked", budget=FAST))
    torch.manual_seed(5)
    fit(Classifier(), RecipeCallback(name="unchecked", checks=False))
    checked, unchecked = sorted(store.list_runs(), key=lambda r: r.name)
    a = store.histories([checked.id], "train_loss")[checked.id].value
    b = store.histories([unchecked.id], "train_loss")[unchecked.id].value
    assert np.array_equal(a, b), "the checks moved the random state or the weights"
    assert unchecked.checks == {}


def test_a_broken_module_gets_a_red_check_and_still_trains(store):
    callback = RecipeCallback(name="broken", budget=FAST)
    fit(Classifier(broken=True), callback)
    got = store.get_run(callback.run.run_id)
    assert got.status == "finished" and got.checks["batch_independence"]["ok"] is False
    assert "batch_independence" in callback.report.red
    assert len(store.histories([got.id], "train_loss")[got.id].step) == 20


def test_an_exception_ends_the_run_failed_with_its_points(store):
    callback = RecipeCallback(name="crash", checks=False)
    with pytest.raises(RuntimeError, match="deliberate crash"):
        fit(Classifier(crash_at_epoch=1), callback)
    got = store.get_run(callback.run.run_id)
    assert got.status == "failed" and "deliberate crash" in got.reason
    assert len(store.histories([got.id], "train_loss")[got.id].step) == 10


def test_batches_the_checks_cannot_use_are_a_note_not_a_crash(store):
    class DictBatches(Classifier):
        def training_step(self, batch, index):
            return super().training_step((batch["a"], batch["b"]), index)

    x, y = own_models.blobs(n=40)
    rows = [{"a": torch.tensor(x[i], dtype=torch.float32), "b": torch.tensor(y[i])} for i in range(40)]
    callback = RecipeCallback(name="dicts", budget=FAST)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(DictBatches(), DataLoader(rows, batch_size=10))
    got = store.get_run(callback.run.run_id)
    assert got.status == "finished" and got.checks == {}
    note = [c.text for c in store.comments([got.id])]
    assert note == ["the recipe's checks could not run: the checks need (x, y) batches; the first batch is a dict "
                    "of a, b"]
    assert any("checks could not run" in str(w.message) for w in caught)


def test_the_lightning_example_script_runs_and_logs_its_checks(settings, store):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RECIPE_HOME": str(settings.home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "examples" / "lightning_style.py"), "--epochs", "1"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = store.get_run(proc.stdout.split()[0])
    assert (got.status, got.source, got.tags) == ("finished", "lightning", ("example",))
    assert got.checks["batch_independence"]["ok"] is True and "PASS overfit_one_batch" in proc.stdout
    assert got.metrics["val_acc"] > 0.5 and store.get_json(got.id, "watch")["every"] == 10
