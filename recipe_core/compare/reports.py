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


# the batch as the net sees it first: NaN inputs there explain every red below it
CHECK_ORDER = ("just_before_the_net", "loss_at_init", "gradients", "input_independent", "overfit_one_batch",
               "batch_independence", "causality", "capacity", "reproducible", "lr_range")


def checks_summary(checks: dict) -> str:
    """'4/4 passed' or '1 failed of 5' over the checks that apply."""
    applied = [c.get("ok") for c in checks.values() if c.get("ok") is not None]
    failed = sum(1 for ok in applied if not ok)
    if not applied:
        return "–"
    return f"{failed} failed of {len(applied)}" if failed else f"{len(applied)}/{len(applied)} passed"


def red_checks(checks: dict) -> list[str]:
    """The names of a run's checks that failed (ok False), in the recipe's order."""
    return [name for name, c in ordered_checks(checks or {}) if isinstance(c, dict) and c.get("ok") is False]


def checks_badge(checks: dict) -> str:
    """A run's checks at a glance, for a table cell: 'FAIL gradients, causality', '8/8 passed', or '–'."""
    red = red_checks(checks)
    return f"FAIL {', '.join(red)}" if red else checks_summary(checks or {})


def red_check_names(runs: list[RunRecord]) -> list[str]:
    """Every check that is red in at least one of these runs, in the recipe's order: what a filter offers."""
    names = {name for r in runs for name in red_checks(r.checks)}
    return [n for n in CHECK_ORDER if n in names] + sorted(names - set(CHECK_ORDER))


def keep_red(frame: pd.DataFrame, checks_by_id: dict[str, dict], names) -> pd.DataFrame:
    """The rows (with an "id" column) whose run has any of these checks red; every row when no name is given."""
    names = set(names)
    if not names or frame.empty:
        return frame
    keep = frame["id"].map(lambda i: bool(names & set(red_checks(checks_by_id.get(i, {})))))
    return frame[keep.astype(bool)].reset_index(drop=True)


# The kinds a user's own model gets (rc.check_model, `check`, run.check), whose numbers are drawn in detail.
DETAIL_KINDS = ("gradients", "batch_independence", "causality", "lr_range", "just_before_the_net")


def has_check_details(run: RunRecord) -> bool:
    """A run whose checks have more to show than their badges: a `check` run, or one with the own-model kinds."""
    return run.source == "check" or any(k in (run.checks or {}) for k in DETAIL_KINDS)


def leaderboard(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run, best validation loss first; unfinished runs last."""
    rows = []
    for r in runs:
        rows.append({"run": r.name, "id": r.id, "model": r.model, "seed": r.seed, "status": r.status,
                     "checks": checks_badge(r.checks), **{k: v for k, v in r.metrics.items()},
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
CHECKS_COLUMN = "checks"  # with_checks' badges, after the status when the view added them
PROVENANCE_COLUMNS = ("stopped", "parent", "hypothesis", "reason", "id")


def with_checks(frame: pd.DataFrame, runs: list[RunRecord]) -> pd.DataFrame:
    """The runs table with a "checks" column: each run's checks_badge."""
    if frame.empty:
        return frame.assign(**{CHECKS_COLUMN: pd.Series(dtype=str)})
    badges = {r.id: checks_badge(r.checks) for r in runs}
    return frame.assign(**{CHECKS_COLUMN: frame["id"].map(badges).fillna("–")})


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
    """The runs table's columns in reading order, of those present: who and what (the checks' badges after the
    status), the focus metric's final value, best and best step, every other metric's final value, then where the
    run came from and why it stopped."""
    ordered = [*RUN_COLUMNS[:2], CHECKS_COLUMN, *RUN_COLUMNS[2:], comparison.final_column(focus),
               comparison.best_column(focus), comparison.best_step_column(focus),
               *(comparison.final_column(k) for k in keys if k != focus), *PROVENANCE_COLUMNS]
    return [c for c in dict.fromkeys(ordered) if c in present]


def chart_metric(wanted: str, logged: list[str], points: dict[str, int] | None = None) -> str:
    """The metric to chart: the one asked for if the runs logged it, else val_loss, else the one with the most
    points (a check run: its overfit curve, not a one-point metric), else the first they logged."""
    if not logged or wanted in logged:
        return wanted
    if "val_loss" in logged:
        return "val_loss"
    points = points or {}
    return max(logged, key=lambda k: points.get(k, 0))  # max keeps the first of equals


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
