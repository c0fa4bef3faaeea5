"""Would more data help? The same config trained on 10, 25, 50 and 100% of the training split, several seeds each
(nested subsets: see dataset.training_rows), and the validation loss against the number of training rows."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from recipe_core.config import Settings
from recipe_core.errors import BadInput
from recipe_core.search import executors
from recipe_core.tracking import access, lifecycle
from recipe_core.tracking.access import Identity
from recipe_core.tracking.heartbeat import Heartbeat
from recipe_core.tracking.records import RunRecord, new_id
from recipe_core.tracking.store import Store
from recipe_core.training import jobs, runs

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
SEEDS = 3
TAG = "curve:"  # runs of one learning curve share the tag curve:<id>


def start(store: Store, parent: RunRecord, fractions=FRACTIONS, seeds: int = SEEDS,
          author: str = "") -> tuple[str, list[RunRecord]]:
    """Queue the runs of a learning curve of a run's config: (curve id, queued runs). Checks off: they are points
    of one curve, not runs to inspect one by one."""
    fractions = sorted({float(f) for f in fractions})
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise BadInput("fractions must be above 0 and at most 1, e.g. 0.1, 0.25, 0.5, 1")
    if not (isinstance(seeds, int) and 1 <= seeds <= 20):
        raise BadInput(f"seeds must be a whole number from 1 to 20, not {seeds!r}")
    if parent.dataset_id is None or parent.source != "app":
        raise BadInput("a learning curve retrains a run's config: pick a run trained here (Train or Tune)")
    record = store.get_dataset(parent.dataset_id)
    base = runs.validate(replace(runs.config_from(parent.config), checks=False))
    curve = new_id()[:8]
    queued = []
    for fraction in fractions:
        for seed in range(seeds):
            config = replace(base, train_fraction=fraction, seed=base.seed + seed)
            run = runs.create(store, record, parent.target, config, author=author, parent_id=parent.id,
                              hypothesis=f"learning curve: {fraction:.0%} of the training rows")
            store.update_run(run.id, name=f"curve-{curve} {fraction:.0%} s{config.seed}", tags=(TAG + curve,))
            queued.append(store.get_run(run.id))
    return curve, queued


def start_in_background(settings: Settings, source: RunRecord, fractions=FRACTIONS, seeds: int = SEEDS,
                        author: str = "") -> jobs.Command:
    """Train a learning curve of the run's config in a background process (`python -m recipe_core learning-curve`,
    which calls start and execute): it goes on if the page is closed. The process checks the fractions and seeds."""
    return jobs.start_command(settings, ["learning-curve", source.id, "--seeds", str(seeds), "--fractions",
                                         ",".join(str(f) for f in fractions), "--author", author or "anonymous"],
                              label=_LABEL + source.id)


_LABEL = "curve-of:"  # a background command's label: the run whose config its curve retrains


def background_command(settings: Settings, source_id: str) -> jobs.Command | None:
    """The newest background command started for a learning curve of this run (by anyone), or None."""
    return jobs.latest_command(settings, _LABEL + source_id)


def in_progress(settings: Settings, store: Store, source: RunRecord) -> bool:
    """Whether a learning curve of this run is on its way: its process lives, or one of its runs is active."""
    command = background_command(settings, source.id)
    return (command is not None and jobs.command_state(settings, command).active) or any(
        r.active for r in store.list_runs(source.dataset_id, source.target) if r.parent_id == source.id)


def curves_of(store: Store, source: RunRecord, include_archived: bool = False) -> dict[str, str]:
    """The learning curves of a run's config, newest first: {curve id: when its first run was created}. Deleted
    runs are never read (list_runs), archived curves (every run archived) only when asked for."""
    started: dict[str, str] = {}
    archived = set() if include_archived else lifecycle.archived_groups(store, "curve")
    for r in store.list_runs(source.dataset_id, source.target):
        for t in r.tags:
            if r.parent_id == source.id and t.startswith(TAG) and t[len(TAG):] not in archived:
                curve = t[len(TAG):]
                started[curve] = min(started.get(curve, r.created_at), r.created_at)
    return dict(sorted(started.items(), key=lambda item: item[1], reverse=True))


def execute(settings: Settings, store: Store, queued: list[RunRecord], executor: str = executors.LOCAL,
            workers: int = 2) -> list[dict]:
    """Train queued runs, workers at a time (locally or on a Dask cluster); their results in the order given."""
    results = {}
    if executor in ("", executors.LOCAL):  # more local workers than training slots would only wait, queued
        workers = min(workers, settings.max_jobs)
    # This process holds the queue: it keeps the waiting runs alive (their workers beat once they run).
    with Heartbeat(store, [r.id for r in queued], statuses=("queued",)), executors.executor(executor, workers) as ex:
        futures = {ex.submit(executors.run_queued, str(settings.home), settings.store_url, r.id): r.id
                   for r in queued}
        remaining = set(futures)
        while remaining:
            for done in ex.wait_one(remaining):
                remaining.discard(done)
                results[futures[done]] = done.result()
    return [results[r.id] for r in queued]


def request_stop(store: Store, curve: str, who: Identity | None = None) -> int:
    """Cancel the curve's queued and running runs (a running one stops within about a second); the process that
    drives them then ends by itself. The number of runs asked to stop. With who: its author or an admin only."""
    runs_of_curve = [r for r in store.list_runs() if TAG + curve in r.tags]
    if who is not None:
        access.require_change(who, lifecycle.group_owner(runs_of_curve), "stop this learning curve")
    return sum(bool(jobs.cancel(store, r.id, who)) for r in runs_of_curve if r.active)


def ended(frame: pd.DataFrame) -> int:
    """How many runs of a curve's table have ended (finished, failed, cancelled or lost)."""
    return 0 if frame.empty else int((~frame["status"].isin(["queued", "running"])).sum())


def table(store: Store, curve: str) -> pd.DataFrame:
    """One row per run of the curve: fraction, training rows, seed, status, val_loss (and accuracy or MAE)."""
    rows = []
    for r in store.list_runs():
        if TAG + curve not in r.tags:
            continue
        features = store.get_json(r.id, "features") or {}
        rows.append({"fraction": r.config.get("train_fraction", 1.0),
                     "n_train": (features.get("split") or {}).get("train_used"), "seed": r.seed,
                     "status": r.status, "run_id": r.id, **{k: v for k, v in r.metrics.items()
                                                           if k in ("val_loss", "val_accuracy", "val_mae")}})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """Per fraction of the finished runs: mean, min, max and std of the metric over seeds."""
    done = frame[frame["status"].eq("finished")] if not frame.empty else frame
    if done.empty or metric not in done:
        return pd.DataFrame(columns=["fraction", "n_train", "runs", "mean", "min", "max", "std"])
    grouped = done.groupby("fraction")
    out = grouped[metric].agg(["count", "mean", "min", "max", "std"]).rename(columns={"count": "runs"})
    out["n_train"] = grouped["n_train"].max()
    return out.reset_index()[["fraction", "n_train", "runs", "mean", "min", "max", "std"]]


def verdict(summary_frame: pd.DataFrame, metric: str = "val_loss") -> str:
    """One sentence on whether more data would help, from the last two points of the curve."""
    if len(summary_frame) < 2:
        return "Train at least two data sizes to see a trend."
    a, b = summary_frame.iloc[-2], summary_frame.iloc[-1]
    lower_is_better = metric in ("val_loss", "val_mae")
    change = (a["mean"] - b["mean"]) if lower_is_better else (b["mean"] - a["mean"])
    spread = float(np.nanmax([a["max"] - a["min"], b["max"] - b["min"], 0.0]))
    step = f"from {a['fraction']:.0%} to {b['fraction']:.0%} of the training rows"
    if change > spread:
        return (f"Still improving: {step}, {metric} went {a['mean']:.4g} → {b['mean']:.4g}, more than the spread "
                f"between seeds ({spread:.3g}). More data would likely help.")
    if change > 0:
        return (f"Flattening: {step}, {metric} improved by {change:.3g}, within the spread between seeds "
                f"({spread:.3g}). More data may help a little; regularization or a better model may help more.")
    return (f"Flat or worse: {step}, {metric} did not improve ({a['mean']:.4g} → {b['mean']:.4g}). More of the same "
            "data is unlikely to help.")
