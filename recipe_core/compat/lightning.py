"""A Lightning Trainer's fit as a Recipe run, with the recipe's checks on the LightningModule first:

    from recipe_core.compat.lightning import RecipeCallback
    trainer = lightning.pytorch.Trainer(max_epochs=10, callbacks=[RecipeCallback(name="cnn", loss="cross_entropy")])
    trainer.fit(module, train_loader, val_loader)

At the start of training (on_train_start: after the sanity check, when the train dataloader exists) the run starts
(source "lightning") and the checks run on the module with the first training batch; their twins are copies of the
module at that moment (the init state), without its Trainer. Then the metrics the module logs (self.log) are
logged as Lightning hands them to its loggers: the step's at each train batch end, the epoch's at each train epoch
end and each validation end (what validation_step and on_validation_epoch_end logged), at the step Lightning's
loggers get (its CSVLogger's: 0 for the first batch, global_step - 1 without gradient accumulation) and epoch =
current_epoch, so the same fit imported from its metrics.csv lines up point for point. The run finishes at fit
end; an exception ends it failed (cancelled on Ctrl-C).

The Lightning CSVLogger import (tracking.importers.lightning) stays for runs logged without this callback.
"""
from __future__ import annotations

import warnings

import lightning.pytorch as pl

from recipe_core.errors import RecipeError
from recipe_core.jsonsafe import plain
from recipe_core.tracking import api
from recipe_core.training.script_run import ScriptRun, first_batch


class RecipeCallback(pl.Callback):
    """name: the run's name (default: the module's class); loss: one of the checks' losses (default: inferred from
    y); checks: run the recipe's checks at the start of fit; watch: histograms every N steps (None: off), of
    watch_log; causal: the module is a sequence model ([N, T] in, [N, T, ...] out); tags, hypothesis, parent,
    config: as rc.start_run's (config is added to the module's hparams); budget: the checks' model_checks.Budget."""

    def __init__(self, name: str | None = None, loss: str | None = None, checks: bool = True, watch: int | None = None,
                 watch_log: str = "gradients,parameters", causal: bool = False, tags=(), hypothesis: str | None = None,
                 parent: str | None = None, config: dict | None = None, store_url: str | None = None, budget=None):
        super().__init__()
        self.name, self.loss, self.checks, self.watch_every, self.watch_log = name, loss, checks, watch, watch_log
        self.causal, self.tags, self.hypothesis, self.parent = causal, tuple(tags), hypothesis, parent
        self.config, self.store_url, self.budget = dict(config or {}), store_url, budget
        self.run: ScriptRun | None = None
        self.report = None  # the CheckReport, once the checks ran

    # -- Lightning's hooks ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return  # several processes (DDP): one run, from the first; the others log nothing (as Lightning's loggers)
        if self.run is not None and not self.run.ended:
            return  # fit resumed on the same callback: one run
        config = {**_hparams(pl_module), **self.config, "max_epochs": trainer.max_epochs,
                  "max_steps": trainer.max_steps}
        self.run = api.start_run(name=self.name or type(pl_module).__name__, config=config, tags=self.tags,
                                 hypothesis=self.hypothesis, parent=self.parent, model=type(pl_module).__name__,
                                 source="lightning", store_url=self.store_url, run_class=ScriptRun)
        if self.checks:
            self._check(trainer, pl_module)
        if self.watch_every:
            self.run.watch(pl_module, every=int(self.watch_every), log=self.watch_log)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._log(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer)  # what was logged with on_epoch=True in training_step

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._log(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.run is not None:
            self.run.finish()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.run is None:
            return
        if isinstance(exception, KeyboardInterrupt):
            self.run.finish("cancelled", "interrupted (Ctrl-C)")
        else:
            self.run.finish("failed", f"{type(exception).__name__}: {str(exception)[:1000]}")

    # -- inside ---------------------------------------------------------------------------------------------------
    def _check(self, trainer, pl_module) -> None:
        """The checks on the first training batch; checks that cannot run say why in a note and a warning, and the
        training goes on (it is the user's fit, not ours)."""
        try:
            batch = first_batch(trainer.train_dataloader)
            x, y = _pair(batch)
            self.report = self.run.check(pl_module, batch=(x, y), loss=self.loss, causal=self.causal,
                                         budget=self.budget, leave_out=(trainer,))
        except RecipeError as e:
            self.run.note(f"the recipe's checks could not run: {e}")
            warnings.warn(f"recipe: the checks could not run: {e}", stacklevel=2)

    def _log(self, trainer) -> None:
        if self.run is None or self.run.ended:
            return
        values = {}
        for key, value in fresh_metrics(trainer).items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError, RuntimeError):
                continue  # Lightning itself only takes scalars in self.log
        if values:
            epochs = dict.fromkeys(values, float(trainer.current_epoch))
            self.run.log_values(logger_step(trainer), values, epochs)


def logger_step(trainer) -> int:
    """The step Lightning gives its loggers (the batches that stepped the optimizer before this one: 0 for the first
    batch), so this run and the same fit's CSVLogger metrics.csv, imported, have the same steps. global_step (the
    optimizer steps done, one more) if Lightning's loop ever stops holding it."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    return int(step) if isinstance(step, int) else int(trainer.global_step)


def fresh_metrics(trainer) -> dict:
    """What the module logged since the last time Lightning handed metrics to its loggers: the logger connector's
    "log" metrics (the same dict a Logger gets). trainer.callback_metrics keeps every key's last value, so it would
    repeat a validation loss at every later step; it is the fallback if the connector is not there."""
    connector = getattr(trainer, "_logger_connector", None)
    try:
        return dict(connector.metrics["log"]) if connector is not None else dict(trainer.callback_metrics)
    except (AttributeError, KeyError, AssertionError):
        return dict(trainer.callback_metrics)


def _pair(batch):
    """(x, y) of a training batch: a pair (or the first two of a longer tuple/list), or a dict with x/y,
    input(s)/target(s) or features/labels."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        for xk, yk in (("x", "y"), ("input", "target"), ("inputs", "targets"), ("features", "labels")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        keys = ", ".join(map(str, list(batch)[:8]))
        raise RecipeError(f"the checks need (x, y) batches; the first batch is a dict of {keys}")
    raise RecipeError(f"the checks need (x, y) batches; the first batch is a {type(batch).__name__}")


def _hparams(pl_module) -> dict:
    try:
        return plain(dict(pl_module.hparams))
    except Exception:  # noqa: BLE001 - hparams holding something plain() cannot take: the run's config goes without
        return {}
