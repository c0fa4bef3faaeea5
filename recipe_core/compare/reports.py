"""What the pages and the CLI show of runs: the leaderboard, reference baselines, metric tables with intervals."""
from __future__ import annotations

import pandas as pd

from recipe_core.tracking.store import RunRecord
from recipe_core.training.evaluation import sig4

# Streamlit markdown; material icons, not emoji, which a browser without an emoji font shows as boxes.
VERDICT = {True: ":green[:material/check_circle: pass]", False: ":red[:material/cancel: FAIL]",
           None: ":gray[:material/remove: n/a]"}
CHECK_ORDER = ("loss_at_init", "input_independent", "overfit_one_batch", "batch_independence", "capacity",
               "reproducible")


def checks_summary(checks: dict) -> str:
    """'4/4 passed' or '1 failed of 5' over the checks that apply."""
    applied = [c.get("ok") for c in checks.values() if c.get("ok") is not None]
    failed = sum(1 for ok in applied if not ok)
    if not applied:
        return "–"
    return f"{failed} failed of {len(applied)}" if failed else f"{len(applied)}/{len(applied)} passed"


def leaderboard(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run, best validation loss first; unfinished runs last."""
    rows = []
    for r in runs:
        rows.append({"run": r.name, "id": r.id, "model": r.model, "seed": r.seed, "status": r.status,
                     "checks": checks_summary(r.checks), **{k: v for k, v in r.metrics.items()},
                     "author": r.author, "created": r.created_at[:19].replace("T", " ")})
    board = pd.DataFrame(rows)
    if board.empty:
        return board
    if "val_loss" not in board:
        board["val_loss"] = float("nan")
    return board.sort_values(["val_loss", "created"], na_position="last", kind="stable").reset_index(drop=True)


METRIC_COLUMN_PX = 110  # wide enough for "-0.1234" or "1.234e-05": a narrow column clips a number's sign
SIGNED_METRICS = ("val_r2",)  # metrics that go below zero: fixed decimals, so the sign and size read at a glance


def metric_format(column: str) -> str:
    return "%.3f" if column in SIGNED_METRICS else "%.4g"


def references(runs: list[RunRecord], metric: str = "val_loss", human: dict | None = None) -> dict[str, float]:
    """The reference lines for a metric: the latest prior baseline, the latest zero-input twin (val_loss only),
    and the human baseline (labels.summary) when people have labelled: the mean of the annotators' scores."""
    out = {}
    for r in reversed(runs):
        if r.status != "finished":
            continue
        if "prior" not in out and r.model == "prior" and metric in r.metrics:
            out["prior"] = r.metrics[metric]
        twin = r.checks.get("input_independent", {}).get("twin_val_loss")
        if metric == "val_loss" and "input-independent" not in out and twin is not None:
            out["input-independent"] = twin
    score = {"val_accuracy": "accuracy", "val_mae": "mae"}.get(metric)
    people = [a[score] for a in (human or {}).get("annotators", []) if score and a.get(score) is not None]
    if people:
        out[f"human ({len(people)} annotator{'s' if len(people) > 1 else ''}, labelled sample)"] = float(
            sum(people) / len(people))
    return out


def metrics_table(evaluation: dict) -> pd.DataFrame:
    """Each metric with 4 significant digits and its 95% interval."""
    rows = []
    for name, value in evaluation["metrics"].items():
        low, high = evaluation["intervals"].get(name, [None, None])
        rows.append({"metric": name, "value": sig4(value), "95% interval": f"{sig4(low)} – {sig4(high)}"})
    return pd.DataFrame(rows)


def ordered_checks(checks: dict) -> list[tuple[str, dict]]:
    known = [(n, checks[n]) for n in CHECK_ORDER if n in checks]
    return known + [(n, c) for n, c in checks.items() if n not in CHECK_ORDER]


def history_frame(points: list[tuple]) -> pd.DataFrame:
    """Stored metric points as a table: run_id, key, step, value, epoch, wall_time."""
    return pd.DataFrame(points, columns=["run_id", "key", "step", "value", "epoch", "wall_time"])
