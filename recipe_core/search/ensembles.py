"""Ensembles: the mean of finished runs' stored validation predictions, kept as a run of its own.

No model is refit: an ensemble is judged on the validation split its members were judged on, so it can be
compared, labelled against and averaged again like any run.
"""
from __future__ import annotations

import time

import numpy as np

from recipe_core.compare import curves
from recipe_core.config import Settings
from recipe_core.errors import BadInput, NotFound
from recipe_core.tracking.records import RunRecord, new_id, now_iso
from recipe_core.tracking.store import Store
from recipe_core.training import artifacts, evaluation, runs, targets

MODEL = "ensemble"
METHODS = {"classification": "mean of probabilities", "regression": "mean prediction"}
MAX_NAME = 500


def create(settings: Settings, store: Store, run_ids: list[str], author: str = "",
           name: str | None = None) -> RunRecord:
    """Average the members' validation predictions and store the result as a finished run (model "ensemble").

    A repeated id counts once: averaging a run with itself would silently weight it double, which nobody
    means by picking it twice. Ids may be unambiguous prefixes.
    """
    started = now_iso()
    members = _members(store, run_ids)
    first = members[0]
    loaded = [_predictions(store, m) for m in members]
    _check_alike(members, loaded)
    rows = loaded[0][0]
    y, classes = _validation_truth(settings, store, first, rows)
    if first.task == "classification" and loaded[0][1].shape[1] != len(classes):
        raise BadInput(f"run {first.id} predicts {loaded[0][1].shape[1]} classes but target {first.target!r} "
                       f"now has {len(classes)}")

    start = time.perf_counter()
    # float64 so that many members' float32 probabilities do not drift from summing to one
    pred = np.mean([p.astype(np.float64) for _, p in loaded], axis=0)
    averaging_seconds = time.perf_counter() - start

    best = min(members, key=lambda m: m.metrics["val_loss"])
    seed = best.seed if best.seed is not None else 0  # the bootstrap intervals of an ensemble of one match its run's
    result = evaluation.evaluate(first.task, y, pred, len(classes), seed=seed)
    member_evals = [store.get_json(m.id, "evaluation") or {} for m in members]
    n_parameters = sum(int(e.get("n_parameters") or 0) for e in member_evals)
    # an ensemble costs every member's training and prediction; averaging itself is almost free
    train_seconds = sum(float(e.get("train_seconds") or 0.0) for e in member_evals)
    predict_seconds = sum(float(e.get("predict_seconds") or 0.0) for e in member_evals) + averaging_seconds
    metrics = result["metrics"] | {
        "gain_vs_best": best.metrics["val_loss"] - result["metrics"]["val_loss"],  # > 0: the ensemble is better
        "n_members": len(members), "n_parameters": n_parameters, "predict_seconds": predict_seconds}

    run_id = new_id()
    # Artifacts before the run: a reader never sees a finished ensemble without its predictions. Should adding the
    # run fail, the artifacts are left under an id nothing refers to.
    store.put_artifact(run_id, "val_predictions", artifacts.predictions_npz(rows, pred))
    store.put_json(run_id, "evaluation", result | {
        "classes": classes, "n_parameters": n_parameters, "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "members": [{"run_id": m.id, "name": m.name, "model": m.model, "val_loss": m.metrics["val_loss"]}
                    for m in members]})
    n = len(members)
    name = str(name or "").strip()[:MAX_NAME] or f"ensemble-of-{n}-{run_id[:6]}"
    return store.add_run(RunRecord(
        id=run_id, name=name,
        model=MODEL, config={"members": [m.id for m in members], "method": METHODS[first.task]},
        dataset_id=first.dataset_id, target=first.target, split_id=first.split_id, task=first.task, seed=None,
        code_version=runs.code_version(), author=author or "anonymous", status="finished", progress=1.0,
        created_at=started, started_at=started, finished_at=now_iso(), metrics=metrics, checks={},
        parent_id=best.id, hypothesis=f"averaging {n} runs beats the best of them", tags=("ensemble",),
        source="app"))


def top_k(store: Store, dataset_id: str, target: str, k: int, metric: str = "val_loss") -> list[str]:
    """Ids of the k best finished runs with stored predictions, best first (fewer when fewer qualify).

    Best is the lowest value, or the highest for a metric like accuracy (curves.direction); ties go to the lower
    val_loss. Left out: the prior baseline (it ignores the input, so it only dilutes the others), ensembles
    (their members would count twice) and runs trained on part of the training split (a learning curve's 25%
    point is another experiment, not a candidate model). Only runs on the best run's split and task are taken, so
    the ids always make an ensemble.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInput(f"k must be a whole number of at least 1, not {k!r}")
    sign = -1.0 if curves.direction(metric) == "max" else 1.0
    candidates = sorted(
        (r for r in store.list_runs(dataset_id, target)
         if r.status == "finished" and r.model not in ("prior", MODEL) and _on_the_whole_training_split(r)
         and _finite(r.metrics.get(metric))),
        key=lambda r: (sign * r.metrics[metric], _loss_or_inf(r)))  # ties: the lower loss
    chosen: list[RunRecord] = []
    for r in candidates:
        if chosen and (r.split_id, r.task) != (chosen[0].split_id, chosen[0].task):
            continue
        if r.split_id is None or store.get_artifact(r.id, "val_predictions") is None:
            continue
        chosen.append(r)
        if len(chosen) == k:
            break
    if not chosen:
        raise BadInput(f"no finished run of target {target!r} has stored validation predictions and a {metric}: "
                       "train one first")
    return [r.id for r in chosen]


def summary(store: Store, run: RunRecord | str) -> dict:
    """What the CLI and the page show of an ensemble: its metrics and its members' own validation losses."""
    if isinstance(run, str):
        run = store.get_run(run)
    if run.model != MODEL:
        raise BadInput(f"run {run.id} is a {run.model} run, not an ensemble")
    stored = (store.get_json(run.id, "evaluation") or {}).get("members")
    members = stored if stored is not None else [_member_row(store, i) for i in run.config.get("members", [])]
    return {"run_id": run.id, "metrics": run.metrics, "members": members,
            "gain_vs_best": run.metrics.get("gain_vs_best")}


# -- the members, checked ---------------------------------------------------------------------------------
def _members(store: Store, run_ids: list[str]) -> list[RunRecord]:
    if isinstance(run_ids, str):  # a lone id would otherwise be read as a list of one-character ids
        run_ids = [run_ids]
    members: dict[str, RunRecord] = {}
    for key in run_ids:
        try:
            run = store.get_run(key)
        except NotFound as e:
            raise BadInput(str(e)) from None
        members.setdefault(run.id, run)
    if not members:
        raise BadInput("an ensemble needs at least one run")
    for run in members.values():
        if run.status != "finished":
            raise BadInput(f"run {run.id} is {run.status}: only finished runs can be averaged")
        if not _finite(run.metrics.get("val_loss")):
            raise BadInput(f"run {run.id} has no finite val_loss: it cannot be compared with the ensemble")
    return list(members.values())


def _predictions(store: Store, run: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    stored = store.get_artifact(run.id, "val_predictions")
    if stored is None:
        raise BadInput(f"run {run.id} has no stored validation predictions (runs logged through the API or "
                       "imported keep none)")
    rows, pred = artifacts.load_predictions(stored)
    if not np.isfinite(pred).all():
        raise BadInput(f"run {run.id} has predictions that are not finite numbers")
    return rows, pred


def _check_alike(members: list[RunRecord], loaded: list[tuple[np.ndarray, np.ndarray]]) -> None:
    first, (rows, pred) = members[0], loaded[0]
    if first.task not in METHODS or first.split_id is None:
        raise BadInput(f"run {first.id} is not tied to a dataset split and task")
    for run, (other_rows, other_pred) in zip(members[1:], loaded[1:]):
        if (run.dataset_id, run.target, run.split_id, run.task) != (first.dataset_id, first.target, first.split_id,
                                                                      first.task):
            raise BadInput(f"members must share dataset, target and split: run {run.id} is on {_where(run)}, "
                           f"run {first.id} on {_where(first)}")
        if not np.array_equal(other_rows, rows):
            raise BadInput(f"run {run.id} predicted other validation rows than run {first.id}")
        if other_pred.shape != pred.shape:
            raise BadInput(f"run {run.id} has predictions of shape {other_pred.shape}, run {first.id} "
                           f"{pred.shape}: a different class count")
    expected_ndim = 2 if first.task == "classification" else 1
    if pred.ndim != expected_ndim or len(pred) != len(rows):
        raise BadInput(f"run {first.id} has predictions of shape {pred.shape}, not one per validation row")


def _validation_truth(settings: Settings, store: Store, run: RunRecord,
                      rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The true values of the validation rows and the class names, encoded as a run encodes them (dataset.prepare)."""
    _, y = targets.target_column(settings, store.get_dataset(run.dataset_id), run.target, run.task)
    classes, encoded = targets.encode_target(y, run.task)
    return encoded[rows], classes


def _where(run: RunRecord) -> str:
    return f"dataset {run.dataset_id}, target {run.target!r}, split {run.split_id} ({run.task})"


def _member_row(store: Store, run_id: str) -> dict:
    try:
        r = store.get_run(run_id)
    except NotFound:
        return {"run_id": run_id, "name": "(deleted)", "model": None, "val_loss": None}
    return {"run_id": r.id, "name": r.name, "model": r.model, "val_loss": r.metrics.get("val_loss")}


def _on_the_whole_training_split(run: RunRecord) -> bool:
    """Trained on every training row: a run's train_fraction (dataset.training_rows) is 1, or absent for a run
    logged through the API, which says nothing of a subset."""
    fraction = (run.config or {}).get("train_fraction", 1.0)
    return not (isinstance(fraction, (int, float)) and fraction < 1)


def _loss_or_inf(run: RunRecord) -> float:
    value = run.metrics.get("val_loss")
    return float(value) if _finite(value) else np.inf


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))
