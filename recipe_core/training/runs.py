"""A run's life: validate, preflight, create (queued), execute: data -> model -> evaluation -> checks, each step
recorded in the store. execute() is what a training process runs (jobs.py starts it; the CLI runs it inline).
"""
from __future__ import annotations

import hashlib
import math
import os
import socket
import time
import traceback
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from recipe_core.config import MODELS, TASKS, Settings, TrainConfig
from recipe_core.data.records import DatasetRecord
from recipe_core.errors import CANCELLED, BadInput, Cancelled, Pruned, RecipeError, unexpected
from recipe_core.tracking.records import RunRecord, new_id, now_iso
from recipe_core.tracking.store import Store
from recipe_core.training import artifacts, capacity, checks, evaluation, features, loop, models, targets, verdicts
from recipe_core.training.dataset import Data, prepare
from recipe_core.training.fit import TRAIN_LOSS_ROWS, Fitted, NullRecorder, Recorder, Report, fit, loss_of


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


def preflight(settings: Settings, record: DatasetRecord, target: str, config: TrainConfig) -> str:
    """Refuse a bad config, a target nothing can be learned from, or a model that cannot fit in a job's memory,
    before any run exists; returns the task."""
    validate(config)
    unknown = [c for c in (config.exclude or ()) if c not in record.column_names]
    if unknown:
        raise BadInput(f"cannot exclude {str(unknown[0])[:80]!r}: dataset {record.name!r} has no such column")
    task, y = targets.target_column(settings, record, target, config.task)
    inputs = tuple(c for c in record.columns if c.name != target and c.name not in (config.exclude or ()))
    n_classes = int(y.nunique()) if task == "classification" else 1
    capacity.check_fits(settings, config, record.n_rows, capacity.n_features_at_most(inputs, config), n_classes)
    return task



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
            report: Report | None = None, host: str | None = None) -> RunRecord:
    """Run a queued run to its end; every outcome (finished, failed, cancelled, pruned) is written to the store.
    report(percent, val_loss) is a tuning trial's pruner, called at each REPORT_PERCENT of the training (it
    raises Pruned to stop the run); host names where it ran (default: this machine)."""
    run = store.get_run(run_id)
    if not store.update_run(run_id, only_if_active=True, status="running", started_at=now_iso(),
                            host=host or socket.gethostname(), pid=os.getpid(), heartbeat=time.time()):
        return run  # cancelled before it started
    rec = Recorder(store, run_id, should_stop, report=report)
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
        _end(store, rec, run_id, "failed", unexpected(e))
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
    store.put_json(run.id, "features", artifacts.feature_summary(data).to_json())
    first_batch = loop.first_batch(len(data.X_train), config.batch_size, config.seed)
    store.put_json(run.id, "batch", artifacts.batch_view(data, first_batch).to_json())
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
    store.put_artifact(run.id, "val_predictions", artifacts.predictions_npz(data.rows_val, pred))
    store.put_json(run.id, "top_losses", [item.to_json() for item in artifacts.top_losses(data, pred)])
    store.put_json(run.id, "dynamics", artifacts.dynamics(data, fitted.dynamics).to_json())
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
    store.update_run(run.id, only_if_active=True, status="finished", metrics=metrics, checks=verdicts.to_json(found),
                     progress=1.0, finished_at=now_iso())
    store.compact_metrics(run.id)  # one chunk per metric instead of one per flush: faster to read on Compare


def _same_run_before(store: Store, run: RunRecord, split_id: str) -> RunRecord | None:
    for other in store.list_runs(run.dataset_id, run.target):
        if (other.id != run.id and other.status == "finished" and other.split_id == split_id
                and other.config == run.config and other.code_version == run.code_version):
            return other
    return None


# -- the checks of one run ------------------------------------------------------------------------------
def run_checks(config: TrainConfig, data: Data, fitted: Fitted, val_loss: float,
               rec: Recorder | NullRecorder | None = None,
               span: tuple[float, float] = (0.0, 1.0)) -> dict[str, verdicts.Verdict]:
    """Every recipe check that applies to this model, by name; those that do not apply say why (ok None)."""
    rec = rec or NullRecorder()
    out: dict[str, verdicts.Verdict] = {}
    mlp = config.model == "mlp"
    not_mlp = f"applies to the MLP; {config.model} has no step-by-step training to check"
    if mlp:
        expected = checks.expected_loss_at_init(data.task, data.y_train, data.n_classes, config.bias_init)
        out["loss_at_init"] = checks.loss_at_init(expected, fitted.loss_at_init, config.bias_init)
    else:
        out["loss_at_init"] = verdicts.skipped(not_mlp)

    if config.model == "prior":
        out["input_independent"] = verdicts.skipped("the prior baseline ignores its input by design: it is the "
                                                    "reference the other models must beat")
    else:
        twin_rec = rec.twin()
        twin = fit(config, data, twin_rec, zero_inputs=True, span=(span[0], span[0] + 0.8 * (span[1] - span[0])))
        twin_rec.flush()
        zeros = np.zeros_like(data.X_val[:1])
        sample = slice(0, TRAIN_LOSS_ROWS)
        out["input_independent"] = checks.input_independent(
            val_loss, loss_of(data.task, data.y_val, twin.predict(np.zeros_like(data.X_val))),
            loss_of(data.task, data.y_train[sample], fitted.predict(data.X_train[sample])),
            loss_of(data.task, data.y_train[sample], twin.predict(zeros.repeat(len(data.y_train[sample]), axis=0))))

    if not mlp:
        for name in ("overfit_one_batch", "batch_independence", "capacity"):
            out[name] = verdicts.skipped(not_mlp)
        return out
    plain = replace(config, dropout=0.0, weight_decay=0.0)  # nothing that fights fitting a few examples
    rng = np.random.default_rng(config.seed)
    # Distinct inputs first: copies of one input with different labels put a floor under the loss (the check then
    # allows for it); repeats fill the batch only when the training split has fewer distinct inputs than its size.
    few = features.distinct_inputs_first(features.input_groups(data.X_train), rng)[:checks.OVERFIT_N]
    Xb, yb = torch.from_numpy(data.X_train[few]), loop.target_tensor(data.y_train[few], data.task)
    model = models.make_mlp(plain, Xb.shape[1], data.task, data.y_train, data.n_classes)
    out["overfit_one_batch"] = replace(checks.overfit_one_batch(model, Xb, yb, data.task, config.lr),
                                       rows=data.rows_train[few].tolist())
    out["batch_independence"] = checks.batch_independence(
        fitted.model, torch.from_numpy(data.X_train[: min(config.batch_size, 32)]))
    sub = rng.choice(len(data.X_train), size=min(checks.CAPACITY_ROWS, len(data.X_train)), replace=False)
    Xc, yc = torch.from_numpy(data.X_train[sub]), loop.target_tensor(data.y_train[sub], data.task)
    widths = sorted({max(2, config.width // 4), max(2, config.width // 2), config.width, config.width * 2})
    out["capacity"] = checks.capacity(
        lambda w: models.make_mlp(plain, Xc.shape[1], data.task, data.y_train, data.n_classes, width=w),
        Xc, yc, data.task, config.lr, widths)
    return out


