"""What the pages and the CLI show of runs, as plain values: check outcomes, the leaderboard, reference baselines,
metric tables with intervals, and the Compare page's table columns, chart metric and notes."""
from __future__ import annotations

import datetime as dt
from enum import Enum

import pandas as pd

from recipe_core.compare import comparison
from recipe_core.compare.comparison import View
from recipe_core.tracking.records import RunRecord
from recipe_core.training.evaluation import sig4


class Outcome(str, Enum):
    """A check's outcome (its verdict's ok) as the word people read; the view gives it its colour and icon."""
    PASS = "pass"
    FAIL = "FAIL"
    NA = "n/a"  # the check does not apply to this run, or could not decide


def outcome(ok: bool | None) -> Outcome:
    return Outcome.NA if ok is None else Outcome.PASS if ok else Outcome.FAIL


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


# -- the Compare page ---------------------------------------------------------------------------------------
RUN_COLUMNS = ("name", "status", "model", "dataset", "target", "author", "tags", "source", "created")
PROVENANCE_COLUMNS = ("stopped", "parent", "hypothesis", "reason", "id")


def linked_view(params: dict[str, str], current: View | None) -> View | None:
    """The view to draw from the URL: when the page has none yet, or the URL carries one it has not drawn (a shared
    link, a link from the Train page). None keeps the current one (back from another page, whose navigation dropped
    the URL's view)."""
    url = {k: v for k, v in params.items() if k in comparison.URL_KEYS}
    if current is None or (url and url != comparison.view_to_params(current)):
        return comparison.view_from_params(url)
    return None


def focus_metric(rank_metric: str, keys: list[str]) -> str:
    """The metric the runs table leads with: the one ranked by, else val_loss, else the first one logged."""
    return rank_metric or ("val_loss" if "val_loss" in keys else (keys[0] if keys else ""))


def table_columns(present, keys: list[str], focus: str) -> list[str]:
    """The runs table's columns in reading order, of those present: who and what, the focus metric's final value,
    best and best step, every other metric's final value, then where the run came from and why it stopped."""
    ordered = [*RUN_COLUMNS, comparison.final_column(focus), comparison.best_column(focus),
               comparison.best_step_column(focus), *(comparison.final_column(k) for k in keys if k != focus),
               *PROVENANCE_COLUMNS]
    return [c for c in dict.fromkeys(ordered) if c in present]


def chart_metric(wanted: str, logged: list[str]) -> str:
    """The metric to chart: the one asked for if the runs logged it, else val_loss, else the first they logged."""
    if not logged or wanted in logged:
        return wanted
    return "val_loss" if "val_loss" in logged else logged[0]


def config_keys(runs: list[RunRecord]) -> list[str]:
    """The scalar config keys of these runs: what a chart can colour by."""
    return sorted({k for r in runs for k, v in r.config.items() if not isinstance(v, (dict, list))})


def note_time(at: float) -> str:
    """When a note was written, in UTC: a team spans time zones."""
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def imported_names(imported: list[dict]) -> tuple[list[str], int]:
    """The names of the runs an import added, and how many of its runs the store already had."""
    fresh = [r["name"] for r in imported if not r.get("already")]
    return fresh, len(imported) - len(fresh)
