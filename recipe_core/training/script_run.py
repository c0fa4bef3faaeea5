"""The run a user's own training script logs (rc.start_run), with the two things only a model can give:

    with rc.start_run(name="cnn") as run:
        report = run.check(model, batch=(x, y), loss="cross_entropy")  # before training: the init state
        run.watch(model, every=100)                                    # gradient/weight/activation histograms
        for step ...: run.log(step, train_loss=...)

torch is imported only inside watch and check, so `rc.start_run` in a script that never calls them (or a process
that only logs numbers) stays as cheap as the tracking API alone.
"""
from __future__ import annotations

import contextlib
import copy
import random
import time

import numpy as np

from recipe_core.errors import BadInput, RecipeError, first_line
from recipe_core.tracking import api
from recipe_core.tracking.records import check_key

WATCH_ARTIFACT = "watch"
WATCH_WRITE_SECONDS = 30.0  # a live run's histograms reach the page this late at most; written in full each time


class ScriptRun(api.Run):
    """api.Run, plus watch() and check(). Whatever is watched is written at flush (at most every
    WATCH_WRITE_SECONDS) and at finish, never on each step."""

    def __init__(self, store, record):
        super().__init__(store, record)
        self.watchers: list = []
        self.watch_written = 0.0  # monotonic time of the last write of the "watch" artifact
        self.before_finish: list = []  # callables run at the start of finish (the W&B shim commits its last row)
        self.final_metrics: dict[str, float] = {}  # set over the last value of each key at finish (W&B summary)
        self.finishing = False  # finish writes the histograms itself, once

    def log_values(self, step: int, values: dict, epochs: dict | None = None) -> None:
        """log() for any metric names, log()'s own ("step", "epoch") included: values {name: number} at step, each
        with its own epoch (x value) from epochs {name: number} when given. Checked as log() checks."""
        self.check_open()
        step = api.checked_step(step)
        at, epochs = time.time(), epochs or {}
        points = []
        for key, value in values.items():
            epoch = epochs.get(key)
            points.append((check_key(key), step, api._number(value, f"metric {key!r}"),
                           None if epoch is None else api._number(epoch, "epoch"), at))
        self.buffer(points)

    def watch(self, model, every: int = 100, log="all") -> None:
        """Histograms per layer of gradients, weights and activations (log: "all", "gradients", "parameters",
        "activations" or several, comma-separated) every `every` training steps of the model; see training.watch.
        Watching a model again replaces its hooks."""
        if self.ended:
            raise BadInput(f"run {self.run_id} has ended; watch a model on a run that is still logging")
        from recipe_core.training.watch import MAX_SERIES, Watcher  # torch, only now

        for old in [w for w in self.watchers if w.model is model]:
            old.remove()
            self.watchers.remove(old)
        watcher = Watcher(model, every=every, log=log)
        if sum(len(w.series) for w in self.watchers) + len(watcher.series) > MAX_SERIES:
            watcher.remove()
            raise BadInput(f"watching this model too would go over {MAX_SERIES} histogram series on one run; "
                           "watch fewer kinds (log='gradients') or one model")
        self.watchers.append(watcher)
        self.watch_written = time.monotonic()  # the first histograms reach the store a flush WATCH_WRITE_SECONDS on

    def watch_json(self) -> dict | None:
        """The "watch" artifact as it stands (several watched models: their series side by side)."""
        if not self.watchers:
            return None
        first = self.watchers[0].to_json()
        for other in self.watchers[1:]:
            more = other.to_json()
            first["series"].update(more["series"])
            first["nonfinite"].update(more["nonfinite"])
            first["skipped"] += more["skipped"]
        return first

    def write_watch(self) -> None:
        value = self.watch_json()
        if value is None:
            return
        try:
            self.store.put_json(self.run_id, WATCH_ARTIFACT, value)
        except Exception as e:  # noqa: BLE001 - the store's own errors; the histograms are kept for the next try
            for watcher in self.watchers:
                watcher.dirty = True
            raise RecipeError(f"could not write the watch histograms of run {self.run_id} to the store "
                              f"({type(e).__name__}: {first_line(e, 200)})") from None
        self.watch_written = time.monotonic()

    def flush(self) -> None:
        super().flush()
        due = time.monotonic() - self.watch_written >= WATCH_WRITE_SECONDS
        if due and not self.finishing and any(w.dirty for w in self.watchers):
            self.write_watch()

    def check(self, model, batch, loss: str | None = None, causal: bool = False, tolerance: float | None = None,
              budget=None, leave_out=()):
        """The recipe's checks (model_checks.run_all) on this model and batch, attached to this run; returns the
        CheckReport. The twins are copies of the model as passed: call it before training, on the init state.
        leave_out: objects the model refers to that the copies must not copy (they see None), e.g. the Trainer a
        LightningModule holds. budget: model_checks.Budget (default: its defaults). The random state of torch, numpy
        and random is as it was before the checks, so the training after them draws what it would have."""
        if self.ended:
            raise BadInput(f"run {self.run_id} has ended; check the model on a run that is still logging")
        try:
            x, y = batch
        except (TypeError, ValueError):
            raise BadInput("batch must be a pair (x, y) of arrays or tensors, examples first") from None
        from recipe_core.training import own_model  # torch, only now

        try:
            snapshot = copy.deepcopy(model, {id(o): None for o in leave_out})
        except Exception as e:  # noqa: BLE001 - a user's model that cannot be copied
            raise BadInput(f"the model cannot be copied for the checks' twins ({type(e).__name__}: "
                           f"{first_line(e, 200)})") from None
        with kept_random_state():
            found, artifacts = own_model.run_checks(lambda: copy.deepcopy(snapshot), x, y, loss=loss, causal=causal,
                                                    tolerance=tolerance, budget=budget)
        own_model.attach(self, found, artifacts)
        return own_model.CheckReport(self.run_id, found)

    def finish(self, status: str = "finished", reason: str = "") -> None:
        if self.ended:
            return
        problems, self.finishing = [], True
        for hook in list(self.before_finish):
            try:
                hook()
            except RecipeError as e:  # the run still ends: failed, saying why
                problems.append(str(e))
        for watcher in self.watchers:
            watcher.remove()  # the model trains on without our hooks
        try:
            self.write_watch()
        except RecipeError as e:
            problems.append(str(e))
        if problems and status == "finished":
            status, reason = "failed", "; ".join(problems)
        super().finish(status, reason)
        if self.final_metrics:
            metrics = {**(self.store.get_run(self.run_id).metrics or {}), **self.final_metrics}
            self.store.update_run(self.run_id, metrics=metrics)
        if problems:
            raise RecipeError(problems[0])


@contextlib.contextmanager
def kept_random_state():
    """The checks seed torch (and may draw from numpy and random): the user's training after them draws the same
    numbers as it would have without them."""
    import torch  # only here

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def first_batch(loader):
    """The first batch a data loader gives, without moving the random state its shuffling and the training draw."""
    with kept_random_state():
        try:
            return next(iter(loader))
        except StopIteration:
            raise BadInput("the training data loader gives no batch") from None
