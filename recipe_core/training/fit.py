"""Fitting the configured model on a run's data: scikit-learn's (boosting grown in chunks) and the MLP, with its
curves, progress and cancel going through a Recorder (buffered writes to the store) or a NullRecorder (none).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from recipe_core.config import TrainConfig
from recipe_core.errors import CANCELLED, Cancelled
from recipe_core.tracking.store import Store
from recipe_core.training import evaluation, models
from recipe_core.training.dataset import Data
from recipe_core.training.loop import EarlyStopping, grow_boosting, mean_loss, predict, target_tensor, train_mlp
from recipe_core.units import ceil_div

DYNAMICS_SNAPSHOTS = 50
LOG_POINTS = 1000  # about this many train-loss points per run, whatever its length
EVAL_POINTS = 200  # at most this many full validation passes per run (tiny datasets train for many epochs)
FLUSH_SECONDS = 1.0
REPORT_PERCENT = 5  # a tuning trial reports its validation loss 20 times, at 5%, 10%, ... of its training
TRAIN_LOSS_ROWS = 20_000  # training loss for curves and checks is measured on at most this many rows
GBM_CHUNK = 10  # trees per chunk: one curve point, one progress update, one chance to cancel

Report = Callable[[int, float], None]  # a tuning trial's pruner: (percent of training done, validation loss)


# -- logging: buffered points, progress, cancel --------------------------------------------------------
class Recorder:
    """Buffers metric points and writes them at most once per FLUSH_SECONDS; each write also reports progress
    and reads the cancel flag, so a cancel lands within about a second."""

    def __init__(self, store: Store, run_id: str, should_stop: Callable[[], bool] | None = None, prefix: str = "",
                 report: Report | None = None):
        self.store, self.run_id, self.prefix = store, run_id, prefix
        self.report = report
        self.points: list[tuple] = []
        self.progress = 0.0
        self.last_flush = time.monotonic()
        self.should_stop = should_stop

    def log(self, step: int, epoch: float | None = None, **values: float) -> None:
        now = time.time()
        self.points += [(self.prefix + key, step, value, epoch, now) for key, value in values.items()]
        self.tick()

    def tick(self) -> None:
        """Write if a second has passed: call it often (it is cheap) so a cancel is seen soon."""
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        cancel = self.store.log_metrics(self.run_id, self.points, progress=round(self.progress, 4))
        self.points = []
        self.last_flush = time.monotonic()
        if cancel or (self.should_stop and self.should_stop()):
            raise Cancelled(CANCELLED)

    def twin(self) -> "Recorder":
        """A recorder for the zero-input twin: its curves are kept too, as twin_train_loss and twin_val_loss."""
        return Recorder(self.store, self.run_id, self.should_stop, prefix="twin_")


class NullRecorder:
    """A Recorder that keeps nothing, for a fit outside a run (tests, benchmarks): no store, no pruner, no cancel."""

    report: Report | None = None

    def __init__(self):
        self.progress = 0.0

    def log(self, step: int, epoch: float | None = None, **values: float) -> None:
        pass

    def tick(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def twin(self) -> "NullRecorder":
        return NullRecorder()


class LossLogger:
    """The MLP loop's on_step hook: the mean batch loss every few steps (about LOG_POINTS points a run), and a
    cheap tick in between so a cancel lands within a second. Kept lean: it runs on every optimizer step."""

    def __init__(self, rec: Recorder | NullRecorder, total_steps: int):
        self.rec = rec
        self.every = max(1, total_steps // LOG_POINTS)
        self.total, self.count = 0.0, 0

    def __call__(self, info) -> None:
        self.total += info.loss.item()  # no device sync on CPU
        self.count += 1
        if info.step % self.every == 0:
            self.rec.log(info.step, info.epoch + 1, train_loss=self.total / self.count)
            self.total, self.count = 0.0, 0
        elif info.step % 64 == 0:
            self.rec.tick()


# -- fitting each kind of model -------------------------------------------------------------------------
@dataclass
class Fitted:
    predict: Callable[[np.ndarray], np.ndarray]  # matrix -> probabilities or values
    n_parameters: int
    model: object
    dynamics: list  # [(epoch or trees, predictions on the fixed validation batch)]
    loss_at_init: float | None = None  # measured, for the MLP
    stopped: dict = field(default_factory=dict)  # early stopping: best_epoch, stopped_epoch, max_epochs


def fit(config: TrainConfig, data: Data, rec: Recorder | NullRecorder | None = None, zero_inputs: bool = False,
        span: tuple[float, float] = (0.0, 1.0)) -> Fitted:
    """Fit the configured model on the training split (on all-zero inputs for the input-independent twin); span is
    the part of the run's progress bar this fit fills."""
    X, X_val = data.X_train, data.X_val
    if zero_inputs:
        X, X_val = np.zeros_like(X), np.zeros_like(X_val)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    fitter = fit_mlp if config.model == "mlp" else fit_sklearn
    return fitter(config, data, X, X_val, rec or NullRecorder(), span)


def loss_of(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    """The mean loss of predictions (cross-entropy or squared error), as the models are trained on."""
    return float(evaluation.per_example_loss(task, y, pred).mean())


def fit_sklearn(config: TrainConfig, data: Data, X: np.ndarray, X_val: np.ndarray, rec: Recorder | NullRecorder,
                span: tuple[float, float]) -> Fitted:
    est = models.estimator(config, data.task)
    y = data.y_train if data.task == "regression" else data.y_train.astype(int)
    fixed = X_val[data.fixed_val]
    dynamics = []

    def predict_all(M: np.ndarray) -> np.ndarray:
        return models.predict(est, M, data.task, data.n_classes)

    def log_losses(step: int) -> float:
        val_loss = loss_of(data.task, data.y_val, predict_all(X_val))
        rec.log(step, None, train_loss=loss_of(data.task, y[:TRAIN_LOSS_ROWS], predict_all(X[:TRAIN_LOSS_ROWS])),
                val_loss=val_loss)
        return val_loss

    if config.model == "gbm":
        def on_chunk(n_trees: int) -> None:
            rec.progress = span[0] + (span[1] - span[0]) * n_trees / config.gbm_iterations
            val_loss = log_losses(n_trees)
            dynamics.append([n_trees, predict_all(fixed)])
            if rec.report is not None:  # a tuning trial: one report per chunk of trees, as percent of all trees
                rec.report(round(100 * n_trees / config.gbm_iterations), val_loss)

        grow_boosting(est, X, y, GBM_CHUNK, on_chunk)
    else:
        est.fit(X, y)
        log_losses(1)
        dynamics.append([1, predict_all(fixed)])
    return Fitted(predict_all, models.n_parameters(est), est, dynamics)


def fit_mlp(config: TrainConfig, data: Data, X: np.ndarray, X_val: np.ndarray, rec: Recorder | NullRecorder,
            span: tuple[float, float]) -> Fitted:
    # -- setup: tensors, the net, which epochs are measured
    Xt, yt = torch.from_numpy(X), target_tensor(data.y_train, data.task)
    Xv, yv = torch.from_numpy(X_val), target_tensor(data.y_val, data.task)
    model = models.make_mlp(config, X.shape[1], data.task, data.y_train, data.n_classes)
    epochs = config.epochs_for(len(X))
    on_step = LossLogger(rec, epochs * max(1, ceil_div(len(X), config.batch_size)))
    eval_epochs = set(np.linspace(0, epochs - 1, min(epochs, EVAL_POINTS)).round().astype(int).tolist())
    snapshot_epochs = set(np.linspace(0, epochs - 1, min(epochs, DYNAMICS_SNAPSHOTS)).round().astype(int).tolist())
    fixed = Xv[data.fixed_val]
    # Early stopping judges every epoch; a tuning trial's pruner every REPORT_PERCENT of the training (each report
    # is a round trip to the study, and percents line up trials of different lengths); the curves EVAL_POINTS epochs.
    stopper = EarlyStopping(config.patience) if config.patience else None

    # -- step 0: the loss at init, the first snapshot
    init_loss = mean_loss(model, Xt, yt, data.task)
    dynamics = [[0, predict(model, fixed, data.task)]]
    rec.log(0, 0.0, train_loss=init_loss, val_loss=mean_loss(model, Xv, yv, data.task))

    def percent_reached(epoch: int) -> int | None:
        """The percent of training done after this 0-based epoch, when it crosses a multiple of REPORT_PERCENT."""
        done, before = 100 * (epoch + 1) // epochs, 100 * epoch // epochs
        return done // REPORT_PERCENT * REPORT_PERCENT if done // REPORT_PERCENT > before // REPORT_PERCENT else None

    def validate(epoch: int, step: int) -> float:
        """The validation loss after this epoch, logged with the accuracy (or MAE) and the progress."""
        pred = predict(model, Xv, data.task)
        values = {"val_loss": loss_of(data.task, data.y_val, pred)}
        if data.task == "classification":
            values["val_accuracy"] = float((pred.argmax(axis=1) == data.y_val).mean())
        else:
            values["val_mae"] = float(np.abs(pred - data.y_val).mean())
        rec.progress = span[0] + (span[1] - span[0]) * (epoch + 1) / epochs
        rec.log(step, epoch + 1, **values)
        return values["val_loss"]

    def on_epoch(epoch: int, step: int) -> bool:
        """After each epoch: keep a snapshot, measure the validation loss when someone needs it; True stops."""
        if epoch in snapshot_epochs:
            dynamics.append([epoch + 1, predict(model, fixed, data.task)])
        percent = percent_reached(epoch) if rec.report is not None else None
        if stopper is None and percent is None and epoch not in eval_epochs:
            return False  # no curve point, no report, no patience: skip the validation pass
        val_loss = validate(epoch, step)
        if percent is not None:
            rec.report(percent, val_loss)  # raises Pruned when the trial should stop
        return stopper is not None and stopper.update(epoch + 1, val_loss, model)

    # -- train
    train_mlp(model, Xt, yt, data.task, epochs=epochs, batch_size=config.batch_size, lr=config.lr,
              weight_decay=config.weight_decay, seed=config.seed, on_step=on_step, on_epoch=on_epoch)
    stopped = {}
    if stopper is not None:
        stopper.restore(model)  # the best epoch's weights: its metrics are the run's
        stopped = {"best_epoch": stopper.best_epoch, "stopped_epoch": stopper.last_epoch, "max_epochs": epochs}
    return Fitted(lambda M: predict(model, torch.from_numpy(M), data.task), models.n_parameters(model), model,
                  dynamics, loss_at_init=init_loss, stopped=stopped)
