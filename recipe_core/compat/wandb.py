"""A training script written for Weights & Biases logs into Recipe by changing one import:

    from recipe_core.compat import wandb          # was: import wandb
    wandb.init(project="digits", name="mlp", config={"lr": 1e-3}, tags=["baseline"])
    wandb.define_metric("val/*", step_metric="epoch")
    wandb.log({"train/loss": 0.4})                # W&B's step: advances on each commit
    wandb.summary["best_acc"] = 0.97              # becomes the run's final metric best_acc
    wandb.finish()

What maps where:
- init(project, name, config, tags, notes, group, job_type): a run (source "wandb") with the tags as given plus
  "project:NAME", "group:NAME" and "job_type:NAME"; notes become the run's hypothesis (what the run should show).
- log(dict, step=None, commit=None): W&B's step semantics. An internal step starts at 0; a commit writes the row
  at that step and advances it; commit=False accumulates into the same row; step=S above the current step first
  commits the pending row, then moves to S (and, as in W&B, does not commit unless commit=True); a step below the
  current one is ignored with a warning, as W&B does. Nested dicts are flattened "a/b". Numbers only.
- define_metric(name, step_metric=X): the points of name (a glob such as "val/*") are stored at W&B's step in
  the step column, and at X's value in the **epoch column**, so Compare's "epoch" x axis is the defined x axis.
  X's value is the one in the same row, else its last logged value (W&B's step_sync).
- config: attribute and item access, update(); every change is saved as the run's config.
- summary: the last logged value of each key, overridden by what the script sets; at finish these are the
  run's final metrics.
- watch(model, log="gradients", log_freq=1000): histograms every log_freq training batches (ScriptRun.watch).
- alert(title, text, level): a note on the run.  finish(exit_code): non-zero ends the run failed.

Anything else (wandb.Image, wandb.Table, wandb.save, wandb.sweep, init(resume=...), ...) raises one line
(Unsupported, a BadInput): a script never loses data silently. `wandb.run.recipe` is the Recipe run underneath
(e.g. `wandb.run.recipe.check(model, batch=(x, y))`).
"""
from __future__ import annotations

import argparse
import fnmatch
import warnings
from collections.abc import Mapping
from enum import Enum
from numbers import Integral

from recipe_core.errors import BadInput
from recipe_core.jsonsafe import plain
from recipe_core.tracking import api
from recipe_core.training.script_run import ScriptRun

run: "Run | None" = None  # the active run, as wandb.run (None before init and after finish)
PREFIX = "recipe_core.compat.wandb does not support"
INIT_ARGS = ("project", "name", "config", "tags", "notes", "group", "job_type", "mode", "reinit", "allow_val_change")
WATCH_LOG = {"gradients": "gradients", "parameters": "parameters", "all": "gradients,parameters",
             "activations": "activations"}  # W&B's "all" is gradients and parameters; activations is Recipe's own


class Unsupported(BadInput):
    """A W&B function or argument this shim does not carry over."""


def _unsupported(what: str, why: str = "it would be dropped silently") -> Unsupported:
    return Unsupported(f"{PREFIX} {what}: {why}")


class AlertLevel(str, Enum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


# -- the module's functions, on the active run ------------------------------------------------------------------
def init(project: str | None = None, name: str | None = None, config=None, tags=None, notes: str | None = None,
         group: str | None = None, job_type: str | None = None, mode: str | None = None, reinit=None,
         allow_val_change: bool | None = None, **others) -> "Run":
    """Start a run in the store (RECIPE_STORE_URL, else the local one); a run already active is finished first
    (W&B's reinit="finish_previous")."""
    global run
    if others:
        key = sorted(others)[0]
        raise _unsupported(f"wandb.init({key}=...)", f"it takes {', '.join(INIT_ARGS)}")
    if mode not in (None, "online", "offline"):
        raise _unsupported(f"wandb.init(mode={str(mode)[:20]!r})", "every run is logged into the Recipe store")
    values = _config_values(config)
    all_tags = [tags] if isinstance(tags, str) else [str(t) for t in (tags or ())]
    all_tags += [f"{label}:{value}" for label, value in (("project", project), ("group", group),
                                                          ("job_type", job_type)) if value]
    if run is not None:
        run.finish()
    recipe = api.start_run(name=name, config=values, tags=all_tags, hypothesis=notes, source="wandb",
                           run_class=ScriptRun)
    run = Run(recipe, values, project=project, group=group, notes=notes, tags=tuple(all_tags),
              allow_val_change=bool(allow_val_change))
    return run


def log(data, step: int | None = None, commit: bool | None = None, sync=None) -> None:
    _active("wandb.log").log(data, step=step, commit=commit, sync=sync)


def define_metric(name: str, step_metric: str | None = None, **others) -> None:
    _active("wandb.define_metric").define_metric(name, step_metric=step_metric, **others)


def watch(models, criterion=None, log: str | None = "gradients", log_freq: int = 1000, idx=None,
          log_graph: bool = False) -> None:
    _active("wandb.watch").watch(models, criterion=criterion, log=log, log_freq=log_freq, idx=idx,
                                 log_graph=log_graph)


def alert(title: str, text: str, level=None, wait_duration=None) -> None:
    _active("wandb.alert").alert(title, text, level=level, wait_duration=wait_duration)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def login(*_args, **_kwargs) -> bool:
    """Nothing to log in to: runs go to the Recipe store (RECIPE_STORE_URL, else the local one)."""
    return True


def __getattr__(name: str):
    if name.startswith("__") and name.endswith("__"):  # imports, pickling, inspection look these up
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in ("config", "summary"):
        return getattr(_active(f"wandb.{name}"), name)
    raise _unsupported(f"wandb.{name}", "it logs numbers (log, summary), the config, watch histograms and alerts")


def _active(what: str) -> "Run":
    if run is None:
        raise BadInput(f"{what} was called before wandb.init() (or after wandb.finish()); call wandb.init() first")
    return run


# -- the run ----------------------------------------------------------------------------------------------------
class Run:
    """What wandb.init returns (and wandb.run holds)."""

    def __init__(self, recipe: ScriptRun, config: dict, *, project, group, notes, tags, allow_val_change):
        self.recipe = recipe
        self.project, self.group, self.notes, self.tags = project, group, notes, tags
        self.config = Config(self, config, allow_val_change)
        self.summary = Summary()
        self._step = 0
        self._row: dict[str, float] = {}
        self._x_axes: dict[str, str] = {}  # name or glob -> its step metric
        self._last: dict[str, float] = {}  # last committed value of each key (for step_sync)
        self._ended = False
        recipe.before_finish.append(self._before_finish)

    @property
    def id(self) -> str:
        return self.recipe.run_id

    @property
    def name(self) -> str:
        return self.recipe.record.name

    @property
    def step(self) -> int:
        return self._step

    def log(self, data, step: int | None = None, commit: bool | None = None, sync=None) -> None:
        self._check_open("log")
        if sync is not None:
            raise _unsupported("wandb.log(sync=...)", "it is deprecated in wandb; leave it out")
        if not isinstance(data, Mapping):
            raise BadInput(f"wandb.log takes a dict of numbers, not {type(data).__name__}")
        flat = flatten(data, "wandb.log")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, Integral) or step < 0:
                raise BadInput(f"wandb.log: step must be a whole number >= 0, got {str(step)[:40]!r}")
            if step < self._step:
                warnings.warn(f"wandb.log: step {step} is below the current step {self._step}; steps must increase, "
                              "so this data is ignored (as in wandb)", stacklevel=3)
                return
            if step > self._step:
                self._commit()
                self._step = int(step)
        self._row.update(flat)
        if commit or (commit is None and step is None):
            self._commit()

    def define_metric(self, name: str, step_metric: str | None = None, step_sync: bool | None = None,
                      **others) -> None:
        self._check_open("define_metric")
        if others:
            raise _unsupported(f"define_metric({sorted(others)[0]}=...)", "it takes name, step_metric, step_sync")
        if step_sync is False:
            raise _unsupported("define_metric(step_sync=False)", "the step metric's last value is always used")
        if not isinstance(name, str) or not name:
            raise BadInput("define_metric needs a metric name (or a glob such as 'val/*')")
        if step_metric is not None:
            self._x_axes[name] = str(step_metric)

    def watch(self, models, criterion=None, log: str | None = "gradients", log_freq: int = 1000, idx=None,
              log_graph: bool = False) -> None:
        self._check_open("watch")
        if criterion is not None or idx is not None or log_graph:
            what = "criterion" if criterion is not None else "idx" if idx is not None else "log_graph"
            raise _unsupported(f"wandb.watch({what}=...)", "it takes the models, log and log_freq")
        if log is None:
            return  # wandb itself logs nothing with log=None and no graph
        if log not in WATCH_LOG:
            raise BadInput(f"wandb.watch: log must be 'gradients', 'parameters' or 'all', not {str(log)[:40]!r}")
        for model in models if isinstance(models, (list, tuple)) else [models]:
            self.recipe.watch(model, every=log_freq, log=WATCH_LOG[log])

    def alert(self, title: str, text: str, level=None, wait_duration=None) -> None:
        """A note on the run (wait_duration, W&B's rate limit on notifications, has nothing to limit here)."""
        self._check_open("alert")
        level = getattr(level, "value", level) or "INFO"
        if str(level) not in {a.value for a in AlertLevel}:
            raise BadInput(f"alert level must be INFO, WARN or ERROR, not {str(level)[:20]!r}")
        self.recipe.note(f"[{level}] {title}: {text}")

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        global run
        if run is self:
            run = None
        if self._ended:
            return
        if exit_code:
            self.recipe.finish("failed", f"exit code {exit_code}")
        else:
            self.recipe.finish()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, error, _tb) -> bool:
        global run
        if run is self:
            run = None
        self.recipe.__exit__(kind, error, _tb)  # failed with the error, cancelled on Ctrl-C
        return False

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise _unsupported(f"run.{name}", "the run has id, name, config, summary, log, define_metric, watch, "
                                          "alert and finish")

    # -- inside ---------------------------------------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._ended or self.recipe.ended:
            raise BadInput(f"wandb.{what} on run {self.id}, which has finished; call wandb.init() for a new run")

    def _x_axis(self, key: str) -> str | None:
        if key in self._x_axes:
            return self._x_axes[key]
        return next((x for glob, x in self._x_axes.items() if fnmatch.fnmatchcase(key, glob)), None)

    def _commit(self) -> None:
        """The pending row, at the current step (each key with a step metric at that metric's value, in the epoch
        column); then the step advances."""
        if not self._row:
            return
        row, self._row = self._row, {}
        epochs = {}
        for key in row:
            axis = self._x_axis(key)
            if axis is not None and axis != key:
                x = row.get(axis, self._last.get(axis))
                if x is not None:
                    epochs[key] = x
        self.recipe.log_values(self._step, row, epochs)
        self._last.update(row)
        self.summary._logged.update(row)
        self._step += 1

    def _before_finish(self) -> None:
        """Run by the Recipe run's finish, however it ends (finish(), a with block, the script's exit)."""
        self._ended = True
        self._commit()
        self.recipe.final_metrics = dict(self.summary._set)

    def _save_config(self, values: dict) -> None:
        self.recipe.store.update_run(self.id, config=plain(values))


class Config:
    """wandb.config: attribute and item access; a change is saved as the run's config at once."""

    def __init__(self, owner: Run, values: dict, allow_val_change: bool):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_allow_change", allow_val_change)

    def update(self, values=None, allow_val_change: bool | None = None) -> None:
        changed = dict(self._values)
        for key, value in _config_values(values).items():
            if key in changed and changed[key] != value and not (allow_val_change or self._allow_change):
                raise BadInput(f"config key {key!r} is already {str(changed[key])[:40]!r}; pass allow_val_change=True "
                               "to change it (as in wandb)")
            changed[key] = value
        object.__setattr__(self, "_values", changed)
        self._owner._save_config(changed)

    def setdefaults(self, values) -> None:
        self.update({k: v for k, v in _config_values(values).items() if k not in self._values})

    def as_dict(self) -> dict:
        return dict(self._values)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def values(self):
        return self._values.values()

    def get(self, key, default=None):
        return self._values.get(key, default)

    def __getitem__(self, key):
        return self._values[key]

    def __setitem__(self, key, value) -> None:
        self.update({key: value})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"wandb.config has no key {name!r}") from None

    def __setattr__(self, name, value) -> None:
        self.update({name: value})

    def __contains__(self, key) -> bool:
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"wandb.config({self._values!r})"


class Summary(Mapping):
    """wandb.summary: the last logged value of each key, overridden by what is set; numbers only."""

    def __init__(self):
        object.__setattr__(self, "_logged", {})
        object.__setattr__(self, "_set", {})

    def __getitem__(self, key):
        return self._set[key] if key in self._set else self._logged[key]

    def __iter__(self):
        return iter({**self._logged, **self._set})

    def __len__(self) -> int:
        return len({**self._logged, **self._set})

    def __setitem__(self, key, value) -> None:
        self.update({key: value})

    def __delitem__(self, key) -> None:
        if key not in self._set:
            raise _unsupported(f"deleting the logged key {key!r} from the summary", "its last value stays the "
                               "run's final metric")
        del self._set[key]

    def update(self, values: Mapping) -> None:
        if not isinstance(values, Mapping):
            raise BadInput(f"summary.update takes a dict of numbers, not {type(values).__name__}")
        self._set.update(flatten(values, "wandb.summary"))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"wandb.summary has no key {name!r}") from None

    def __setattr__(self, name, value) -> None:
        self[name] = value

    def __repr__(self) -> str:
        return f"wandb.summary({dict(self)!r})"


# -- values -----------------------------------------------------------------------------------------------------
def flatten(data: Mapping, what: str, prefix: str = "") -> dict[str, float]:
    """{"a": {"b": 1}} -> {"a/b": 1.0}; anything but a number (or a dict of them) is refused in one line."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, what, f"{name}/"))
        else:
            out[name] = number(value, name, what)
    return out


def number(value, name: str, what: str) -> float:
    kind = type(value).__name__
    if isinstance(value, (str, bytes)) or value is None:
        raise BadInput(f"{what}: {name!r} is a {kind}; recipe_core.compat.wandb logs numbers only")
    try:
        return float(value)  # Python, numpy and one-element torch numbers
    except (TypeError, ValueError, RuntimeError):
        raise _unsupported(f"logging a {kind} ({name!r} in {what})", "it logs numbers only") from None


def _config_values(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, argparse.Namespace):
        return dict(vars(config))
    if isinstance(config, (Config, Mapping)):
        return dict(config.items())
    raise _unsupported(f"a config given as {type(config).__name__}", "give a dict or an argparse.Namespace")
