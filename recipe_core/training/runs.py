"""A run end to end: snapshot -> split -> features -> model -> evaluation -> checks, each step recorded in the store.

execute() is what a training process runs (jobs.py starts it; the CLI runs it inline). Metrics are buffered and
written in batches; the cancel flag is read at each write.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from recipe_core.config import MODELS, TASKS, Settings, TrainConfig
from recipe_core.data import profiles, queries
from recipe_core.errors import CANCELLED, BadInput, Cancelled, Pruned, RecipeError
from recipe_core.tracking.store import DatasetRecord, RunRecord, Store, new_id, now_iso
from recipe_core.training import capacity, checks, evaluation, features, models, splits
from recipe_core.training.train import EarlyStopping, grow_boosting, mean_loss, predict, target_tensor, train_mlp

DYNAMICS_ROWS = 16  # the fixed validation batch whose predictions are kept over training (distinct inputs)
DYNAMICS_SNAPSHOTS = 50
TOP_LOSSES = 20
BATCH_VIEW_MAX_FEATURES = 512
LOG_POINTS = 1000  # about this many train-loss points per run, whatever its length
EVAL_POINTS = 200  # at most this many full validation passes per run (tiny datasets train for many epochs)
FLUSH_SECONDS = 1.0
REPORT_PERCENT = 5  # a tuning trial reports its validation loss 20 times, at 5%, 10%, ... of its training
TRAIN_LOSS_ROWS = 20_000  # training loss for curves and checks is measured on at most this many rows
GBM_CHUNK = 10  # trees per chunk: one curve point, one progress update, one chance to cancel


def code_version() -> str:
    """A hash of the core's source: two runs with the same one ran the same code."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def config_from(values: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in values.items() if k in known}
    if values.get("exclude") is not None:
        values["exclude"] = tuple(values["exclude"])
    return TrainConfig(**values)


def validate(config: TrainConfig) -> TrainConfig:
    """One line for every value a person could mistype."""
    if config.model not in MODELS:
        raise BadInput(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")
    if config.task is not None and config.task not in TASKS:
        raise BadInput(f"unknown task {config.task!r}; choose classification or regression")
    positive_ints = {"width": config.width, "depth": config.depth, "batch_size": config.batch_size,
                     "gbm_iterations": config.gbm_iterations, "gbm_max_leaf_nodes": config.gbm_max_leaf_nodes,
                     "top_k": config.top_k, "text_features": config.text_features}
    for name, value in positive_ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 100_000:
            raise BadInput(f"{name} must be a whole number from 1 to 100,000, not {value!r}")
    if config.depth > 50 or config.gbm_max_leaf_nodes < 2:
        raise BadInput("depth must be at most 50 and gbm_max_leaf_nodes at least 2")
    if config.epochs is not None and not (isinstance(config.epochs, int) and 1 <= config.epochs <= 100_000):
        raise BadInput(f"epochs must be a whole number from 1 to 100,000, not {config.epochs!r}")
    if not (isinstance(config.seed, int) and 0 <= config.seed < 2**32):
        raise BadInput(f"seed must be a whole number from 0 to {2**32 - 1}, not {config.seed!r}")
    for name, lo, hi in (("dropout", 0.0, 0.99), ("weight_decay", 0.0, 10.0), ("lr", 0.0, 10.0),
                         ("l2", 1e-9, 1e9), ("gbm_learning_rate", 1e-6, 10.0)):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
            raise BadInput(f"{name} must be a number from {lo:g} to {hi:g}, not {value!r}")
    if config.patience is not None and not (isinstance(config.patience, int) and 1 <= config.patience <= 10_000):
        raise BadInput(f"patience must be a whole number of epochs from 1 to 10,000, not {config.patience!r}")
    if config.patience is not None and config.model != "mlp":
        raise BadInput(f"early stopping (patience) applies to the MLP; {config.model} trains in one go")
    if not (isinstance(config.train_fraction, (int, float)) and 0 < config.train_fraction <= 1):
        raise BadInput(f"train_fraction must be above 0 and at most 1, not {config.train_fraction!r}")
    return config


# -- the data a run trains on ----------------------------------------------------------------------
@dataclass
class Data:
    task: str
    classes: list[str]  # classification: the label of each class index
    split: splits.Split
    encoder: features.FeatureEncoder
    columns: list[str]  # the feature columns used
    excluded: list[str]  # columns left out (by default the ID-like ones)
    id_like: list[str]
    rows_train: np.ndarray
    rows_val: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    val_groups: np.ndarray  # a group id per validation row: identical inputs share one (features.input_groups)
    fixed_val: np.ndarray  # positions in the validation split of the batch whose predictions are kept over training

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def id_like_columns(db: queries.DatasetDB) -> list[str]:
    return [w.column for w in profiles.profile(db).warnings if w.kind == "id_like"]


def encode_target(y: pd.Series, task: str) -> tuple[list[str], np.ndarray]:
    """(class names, each row's class index) for classification; ([], float values, NaN where missing) else."""
    if task == "classification":
        return class_labels(y)
    return [], pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)


def class_labels(y: pd.Series) -> tuple[list[str], np.ndarray]:
    """Sorted classes (numbers in numeric order) as text, and each row's class index (-1 where missing)."""
    present = y.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        values = sorted(present.unique())
        names = [str(int(v)) if float(v).is_integer() else str(v) for v in values]
        lookup = dict(zip(values, range(len(values))))
        codes = y.map(lookup)
    else:
        names = sorted(present.astype(str).unique())
        codes = y.astype(str).where(y.notna()).map(dict(zip(names, range(len(names)))))
    return names, codes.fillna(-1).astype(int).to_numpy()


def prepare(settings: Settings, store: Store, record: DatasetRecord, target: str, config: TrainConfig) -> Data:
    """Read the target and feature columns, get the persisted split, fit the features on the training rows."""
    record.column(target)  # NotFound for a column that does not exist
    db = queries.DatasetDB(settings, record, isolated=False)  # a job's own bounded process: no worker needed
    try:
        task = config.task or profiles.task_of(db, target)
        treat = profiles.treatments(db)
        id_like = [c for c in id_like_columns(db) if c != target]
        excluded = list(id_like if config.exclude is None else config.exclude)
        unknown = [c for c in excluded if c not in treat]
        if unknown:
            raise BadInput(f"cannot exclude {unknown[0]!r}: dataset {record.name!r} has no such column")
        columns = [c for c in record.column_names if c != target and c not in excluded]
        if not columns:
            raise BadInput("no feature columns are left: put back at least one column")
        frame = queries.columns_frame(db, columns + [target])
    finally:
        db.close()
    y_raw = frame[target]
    if task == "regression" and not pd.api.types.is_numeric_dtype(y_raw):
        raise BadInput(f"target {target!r} is not numeric, so it cannot be a regression target")
    splits.check_target(y_raw, task, target)
    split = splits.get_or_create(store, record.id, target, y_raw, task)
    if len(split.codes) != len(frame):
        raise RecipeError(f"the stored split of {target!r} does not match the dataset's {len(frame):,} rows")
    classes, y_all = encode_target(y_raw, task)
    if task == "classification" and len(classes) < 2:
        raise BadInput(f"target {target!r} has only one class: there is nothing to learn")
    rows_train, rows_val = training_rows(split.rows("train"), config.train_fraction, config.seed), split.rows("val")
    encoder = features.FeatureEncoder({c: treat[c] for c in columns}, config.top_k, config.text_features)
    encoder.fit(frame.iloc[rows_train])
    X_val, y_val = encoder.transform(frame.iloc[rows_val]), y_all[rows_val]
    val_groups = features.input_groups(X_val)
    return Data(task=task, classes=classes, split=split, encoder=encoder, columns=columns, excluded=excluded,
                id_like=id_like, rows_train=rows_train, rows_val=rows_val,
                X_train=encoder.transform(frame.iloc[rows_train]), y_train=y_all[rows_train],
                X_val=X_val, y_val=y_val, val_groups=val_groups,
                fixed_val=dynamics_batch(val_groups, y_val, task, config.seed))


def dynamics_batch(val_groups: np.ndarray, y_val: np.ndarray, task: str, seed: int) -> np.ndarray:
    """Positions in the validation split of the fixed batch watched over training: up to DYNAMICS_ROWS distinct
    inputs drawn with the seed, for classification every class in turn in proportion to its count, ordered by
    label so the figure reads class by class. The first rows by id were often one class, or one row repeated on a
    table of duplicates, and a repeated input only repeats its prediction."""
    n_distinct = int(val_groups.max()) + 1 if len(val_groups) else 0
    chosen = features.distinct_inputs_first(val_groups, np.random.default_rng(seed))[:n_distinct]
    if task == "classification":
        chosen = chosen[splits.stratified_order(y_val[chosen])]
    chosen = chosen[:DYNAMICS_ROWS]
    return chosen[np.lexsort((chosen, y_val[chosen]))]


def training_rows(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded subset of the training rows (all of them at 1.0), in their original order; at least 2 rows.
    The subsets of one seed are nested (10% inside 25% inside 50%), so a learning curve adds data, never swaps it."""
    if fraction >= 1:
        return rows
    order = np.random.default_rng(seed).permutation(len(rows))
    keep = max(2, math.ceil(fraction * len(rows)))
    return rows[np.sort(order[:keep])]


# -- logging: buffered points, progress, cancel --------------------------------------------------------
class Recorder:
    """Buffers metric points and writes them at most once per FLUSH_SECONDS; each write also reports progress
    and reads the cancel flag, so a cancel lands within about a second."""

    def __init__(self, store: Store, run_id: str, should_stop: Callable[[], bool] | None = None, prefix: str = ""):
        self.store, self.run_id, self.prefix = store, run_id, prefix
        self.report: Callable[[int, float], None] | None = None  # a tuning trial's pruner: (percent, val_loss)
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


class LossLogger:
    """The MLP loop's on_step hook: the mean batch loss every few steps (about LOG_POINTS points a run), and a
    cheap tick in between so a cancel lands within a second. Kept lean: it runs on every optimizer step."""

    def __init__(self, rec: Recorder, total_steps: int):
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


def _fit_sklearn(config: TrainConfig, data: Data, X: np.ndarray, X_val: np.ndarray, rec: Recorder | None,
                 span: tuple[float, float]) -> Fitted:
    est = models.estimator(config, data.task)
    y = data.y_train if data.task == "regression" else data.y_train.astype(int)
    fixed = X_val[data.fixed_val]
    dynamics = []

    def full(est_, M):
        p = models.predict(est_, M, data.task)
        if data.task == "classification" and p.shape[1] != data.n_classes:  # a class absent from training
            out = np.zeros((len(M), data.n_classes))
            out[:, est_.classes_] = p
            return out
        return p

    if config.model == "gbm":
        def on_chunk(n_trees: int) -> None:
            if rec is None:
                return
            rec.progress = span[0] + (span[1] - span[0]) * n_trees / config.gbm_iterations
            val_loss = _loss(data.task, data.y_val, full(est, X_val))
            rec.log(n_trees, None, train_loss=_loss(data.task, y[:TRAIN_LOSS_ROWS], full(est, X[:TRAIN_LOSS_ROWS])),
                    val_loss=val_loss)
            dynamics.append([n_trees, full(est, fixed)])
            if rec.report is not None:  # a tuning trial: one report per chunk of trees, as percent of all trees
                rec.report(round(100 * n_trees / config.gbm_iterations), val_loss)

        grow_boosting(est, X, y, GBM_CHUNK, on_chunk)
    else:
        est.fit(X, y)
        if rec is not None:
            rec.log(1, None, train_loss=_loss(data.task, y[:TRAIN_LOSS_ROWS], full(est, X[:TRAIN_LOSS_ROWS])),
                    val_loss=_loss(data.task, data.y_val, full(est, X_val)))
        dynamics.append([1, full(est, fixed)])
    return Fitted(lambda M: full(est, M), models.n_parameters(est), est, dynamics)


def _fit_mlp(config: TrainConfig, data: Data, X: np.ndarray, X_val: np.ndarray, rec: Recorder | None,
             span: tuple[float, float]) -> Fitted:
    Xt, yt = torch.from_numpy(X), target_tensor(data.y_train, data.task)
    Xv, yv = torch.from_numpy(X_val), target_tensor(data.y_val, data.task)
    model = models.make_mlp(config, X.shape[1], data.task, data.y_train, data.n_classes)
    init_loss = mean_loss(model, Xt, yt, data.task)
    epochs = config.epochs_for(len(X))
    total_steps = epochs * max(1, -(-len(X) // config.batch_size))
    on_step = LossLogger(rec, total_steps) if rec is not None else None
    eval_epochs = set(np.linspace(0, epochs - 1, min(epochs, EVAL_POINTS)).round().astype(int).tolist())
    snapshot_epochs = set(np.linspace(0, epochs - 1, min(epochs, DYNAMICS_SNAPSHOTS)).round().astype(int).tolist())
    fixed = Xv[data.fixed_val]
    dynamics = [[0, predict(model, fixed, data.task)]]
    if rec is not None:
        rec.log(0, 0.0, train_loss=init_loss, val_loss=mean_loss(model, Xv, yv, data.task))

    # Early stopping judges every epoch; a tuning trial's pruner every REPORT_PERCENT of the training (each report
    # is a round trip to the study, and percents line up trials of different lengths); else EVAL_POINTS epochs.
    stopper = EarlyStopping(config.patience) if config.patience else None
    reporting = rec is not None and rec.report is not None

    def report_at(epoch: int) -> int | None:
        """The percent of training done after this 0-based epoch, when it crosses a multiple of REPORT_PERCENT."""
        done, before = 100 * (epoch + 1) // epochs, 100 * epoch // epochs
        return done // REPORT_PERCENT * REPORT_PERCENT if done // REPORT_PERCENT > before // REPORT_PERCENT else None

    def on_epoch(epoch: int, step: int) -> bool:
        if epoch in snapshot_epochs:
            dynamics.append([epoch + 1, predict(model, fixed, data.task)])
        percent = report_at(epoch) if reporting else None
        if not (stopper is not None or percent is not None or (rec is not None and epoch in eval_epochs)):
            return False
        pred = predict(model, Xv, data.task)
        values = {"val_loss": _loss(data.task, data.y_val, pred)}
        if rec is not None:
            rec.progress = span[0] + (span[1] - span[0]) * (epoch + 1) / epochs
            if data.task == "classification":
                values["val_accuracy"] = float((pred.argmax(axis=1) == data.y_val).mean())
            else:
                values["val_mae"] = float(np.abs(pred - data.y_val).mean())
            rec.log(step, epoch + 1, **values)
            if percent is not None:
                rec.report(percent, values["val_loss"])  # raises Pruned when the trial should stop
        return stopper is not None and stopper.update(epoch + 1, values["val_loss"], model)

    train_mlp(model, Xt, yt, data.task, epochs=epochs, batch_size=config.batch_size, lr=config.lr,
              weight_decay=config.weight_decay, seed=config.seed, on_step=on_step, on_epoch=on_epoch)
    stopped = {}
    if stopper is not None:
        stopper.restore(model)  # the best epoch's weights: its metrics are the run's
        stopped = {"best_epoch": stopper.best_epoch, "stopped_epoch": stopper.last_epoch, "max_epochs": epochs}
    return Fitted(lambda M: predict(model, torch.from_numpy(M), data.task), models.n_parameters(model), model,
                  dynamics, loss_at_init=init_loss, stopped=stopped)


def fit(config: TrainConfig, data: Data, rec: Recorder | None = None, zero_inputs: bool = False,
        span: tuple[float, float] = (0.0, 1.0)) -> Fitted:
    """Fit the configured model on the training split (on all-zero inputs for the input-independent twin)."""
    X, X_val = data.X_train, data.X_val
    if zero_inputs:
        X, X_val = np.zeros_like(X), np.zeros_like(X_val)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    fitter = _fit_mlp if config.model == "mlp" else _fit_sklearn
    return fitter(config, data, X, X_val, rec, span)


def _loss(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    return float(evaluation.per_example_loss(task, y, pred).mean())


# -- the checks of one run ------------------------------------------------------------------------------
def run_checks(config: TrainConfig, data: Data, fitted: Fitted, val_loss: float, rec: Recorder | None = None,
               span: tuple[float, float] = (0.0, 1.0)) -> dict:
    out = {}
    mlp = config.model == "mlp"
    not_mlp = f"applies to the MLP; {config.model} has no step-by-step training to check"
    if mlp:
        expected = checks.expected_loss_at_init(data.task, data.y_train, data.n_classes, config.bias_init)
        out["loss_at_init"] = checks.loss_at_init(expected, fitted.loss_at_init, config.bias_init)
    else:
        out["loss_at_init"] = checks.skipped(not_mlp)

    if config.model == "prior":
        out["input_independent"] = checks.skipped("the prior baseline ignores its input by design: it is the "
                                                  "reference the other models must beat")
    else:
        twin_rec = rec.twin() if rec is not None else None
        twin = fit(config, data, twin_rec, zero_inputs=True, span=(span[0], span[0] + 0.8 * (span[1] - span[0])))
        if twin_rec is not None:
            twin_rec.flush()
        zeros = np.zeros_like(data.X_val[:1])
        sample = slice(0, TRAIN_LOSS_ROWS)
        out["input_independent"] = checks.input_independent(
            val_loss, _loss(data.task, data.y_val, twin.predict(np.zeros_like(data.X_val))),
            _loss(data.task, data.y_train[sample], fitted.predict(data.X_train[sample])),
            _loss(data.task, data.y_train[sample], twin.predict(zeros.repeat(len(data.y_train[sample]), axis=0))))

    if not mlp:
        for name in ("overfit_one_batch", "batch_independence", "capacity"):
            out[name] = checks.skipped(not_mlp)
        return out
    plain = replace(config, dropout=0.0, weight_decay=0.0)  # nothing that fights fitting a few examples
    rng = np.random.default_rng(config.seed)
    # Distinct inputs first: copies of one input with different labels put a floor under the loss (the check then
    # allows for it); repeats fill the batch only when the training split has fewer distinct inputs than its size.
    few = features.distinct_inputs_first(features.input_groups(data.X_train), rng)[:checks.OVERFIT_N]
    Xb, yb = torch.from_numpy(data.X_train[few]), target_tensor(data.y_train[few], data.task)
    model = models.make_mlp(plain, Xb.shape[1], data.task, data.y_train, data.n_classes)
    out["overfit_one_batch"] = checks.overfit_one_batch(model, Xb, yb, data.task, config.lr) | {
        "rows": data.rows_train[few].tolist()}
    out["batch_independence"] = checks.batch_independence(
        fitted.model, torch.from_numpy(data.X_train[: min(config.batch_size, 32)]))
    sub = rng.choice(len(data.X_train), size=min(checks.CAPACITY_ROWS, len(data.X_train)), replace=False)
    Xc, yc = torch.from_numpy(data.X_train[sub]), target_tensor(data.y_train[sub], data.task)
    widths = sorted({max(2, config.width // 4), max(2, config.width // 2), config.width, config.width * 2})
    out["capacity"] = checks.capacity(
        lambda w: models.make_mlp(plain, Xc.shape[1], data.task, data.y_train, data.n_classes, width=w),
        Xc, yc, data.task, config.lr, widths)
    return out


# -- views kept with the run ---------------------------------------------------------------------------
def _label(data: Data, value) -> str | float:
    return data.classes[int(value)] if data.task == "classification" else float(value)


def batch_view(config: TrainConfig, data: Data) -> dict:
    """The first batch exactly as the net receives it (the same permutation the training loop draws first), one
    entry per distinct input: rows, labels, values and decoded are each input's first row in the batch; n_rows,
    row_ids and row_labels the batch's rows that share it; stats are over the whole batch, repeats included."""
    size = min(config.batch_size, len(data.X_train))
    order = torch.randperm(len(data.X_train), generator=torch.Generator().manual_seed(config.seed))[:size].numpy()
    X = data.X_train[order]
    groups = features.input_groups(X)
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)  # batch order
    members = np.split(np.argsort(groups, kind="stable"), np.cumsum(np.bincount(groups))[:-1])
    shared = [members[g] for g in groups[first]]
    names = data.encoder.feature_names_
    keep = min(len(names), BATCH_VIEW_MAX_FEATURES)
    decoded = data.encoder.decode(X[first])
    return {
        "rows": data.rows_train[order[first]].tolist(),
        "labels": [_label(data, v) for v in data.y_train[order[first]]],
        "n_rows": [len(m) for m in shared],
        "row_ids": [data.rows_train[order[m]].tolist() for m in shared],
        "row_labels": [[_label(data, v) for v in data.y_train[order[m]]] for m in shared],
        "batch_rows": int(size),
        "features": names[:keep],
        "n_features": len(names),
        "values": X[first, :keep].tolist(),
        "stats": features.batch_stats(X, names).to_dict("list"),
        "decoded": {c: [_cell(v) for v in decoded[c]] for c in decoded.columns},
    }


def _cell(value) -> str | None:
    """A decoded value as text; numbers to 6 significant digits (float32 round trips add noise further out)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def top_losses(data: Data, pred: np.ndarray, k: int = TOP_LOSSES) -> list[dict]:
    """The k distinct validation inputs with the highest loss, worst first. Identical inputs get one prediction,
    so their rows make one entry, stood for by the row of highest loss ("row", the Data page's link), with
    n_rows (validation rows with that input) and n_labels (their distinct labels: above 1, identical inputs with
    different outcomes, noise no model can fit)."""
    losses = evaluation.per_example_loss(data.task, data.y_val, pred)
    groups = data.val_groups
    by_loss = np.argsort(-losses, kind="stable")
    _, worst_of_group = np.unique(groups[by_loss], return_index=True)
    worst = by_loss[np.sort(worst_of_group)][:k]
    n_rows = np.bincount(groups)
    n_labels = features.labels_per_group(groups, data.y_val)
    out = []
    for i in worst:
        item = {"row": int(data.rows_val[i]), "label": _label(data, data.y_val[i]), "loss": float(losses[i])}
        if data.task == "classification":
            item |= {"predicted": data.classes[int(pred[i].argmax())], "p_label": float(pred[i, int(data.y_val[i])])}
        else:
            item["predicted"] = float(pred[i])
        item |= {"n_rows": int(n_rows[groups[i]]), "n_labels": int(n_labels[groups[i]])}
        out.append(item)
    return out


def predictions_npz(rows: np.ndarray, pred: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, rows=rows.astype(np.int64), pred=pred.astype(np.float32))
    return buf.getvalue()


def load_predictions(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:  # never unpickle
        return z["rows"], z["pred"]


def target_column(settings: Settings, record: DatasetRecord, target: str, task: str | None) -> tuple[str, pd.Series]:
    """The task (inferred unless given) and the whole target column, checked for something to learn."""
    record.column(target)
    db = queries.DatasetDB(settings, record)
    try:
        task = task or profiles.task_of(db, target)
        y = queries.columns_frame(db, [target])[target]
    finally:
        db.close()
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise BadInput(f"target {target!r} is not numeric, so it cannot be a regression target")
    splits.check_target(y, task, target)
    return task, y


def preflight(settings: Settings, record: DatasetRecord, target: str, config: TrainConfig) -> str:
    """Refuse a bad config, a target nothing can be learned from, or a model that cannot fit in a job's memory,
    before any run exists; returns the task."""
    validate(config)
    unknown = [c for c in (config.exclude or ()) if c not in record.column_names]
    if unknown:
        raise BadInput(f"cannot exclude {str(unknown[0])[:80]!r}: dataset {record.name!r} has no such column")
    task, y = target_column(settings, record, target, config.task)
    inputs = tuple(c for c in record.columns if c.name != target and c.name not in (config.exclude or ()))
    n_classes = int(y.nunique()) if task == "classification" else 1
    capacity.check_fits(settings, config, record.n_rows, capacity.n_features_at_most(inputs, config), n_classes)
    return task


def split_overview(settings: Settings, store: Store, record: DatasetRecord, target: str,
                   task: str | None = None) -> tuple[str, splits.Split, pd.DataFrame]:
    """The task, the persisted split (made now if this is the target's first use) and its sizes and balance."""
    task, y = target_column(settings, record, target, task)
    split = splits.get_or_create(store, record.id, target, y, task)
    return task, split, splits.summary(split, y, task)


def feature_plan(settings: Settings, record: DatasetRecord, target: str) -> pd.DataFrame:
    """Every column but the target: how it is treated and whether it is ID-like (excluded by default)."""
    db = queries.DatasetDB(settings, record)
    try:
        treat = profiles.treatments(db)
        id_like = set(id_like_columns(db))
    finally:
        db.close()
    return pd.DataFrame([{"column": c, "treated as": treat[c], "id_like": c in id_like}
                         for c in record.column_names if c != target])


# -- a run's life ------------------------------------------------------------------------------------
def create(store: Store, record: DatasetRecord, target: str, config: TrainConfig, author: str = "",
           parent_id: str | None = None, hypothesis: str = "") -> RunRecord:
    """Register a queued run (validated: a bad value is refused before any process starts)."""
    validate(config)
    record.column(target)
    run_id = new_id()
    return store.add_run(RunRecord(
        id=run_id, name=f"{config.model}-{run_id[:6]}", model=config.model, config=config_json(config),
        dataset_id=record.id, target=target, seed=config.seed, code_version=code_version(),
        author=author or "anonymous", parent_id=parent_id, hypothesis=hypothesis))


def config_json(config: TrainConfig) -> dict:
    values = asdict(config)
    if values["exclude"] is not None:
        values["exclude"] = list(values["exclude"])
    return values


def execute(settings: Settings, store: Store, run_id: str, should_stop: Callable[[], bool] | None = None,
            report: Callable[[int, float], None] | None = None, host: str | None = None) -> RunRecord:
    """Run a queued run to its end; every outcome (finished, failed, cancelled, pruned) is written to the store.
    report(epoch, val_loss) is a tuning trial's pruner; host names where it ran (default: this machine)."""
    run = store.get_run(run_id)
    if not store.update_run(run_id, only_if_active=True, status="running", started_at=now_iso(),
                            host=host or socket.gethostname(), pid=os.getpid(), heartbeat=time.time()):
        return run  # cancelled before it started
    rec = Recorder(store, run_id, should_stop)
    rec.report = report
    try:
        _execute(settings, store, run, rec)
    except Cancelled as e:
        _end(store, rec, run_id, "cancelled", str(e))
    except Pruned as e:
        _end(store, rec, run_id, "pruned", str(e))
    except KeyboardInterrupt:  # Ctrl-C in the CLI: record it, then let the caller stop
        _end(store, rec, run_id, "cancelled", "interrupted")
        raise
    except RecipeError as e:
        _end(store, rec, run_id, "failed", str(e))
    except MemoryError:
        _end(store, rec, run_id, "failed", OUT_OF_MEMORY)
    except Exception as e:  # a bug: one line for the person, the traceback kept with the run for a developer
        if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # torch, at the job's memory limit
            _end(store, rec, run_id, "failed", OUT_OF_MEMORY)
            return store.get_run(run_id)
        store.put_artifact(run_id, "traceback", traceback.format_exc().encode())
        _end(store, rec, run_id, "failed", f"unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return store.get_run(run_id)


OUT_OF_MEMORY = "out of memory (the job's limit is RECIPE_JOB_MEMORY_MB): try a smaller model, batch or dataset"


def _end(store: Store, rec: Recorder, run_id: str, status: str, reason: str) -> None:
    try:
        store.log_metrics(run_id, rec.points)  # every point logged before the end is kept
    finally:
        store.update_run(run_id, only_if_active=True, status=status, reason=reason, finished_at=now_iso())
        store.compact_metrics(run_id)


def _execute(settings: Settings, store: Store, run: RunRecord, rec: Recorder) -> None:
    if store.get_run(run.id).cancel_requested:  # cancelled while its process was starting
        raise Cancelled(CANCELLED)
    config = validate(config_from(run.config))
    torch.set_num_threads(settings.train_threads)
    with threadpool_limits(settings.train_threads):  # OpenMP and BLAS threads of scikit-learn and numpy
        _train_and_check(settings, store, run, rec, config)


def _train_and_check(settings: Settings, store: Store, run: RunRecord, rec: Recorder, config: TrainConfig) -> None:
    record = store.get_dataset(run.dataset_id)
    # -- data
    data = prepare(settings, store, record, run.target, config)
    store.update_run(run.id, split_id=data.split.id, task=data.task)
    store.put_json(run.id, "features", {
        "columns": data.columns, "excluded": data.excluded, "id_like": data.id_like,
        "n_features": data.encoder.n_features_, "classes": data.classes, "task": data.task,
        "split": data.split.counts | {"train_used": len(data.rows_train)}})
    store.put_json(run.id, "batch", batch_view(config, data))
    # -- train
    span = (0.0, 0.6 if config.checks else 1.0)
    start = time.perf_counter()
    fitted = fit(config, data, rec, span=span)
    train_seconds = time.perf_counter() - start
    # -- evaluate on the whole validation split
    start = time.perf_counter()
    pred = fitted.predict(data.X_val)
    predict_seconds = time.perf_counter() - start
    result = evaluation.evaluate(data.task, data.y_val, pred, data.n_classes, seed=config.seed)
    metrics = result["metrics"] | fitted.stopped  # where early stopping ended, for Compare
    store.put_json(run.id, "evaluation", result | {"classes": data.classes, "n_parameters": fitted.n_parameters,
                                                   "train_seconds": train_seconds, "predict_seconds": predict_seconds})
    store.put_artifact(run.id, "val_predictions", predictions_npz(data.rows_val, pred))
    store.put_json(run.id, "top_losses", top_losses(data, pred))
    store.put_json(run.id, "dynamics", {
        "rows": data.rows_val[data.fixed_val].tolist(),
        "labels": [_label(data, v) for v in data.y_val[data.fixed_val]],
        "n_rows": np.bincount(data.val_groups)[data.val_groups[data.fixed_val]].tolist(),  # rows with that input
        "classes": data.classes,
        "snapshots": [[at, np.asarray(p).round(5).tolist()] for at, p in fitted.dynamics]})
    rec.progress = span[1]
    rec.flush()
    # -- checks
    found = {}
    if config.checks:
        found = run_checks(config, data, fitted, metrics["val_loss"], rec, span=(span[1], 1.0))
    earlier = _same_run_before(store, run, data.split.id)
    found["reproducible"] = checks.reproducibility(metrics, earlier.metrics if earlier else None,
                                                   earlier.id if earlier else None)
    store.log_metrics(run.id, rec.points)
    rec.points = []
    store.update_run(run.id, only_if_active=True, status="finished", metrics=metrics, checks=found, progress=1.0,
                     finished_at=now_iso())
    store.compact_metrics(run.id)  # one chunk per metric instead of one per flush: faster to read on Compare


def _same_run_before(store: Store, run: RunRecord, split_id: str) -> RunRecord | None:
    for other in store.list_runs(run.dataset_id, run.target):
        if (other.id != run.id and other.status == "finished" and other.split_id == split_id
                and other.config == run.config and other.code_version == run.code_version):
            return other
    return None
