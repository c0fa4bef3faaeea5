"""What the Compare page computes about runs, apart from the chart: the runs table (final and best of every metric),
its filters, what changed between runs and what it did, the shareable view, and the exports."""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from recipe_core import csv_export
from recipe_core.compare.chart import ChartSpec, comparison_figure
from recipe_core.compare.curves import direction
from recipe_core.errors import BadInput, first_line
from recipe_core.labelling import labels
from recipe_core.tracking.records import History, MetricSummary, RunRecord
from recipe_core.tracking.store import Store

# Keys of a run that are not in its config but are part of what was run.
RUN_KEYS = ("model", "dataset", "target")
BASE_COLUMNS = ("name", "id", "status", "model", "dataset", "target", "author", "tags", "source", "created",
                "parent", "hypothesis", "stopped", "reason")


# -- the runs table -----------------------------------------------------------------------------------
def runs_frame(runs: list[RunRecord], summaries: dict[str, dict[str, MetricSummary]],
               dataset_names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run: who, what and when, then for each logged metric its final value, its best (min or max by
    the metric's direction) and the step of the best, from the stored summaries."""
    names = {r.id: r.name for r in runs}
    dataset_names = dataset_names or {}
    rows = []
    for r in runs:
        row = {"name": r.name, "id": r.id, "status": r.status, "model": r.model,
               "dataset": dataset_names.get(r.dataset_id, r.dataset_id or ""), "target": r.target or "",
               "author": r.author, "tags": ", ".join(r.tags), "source": r.source,
               "created": r.created_at[:19].replace("T", " "),
               "parent": names.get(r.parent_id, r.parent_id or ""), "hypothesis": r.hypothesis,
               "stopped": _stopped(r), "reason": r.reason}  # why it failed, was cancelled or is lost
        for key, s in sorted(summaries.get(r.id, {}).items()):
            best, best_step = (s.min, s.min_step) if direction(key) == "min" else (s.max, s.max_step)
            row[final_column(key)] = s.last
            row[best_column(key)] = best
            row[best_step_column(key)] = best_step
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(BASE_COLUMNS) if not rows else None)
    return frame


def _stopped(run: RunRecord) -> str:
    """Where early stopping ended a run: "epoch 17 of 300, best 12" ('' without early stopping)."""
    m = run.metrics
    if m.get("stopped_epoch") is None:
        return ""
    return f"epoch {m['stopped_epoch']:g} of {m.get('max_epochs', 0):g}, best {m.get('best_epoch', 0):g}"


def final_column(key: str) -> str:
    return f"{key} · final"


def best_column(key: str) -> str:
    return f"{key} · best"


def best_step_column(key: str) -> str:
    return f"{key} · best step"


def metric_keys(frame: pd.DataFrame) -> list[str]:
    """The metrics logged by any run of the table, in column order."""
    suffix = " · final"
    return [c[: -len(suffix)] for c in frame.columns if c.endswith(suffix)]


@dataclass(frozen=True)
class RunFilter:
    """The table's filters; empty means no filter. Metric bounds apply to the metric's best value."""
    text: str = ""  # in name, id, hypothesis, tags, author, model, dataset, target or the config
    status: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    author: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # a run with any of these tags
    source: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    metric: str = ""  # bounds and top-N use this metric's best value
    lo: float | None = None
    hi: float | None = None
    top_n: int | None = None  # keep the N best runs by the metric


def filter_runs(frame: pd.DataFrame, f: RunFilter, configs: dict[str, dict] | None = None) -> pd.DataFrame:
    """The rows that pass every filter, best first by the filter's metric when it has one."""
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    for name in ("status", "model", "author", "source", "dataset", "target"):
        wanted = getattr(f, name)
        if wanted:
            keep &= frame[name].isin(wanted)
    if f.tags:
        keep &= frame["tags"].map(lambda t: bool(set(t.split(", ")) & set(f.tags)))
    if f.text.strip():
        needle = f.text.strip().lower()
        configs = configs or {}
        haystack = frame.apply(lambda r: " ".join(str(r[c]) for c in BASE_COLUMNS) + " "
                               + json.dumps(configs.get(r["id"], {}), default=str), axis=1).str.lower()
        keep &= haystack.str.contains(needle, regex=False)
    out = frame[keep]
    if f.metric:
        column = best_column(f.metric)
        if column not in out:
            raise BadInput(f"no run logged the metric {f.metric!r}")
        values = out[column]
        if f.lo is not None:
            out = out[values >= f.lo]
        if f.hi is not None:
            out = out[out[column] <= f.hi]
        out = out.sort_values(column, ascending=direction(f.metric) == "min", na_position="last", kind="stable")
        if f.top_n is not None:
            if f.top_n < 1:
                raise BadInput("top N must be at least 1")
            out = out[out[column].notna()].head(f.top_n)
    return out.reset_index(drop=True)


# -- what changed and what it did --------------------------------------------------------------------
def _flat(run: RunRecord, dataset_names: dict[str, str] | None = None) -> dict:
    """A run's config as flat keys (nested dicts joined with "."), plus what was run on."""
    out = {"model": run.model, "dataset": (dataset_names or {}).get(run.dataset_id, run.dataset_id),
           "target": run.target}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    walk("", run.config)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


MISSING = "—"  # a key one run has and the other has not


def config_diff(runs: list[RunRecord], dataset_names: dict[str, str] | None = None) -> pd.DataFrame:
    """The keys whose values differ between the runs: one row per key, one column per run (by name)."""
    flats = [_flat(r, dataset_names) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    rows = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flats]
        if any(not _same(values[0], v) for v in values[1:]):
            rows.append({"key": key, **{_column_name(r, runs): _show(v) for r, v in zip(runs, values)}})
    return pd.DataFrame(rows, columns=["key"] + [_column_name(r, runs) for r in runs])


def _column_name(run: RunRecord, runs: list[RunRecord]) -> str:
    """The run's name, with its id when two selected runs share a name."""
    twins = sum(1 for r in runs if r.name == run.name)
    return run.name if twins == 1 else f"{run.name} ({run.id[:6]})"


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True)
class Change:
    """A run against its parent: what changed and what it did."""
    run: RunRecord
    parent: RunRecord
    changed: dict  # key -> (parent's value, run's value)
    deltas: dict  # metric -> {"parent": best, "run": best, "delta": run - parent, "better": bool}
    hypothesis: str = ""

    @property
    def one_change(self) -> bool:
        return len(self.changed) == 1

    @property
    def flagged(self) -> str:
        """Why the comparison cannot say what did it ('' when it can)."""
        if not self.changed:
            return "nothing changed: the same config again (a rerun measures noise)"
        if len(self.changed) > 1:
            return f"{len(self.changed)} things changed at once: the metric delta cannot be pinned on one of them"
        return ""


def config_changes(before: dict, after: dict) -> dict:
    """{key: (before, after)} for every key whose value differs (MISSING where one side lacks the key)."""
    return {k: (before.get(k, MISSING), after.get(k, MISSING)) for k in dict.fromkeys([*before, *after])
            if not _same(before.get(k, MISSING), after.get(k, MISSING))}


def left_out(config: dict, id_like: list[str]) -> list[str]:
    """The columns a run's config leaves out: its own list, or by default (exclude None) the ID-like ones."""
    return list(id_like) if config.get("exclude") is None else list(config["exclude"])


def new_run_changes(parent_config: dict, config: dict, id_like: list[str]) -> dict:
    """What a new run from a parent changes, as config_changes: a parent that left out the ID-like columns by
    default left out exactly those, and the recipe's checks on again (a learning curve's runs had them off) are no
    change either."""
    return config_changes({**parent_config, "exclude": left_out(parent_config, id_like), "checks": True}, config)


def change_from_parent(run: RunRecord, parent: RunRecord, summaries: dict[str, dict[str, MetricSummary]],
                       dataset_names: dict[str, str] | None = None) -> Change:
    changed = config_changes(_flat(parent, dataset_names), _flat(run, dataset_names))
    deltas = {}
    mine, theirs = summaries.get(run.id, {}), summaries.get(parent.id, {})
    for key in sorted(set(mine) & set(theirs)):
        low = direction(key) == "min"
        new, old = (mine[key].min, theirs[key].min) if low else (mine[key].max, theirs[key].max)
        if new is None or old is None:
            continue
        deltas[key] = {"parent": old, "run": new, "delta": new - old, "better": new < old if low else new > old}
    return Change(run=run, parent=parent, changed=changed, deltas=deltas, hypothesis=run.hypothesis)


def deltas_frame(change: Change) -> pd.DataFrame:
    """The metric deltas of a change as a table, best values of parent and run."""
    return pd.DataFrame([{"metric": k, "parent (best)": d["parent"], "run (best)": d["run"], "delta": d["delta"],
                          "better": d["better"]} for k, d in change.deltas.items()])


def fields_for(x: str) -> tuple[str, ...]:
    """The stored fields a chart against this x axis reads (the store skips the others)."""
    return ("step", "value") + {"epoch": ("epoch",), "wall_time": ("wall_time",)}.get(x, ())


def x_extent(histories: dict[str, History], x: str) -> tuple[float, float] | None:
    """The range of an x axis over several histories (wall time: seconds since each run's first point)."""
    lo, hi = [], []
    for h in histories.values():
        if x == "wall_time":
            values = h.wall_time - h.wall_time.min() if len(h) else h.wall_time
        else:
            values = getattr(h, x)
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if len(values):
            lo.append(float(values.min()))
            hi.append(float(values.max()))
    return (min(lo), max(hi)) if lo else None


# -- the view in the URL ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """Everything a teammate needs to see the same chart; it round-trips through URL query parameters."""
    runs: tuple[str, ...] = ()
    spec: ChartSpec = field(default_factory=lambda: ChartSpec(metric="val_loss"))


_SPEC_TYPES = {f.name: f.type for f in fields(ChartSpec)}
_CHOICES = {"x": ("step", "epoch", "wall_time"), "smoothing": ("none", "ema", "window"), "band": ("minmax", "std")}
_URL_FIELDS = ("metric", "x", "log_x", "log_y", "smoothing", "ema_weight", "window", "color_by", "group_seeds",
               "band", "show_best")
MAX_URL_RUNS = 200
URL_KEYS = ("runs",) + _URL_FIELDS  # the query parameters the Compare page owns


def view_to_params(view: View) -> dict[str, str]:
    """Only what differs from the defaults, so a URL stays short."""
    default = ChartSpec(metric="")
    params = {"runs": ",".join(view.runs)} if view.runs else {}
    for name in _URL_FIELDS:
        value = getattr(view.spec, name)
        if name == "metric" or value != getattr(default, name):
            params[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return params


def view_from_params(params: dict[str, str], default_metric: str = "val_loss") -> View:
    """The view a URL describes. URL text is typed by anyone: a value that does not parse keeps its default."""
    values = {}
    base = ChartSpec(metric=default_metric)
    for name in _URL_FIELDS:
        raw = params.get(name)
        if raw is None:
            continue
        current = getattr(base, name)
        try:
            if isinstance(current, bool):
                value = {"1": True, "0": False, "true": True, "false": False}[raw.lower()]
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = str(raw)[:200]
        except (ValueError, KeyError):
            continue
        if name in _CHOICES and value not in _CHOICES[name]:
            continue
        if name == "ema_weight" and not 0 <= value < 1:
            continue
        if name == "window" and not 1 <= value <= 10_000:
            continue
        values[name] = value
    ids = tuple(dict.fromkeys(i for i in params.get("runs", "").split(",") if i.isalnum() and len(i) <= 32))
    return View(runs=ids[:MAX_URL_RUNS], spec=replace(base, **values))


# -- exports ---------------------------------------------------------------------------------------
def histories_frame(runs: list[RunRecord], histories_by_key: dict[str, dict[str, History]]) -> pd.DataFrame:
    """Every stored point of the given runs and metrics, long format: run, run_id, metric, step, value, epoch,
    wall_time. Nothing is downsampled."""
    names = {r.id: r.name for r in runs}
    parts = []
    for key, by_run in histories_by_key.items():
        for run_id, h in by_run.items():
            parts.append(pd.DataFrame({"run": names.get(run_id, run_id), "run_id": run_id, "metric": key,
                                       "step": h.step, "value": h.value, "epoch": h.epoch, "wall_time": h.wall_time}))
    if not parts:
        return pd.DataFrame(columns=["run", "run_id", "metric", "step", "value", "epoch", "wall_time"])
    return pd.concat(parts, ignore_index=True)


def load_histories(store: Store, run_ids: list[str], keys: list[str]) -> dict[str, dict[str, History]]:
    return {key: store.histories(run_ids, key) for key in keys}


def export_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return csv_export.frame_csv(frame)
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    raise BadInput(f"unknown export format {fmt!r}; choose csv or parquet")


def figure_bytes(fig, fmt: str) -> bytes:
    """The figure as a standalone file: HTML with plotly.js inlined (opens offline), PNG through kaleido (which
    drives the machine's Chromium), or plotly's JSON."""
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode()
    if fmt == "png":
        try:
            return fig.to_image(format="png", width=1200, height=600, scale=2)
        except Exception as e:  # kaleido without a browser: say what to install
            raise BadInput(f"PNG export needs Chromium (apt-get install -y chromium): {first_line(e)}")
    if fmt == "json":
        return fig.to_json().encode()
    raise BadInput(f"unknown figure format {fmt!r}; choose html, png or json")


POINTS_DRAWN = 200_000
MIN_POINTS_PER_RUN = 500


# -- the figure, from the store --------------------------------------------------------------------------
def selected_runs(store: Store, run_ids: list[str]) -> list[RunRecord]:
    """The runs, in the given order; an unknown id is a clear error (a stale URL names a deleted run)."""
    return [store.get_run(i) for i in dict.fromkeys(run_ids)]


def references(settings, store: Store, runs: list[RunRecord], metric: str) -> dict[str, float]:
    """Reference lines where they apply: when every run is on one dataset and target, that target's prior and
    input-independent baselines and the human baseline for the metric (see reports.references)."""
    from recipe_core.compare import reports  # reports reads this module's tables: imported here, not in a cycle
    targets = {(r.dataset_id, r.target) for r in runs}
    if len(targets) != 1 or None in next(iter(targets)):
        return {}
    dataset_id, target = next(iter(targets))
    human = None
    events = store.label_events(dataset_id, target)
    if events and metric in ("val_accuracy", "val_mae"):
        try:
            base = labels.baseline(settings, store, store.get_dataset(dataset_id), target)
            human = labels.summary(base, events)
        except BadInput:
            human = None
    return reports.references(store.list_runs(dataset_id, target), metric, human)


def figure(settings, store: Store, run_ids: list[str], spec: ChartSpec, histories: dict | None = None,
           reference_lines: dict[str, float] | None = None):
    """The comparer's figure of these runs: (figure, {"shown", "total"}, runs). The page passes the histories and
    reference lines it has cached; otherwise they are read here."""
    runs = selected_runs(store, run_ids)
    # The browser gets at most about POINTS_DRAWN points, however many runs: the figure stays under 5 MB.
    spec = replace(spec, max_points=max(MIN_POINTS_PER_RUN, min(spec.max_points, POINTS_DRAWN // max(len(runs), 1))))
    if histories is None:
        histories = store.histories([r.id for r in runs], spec.metric, fields_for(spec.x))
    if reference_lines is None:
        reference_lines = references(settings, store, runs, spec.metric)
    fig, counts = comparison_figure(spec, runs, histories, reference_lines)
    return fig, counts, runs
