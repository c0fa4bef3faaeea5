"""Random search over a run's settings, driven by Optuna (recipe step 4): random sampling by default, a grid for
comparison, TPE if asked; median pruning on each epoch's validation loss. The study lives in the store's own
database (Optuna's tables next to ours), so it survives restarts and the team sees it. Every trial is a run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import optuna
import pandas as pd

from recipe_core.config import Settings, TrainConfig
from recipe_core.data.records import DatasetRecord
from recipe_core.errors import BadInput, NotFound, Pruned
from recipe_core.search import executors
from recipe_core.tracking import access, lifecycle
from recipe_core.tracking.access import Identity
from recipe_core.tracking.heartbeat import Heartbeat
from recipe_core.tracking.records import new_id
from recipe_core.tracking.schema import DatabaseError
from recipe_core.tracking.store import Store
from recipe_core.training import jobs, runs

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is for Optuna's own CLI, not ours

SAMPLERS = ("random", "grid", "tpe")
KINDS = ("log", "float", "int", "choice")  # log-uniform float, uniform float, int range, categorical
MAX_TRIALS = 1000
TUNABLE = {  # the settings a search may vary, per model (others stay as in the base config)
    "mlp": ("lr", "width", "depth", "dropout", "weight_decay", "batch_size", "epochs", "patience"),
    "gbm": ("gbm_learning_rate", "gbm_max_leaf_nodes", "gbm_iterations"),
    "linear": ("l2",),
}
_INTS = {f.name for f in fields(TrainConfig) if f.type in ("int", "int | None")}


@dataclass(frozen=True)
class Param:
    """One dimension of a search space."""
    name: str  # a TrainConfig field, e.g. "lr"
    kind: str  # one of KINDS
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.kind == "log")


DEFAULT_SPACES = {
    "mlp": (Param("lr", "log", 1e-4, 1e-2), Param("width", "int", 16, 256), Param("depth", "int", 1, 4),
            Param("dropout", "float", 0.0, 0.5), Param("weight_decay", "log", 1e-6, 1e-2)),
    "gbm": (Param("gbm_learning_rate", "log", 0.01, 0.5), Param("gbm_max_leaf_nodes", "int", 4, 64)),
    "linear": (Param("l2", "log", 1e-4, 1e2),),
}


def check_space(model: str, space: tuple[Param, ...]) -> tuple[Param, ...]:
    """The space, validated: one line for every mistake a person can type into the editor."""
    if model not in TUNABLE:
        raise BadInput(f"{model!r} has nothing to tune; choose one of {', '.join(TUNABLE)}")
    if not space:
        raise BadInput("the search space is empty: add at least one setting")
    seen = set()
    for p in space:
        if p.name not in TUNABLE[model]:
            raise BadInput(f"{p.name!r} is not a setting of {model}; choose from {', '.join(TUNABLE[model])}")
        if p.name in seen:
            raise BadInput(f"{p.name!r} appears twice in the search space")
        seen.add(p.name)
        if p.kind not in KINDS:
            raise BadInput(f"{p.name}: kind must be one of {', '.join(KINDS)}, not {p.kind!r}")
        if p.kind == "choice":
            if not p.choices or len(set(p.choices)) != len(p.choices):
                raise BadInput(f"{p.name}: give distinct choices, e.g. 32, 64, 128")
            if p.name in _INTS and not all(isinstance(c, int) for c in p.choices):
                raise BadInput(f"{p.name}: choices must be whole numbers")
            continue
        if p.low is None or p.high is None or not (math.isfinite(p.low) and math.isfinite(p.high)) or p.low >= p.high:
            raise BadInput(f"{p.name}: needs a low below its high")
        if p.kind == "log" and p.low <= 0:
            raise BadInput(f"{p.name}: a log-uniform range must start above 0, not at {p.low:g}")
        if p.kind == "int" and p.name not in _INTS:
            raise BadInput(f"{p.name}: is a number with decimals; use log or float")
        if p.kind in ("log", "float") and p.name in _INTS:
            raise BadInput(f"{p.name}: is a whole number; use int or choice")
        if p.kind == "int" and (p.low != int(p.low) or p.high != int(p.high)):
            raise BadInput(f"{p.name}: an int range needs whole-number ends")
    return tuple(space)


def space_from_rows(model: str, rows: list[dict]) -> tuple[Param, ...]:
    """The page's editor rows ({name, kind, low, high, choices: "32, 64"}) as a checked space."""
    params = []
    for row in rows:
        name = str(row.get("name") or "").strip()
        if not name:
            continue
        kind = str(row.get("kind") or "").strip()
        choices = tuple(_number(c) for c in str(row.get("choices") or "").split(",") if c.strip())
        params.append(Param(name, kind, _number(row.get("low")), _number(row.get("high")),
                            choices if kind == "choice" else ()))
    return check_space(model, tuple(params))


def _number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise BadInput(f"{str(value)[:40]!r} is not a number") from None
    return int(number) if number.is_integer() and "." not in str(value) and "e" not in str(value).lower() else number


def grid(space: tuple[Param, ...], budget: int) -> dict[str, list]:
    """The grid a budget of trials buys: k values per numeric setting, k = budget ** (1 / settings), spaced as
    the setting's kind says (log settings geometrically); categorical settings keep all their choices."""
    numeric = [p for p in space if p.kind != "choice"]
    fixed = math.prod(len(p.choices) for p in space if p.kind == "choice")
    k = max(2, int(math.floor((max(budget, 1) / fixed) ** (1 / len(numeric)) + 1e-9))) if numeric else 0
    out = {}
    for p in space:
        if p.kind == "choice":
            out[p.name] = list(p.choices)
        elif p.kind == "log":
            out[p.name] = [float(v) for v in np.geomspace(p.low, p.high, k)]
        elif p.kind == "float":
            out[p.name] = [float(v) for v in np.linspace(p.low, p.high, k)]
        else:
            out[p.name] = sorted({int(round(v)) for v in np.linspace(p.low, p.high, k)})
    return out


def coverage(space: tuple[Param, ...], budget: int) -> pd.DataFrame:
    """How many distinct values of each setting a budget of trials tries: random search vs the grid."""
    cells = grid(space, budget)
    rows = []
    for p in space:
        if p.kind == "choice":
            random_distinct = min(budget, len(p.choices))
        elif p.kind == "int":
            random_distinct = min(budget, int(p.high - p.low + 1))
        else:
            random_distinct = budget  # continuous: every trial tries a new value
        rows.append({"setting": p.name, "random search": random_distinct, "grid": len(cells[p.name])})
    return pd.DataFrame(rows)


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's tables in the store's database; on SQLite with the store's patience for a busy database."""
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except DatabaseError:
            # On a fresh store, two processes (a page and a search it started) both create Optuna's tables and
            # stamp their version; the loser's insert fails, and its next attempt finds them made.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid, for ask-and-tell: its after_trial calls study.stop(), which only works inside optimize();
    run_study checks is_exhausted itself before each ask."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def _sampler(name: str, seed: int, space: tuple[Param, ...], budget: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "grid":
        return _Grid(grid(space, budget), seed=seed)
    raise BadInput(f"sampler must be one of {', '.join(SAMPLERS)}, not {name!r}")


# Judge no trial before 5 trials completed, nor before a quarter of its training (steps are percents of
# training, see fit.REPORT_PERCENT): early on, a slow learning rate looks bad and may still end best.
PRUNER = dict(n_startup_trials=5, n_warmup_steps=25)


class TrialReporter:
    """A trial's pruner as the worker that trains it receives it (pickled: names only, no connection), called
    report(percent, val_loss) by the run: it tells the study, and raises Pruned when the study's pruner says so.
    A top-level class of this module, so a Dask worker unpickles it by name."""

    def __init__(self, storage: str, study: str, trial_id: int):
        self.storage, self.study, self.trial_id = storage, study, trial_id
        self._trial: optuna.trial.Trial | None = None  # opened in the worker, on the first report

    def __getstate__(self) -> dict:
        return {"storage": self.storage, "study": self.study, "trial_id": self.trial_id, "_trial": None}

    def __call__(self, percent: int, val_loss: float) -> None:
        if self._trial is None:  # load() gives the study its pruner: Optuna does not store it
            self._trial = optuna.trial.Trial(load(self.storage, self.study), self.trial_id)
        self._trial.report(val_loss, percent)
        if self._trial.should_prune():
            raise Pruned(f"pruned at {percent}% of its training: validation loss {val_loss:.4g} is worse than the "
                         "median of earlier trials at that point")


def run_study(settings: Settings, store: Store, record: DatasetRecord, target: str, base: TrainConfig,
              space: tuple[Param, ...], n_trials: int, sampler: str = "random", seed: int = 0,
              executor: str = executors.LOCAL, workers: int = 2, author: str = "", study_name: str | None = None,
              parent_id: str | None = None, on_trial=None) -> dict:
    """Run n_trials trials (workers at a time) and return the study's summary (see summary()).

    Params are asked one trial at a time, in order, so with the random sampler the same seed gives the same
    sequence of params however the trials are spread over workers. on_trial(summary_of_trial) is called as each
    trial ends. A stop requested through request_stop() ends the study after the running trials.
    """
    if sampler not in SAMPLERS:
        raise BadInput(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    if not (isinstance(n_trials, int) and 1 <= n_trials <= MAX_TRIALS):
        raise BadInput(f"trials must be a whole number from 1 to {MAX_TRIALS}, not {n_trials!r}")
    space = check_space(base.model, space)
    base = runs.validate(replace(base, checks=False))  # the recipe's checks belong to runs a person looks at
    runs.preflight(settings, record, target, base)
    if executor in ("", executors.LOCAL):  # more local workers than training slots would only wait, queued
        workers = min(workers, settings.max_jobs)
    with executors.executor(executor, workers) as ex:  # first: an unreachable cluster leaves no empty study
        name = study_name or (f"{record.name}-{target}-{base.model}-{sampler}-s{seed}-"
                              f"{time.strftime('%Y%m%d-%H%M%S')}-{new_id()[:4]}")
        study = optuna.create_study(study_name=name, storage=optuna_storage(settings.store_url),
                                    direction="minimize", sampler=_sampler(sampler, seed, space, n_trials),
                                    pruner=optuna.pruners.MedianPruner(**PRUNER), load_if_exists=True)
        attrs = {"dataset_id": record.id, "target": target, "model": base.model, "sampler": sampler, "seed": seed,
                 "space": [asdict(p) for p in space], "base": runs.config_json(base), "n_trials": n_trials,
                 "executor": executor}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        _run_trials(study, ex, settings, store, record, target, base, space, n_trials, workers, author, parent_id,
                    on_trial)
    return summary(study)


def _run_trials(study, ex, settings, store, record, target, base, space, n_trials, workers, author, parent_id,
                on_trial) -> None:
    """Ask, start and tell trials, keeping `workers` of them running, until n_trials or a stop request. While a
    trial waits for a worker, this process keeps it alive (its worker beats for it once it runs)."""
    distributions = {p.name: p.distribution() for p in space}
    pending: dict = {}
    asked = 0
    with Heartbeat(store, statuses=("queued",)) as queued:
        while pending or (asked < n_trials and not stop_requested(study)):
            while asked < n_trials and len(pending) < max(1, workers) and not stop_requested(study):
                if _grid_exhausted(study):
                    asked = n_trials
                    break
                trial = study.ask(distributions)
                asked += 1
                run = runs.create(store, record, target, replace(base, **trial.params), author=author,
                                  parent_id=parent_id, hypothesis=f"trial {trial.number} of {study.study_name}")
                store.update_run(run.id, name=f"{study.study_name}#{trial.number}",
                                 tags=("study:" + study.study_name,))
                trial.set_user_attr("run_id", run.id)
                queued.add(run.id)
                report = TrialReporter(settings.store_url, study.study_name, trial._trial_id)
                pending[ex.submit(executors.run_queued, str(settings.home), settings.store_url, run.id, report)] = (
                    trial, run.id)
            if not pending:
                break
            for future in ex.wait_one(set(pending)):
                trial, run_id = pending.pop(future)
                _tell(study, store, trial, run_id, future)
                if on_trial is not None:
                    on_trial(_trial_row(study.trials[trial.number]))


def _grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def _tell(study: optuna.Study, store: Store, trial: optuna.trial.Trial, run_id: str, future) -> None:
    try:
        result = future.result()
    except Exception as e:  # the worker itself died (killed, out of memory): the run says what is known
        store.update_run(run_id, only_if_active=True, status="failed",
                         reason=f"the worker failed: {type(e).__name__}: {str(e)[:200]}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    trial.set_user_attr("worker", result["worker"])
    if result["status"] == "finished" and result["val_loss"] is not None and math.isfinite(result["val_loss"]):
        study.tell(trial, result["val_loss"])
    elif result["status"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def start_study(settings: Settings, record: DatasetRecord, target: str, model: str, space_rows: list[dict], *,
                n_trials: int, sampler: str, seed: int, executor: str, workers: int, epochs: int = 0,
                author: str = "") -> str:
    """Start a search in a background process (`python -m recipe_core tune`, which calls run_study): it goes on if
    the page is closed. executor is a name the operator listed, checked reachable first; a hopeless target is
    refused here in one line (runs.preflight), before any process. epochs (MLP only; 0: automatic). Its name."""
    address = executors.reachable(settings.executor_address(executor))
    name = f"{record.name}-{target}-{model}-{sampler}-s{seed}-{new_id()[:6]}"
    argv = ["tune", record.id, "--target", target, "--model", model, "--trials", str(n_trials), "--sampler", sampler,
            "--seed", str(seed), "--executor", address, "--workers", str(workers), "--study", name,
            "--author", author or "anonymous"]
    if model == "mlp" and epochs:
        argv += ["--epochs", str(epochs)]
    runs.preflight(settings, record, target, runs.config_from({"model": model}))
    # the space goes in a file of the job: a long JSON argument once broke the start ("File name too long")
    jobs.start_command(settings, argv, label=_LABEL + name, files={"--space-file": json.dumps(space_rows, default=str)})
    return name


_LABEL = "study:"  # a background command's label: the study it drives


def background_command(settings: Settings, study_name: str) -> jobs.Command | None:
    """The newest background command started for this study (by anyone), or None (e.g. one run from the CLI)."""
    return jobs.latest_command(settings, _LABEL + study_name)


def request_stop(store_url: str, study_name: str) -> None:
    """Ask a running study to start no more trials (the running ones finish)."""
    load(store_url, study_name).set_user_attr("stop_requested", True)


def cancel(store: Store, study_name: str, who: Identity | None = None) -> int:
    """Stop a study now: no more trials, and its queued and running trials cancelled (each stops within about a
    second). The number of runs asked to stop. With who: only the study's author or an admin may (audited)."""
    trials = [r for r in store.list_runs() if "study:" + study_name in r.tags]
    if who is not None:
        access.require_change(who, lifecycle.group_owner(trials), "stop this study")
    request_stop(store.url, study_name)
    return sum(bool(jobs.cancel(store, r.id, who)) for r in trials if r.active)


def stop_requested(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get("stop_requested"))


def load(store_url: str, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=optuna_storage(store_url),
                                 pruner=optuna.pruners.MedianPruner(**PRUNER))
    except KeyError:
        raise NotFound(f"no study named {study_name!r} in this store") from None


def studies(store_url: str, dataset_id: str | None = None, target: str | None = None,
            include_archived: bool = False) -> list[str]:
    """Names of the studies in the store, newest first (optionally of one dataset and target); never those in the
    trash, and archived ones (all their runs archived) only when asked for."""
    return _studies(store_url, dataset_id, target, _hidden_studies(Store(store_url), include_archived))


def _studies(store_url: str, dataset_id: str | None, target: str | None, hidden: set[str]) -> list[str]:
    found = optuna.get_all_study_summaries(storage=optuna_storage(store_url), include_best_trial=False)
    keep = [s for s in found if (dataset_id is None or s.user_attrs.get("dataset_id") == dataset_id)
            and (target is None or s.user_attrs.get("target") == target) and s.study_name not in hidden]
    return [s.study_name for s in sorted(keep, key=lambda s: s._study_id, reverse=True)]


def _hidden_studies(store: Store, include_archived: bool) -> set[str]:
    deleted = lifecycle.deleted_groups(store, "study")
    return deleted if include_archived else deleted | lifecycle.archived_groups(store, "study")


def known_studies(settings: Settings, store: Store, dataset_id: str, target: str,
                  include_archived: bool = False) -> list[str]:
    """The studies of a dataset and target, newest first, after the searches started in the background whose
    process has not made its study (yet, or ever: it failed), so that their state can be shown."""
    hidden = _hidden_studies(store, include_archived)  # reads every run: once per call
    names = _studies(store.url, dataset_id, target, hidden)
    started = [c.label.removeprefix(_LABEL) for c in jobs.list_commands(settings)
               if c.label.startswith(_LABEL) and c.argv[1:2] == (dataset_id,) and ("--target", target) in
               zip(c.argv, c.argv[1:], strict=False)]
    return list(dict.fromkeys([n for n in started if n not in names and n not in hidden] + names))


def purge_studies(store_url: str, names) -> int:
    """Drop these Optuna studies (after lifecycle.purge removed their runs); the number dropped."""
    storage, dropped = optuna_storage(store_url), 0
    for name in names:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:  # never made (its process failed first), or dropped already
            continue
        dropped += 1
    return dropped


def _trial_row(t: optuna.trial.FrozenTrial) -> dict:
    return {"number": t.number, "params": t.params, "value": t.value, "state": t.state.name.lower(),
            "run_id": t.user_attrs.get("run_id"), "worker": t.user_attrs.get("worker")}


def summary(study: optuna.Study) -> dict:
    """{"study", "trials": [{number, params, value, state, run_id, worker}], "best": {...} | None}."""
    trials = [_trial_row(t) for t in study.trials]
    done = [t for t in trials if t["state"] == "complete"]
    best = min(done, key=lambda t: t["value"]) if done else None
    return {"study": study.study_name, "trials": trials, "best": best}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, validation loss, each setting, run and worker."""
    rows = [{"trial": t["number"], "state": t["state"], "val_loss": t["value"], **t["params"],
             "run_id": t["run_id"], "worker": t["worker"]} for t in summary(study)["trials"]]
    return pd.DataFrame(rows)


def importance(study: optuna.Study) -> dict[str, float]:
    """How much of the validation loss's variation each setting explains (fANOVA, seeded); {} until enough
    trials completed."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3 or len({json.dumps(t.params, sort_keys=True) for t in complete}) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
