"""The recipe's checks on a user's own model, recorded as a run the team sees beside the baselines.

    report = check_model(make_model, x, y, loss="cross_entropy")   # a run in the store, source "check"
    print(report)                                                  # one line per check: PASS, FAIL or n/a

The checks themselves are model_checks.run_all (pure torch, no store); this module names the model, keeps the
run's state honest (a model that raises ends its run failed, with the one line, never left running), stores the
verdicts, the artifacts and the curves, and loads what the CLI is given: a factory from a .py file and the arrays
from an .npz. torch is imported only when the checks run, so script_run (and rc) can import attach cheaply.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import zipfile
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from recipe_core import units
from recipe_core.config import load_settings
from recipe_core.errors import BadInput, RecipeError, first_line
from recipe_core.jsonsafe import plain
from recipe_core.tracking import api
from recipe_core.training import verdicts
from recipe_core.training.verdicts import Verdict

# What run_all may return (causality with causal=True, or as a hint for token sequences): the names skip may take
CHECKS = ("just_before_the_net", "loss_at_init", "gradients", "batch_independence", "causality", "overfit_one_batch",
          "input_independent", "lr_range")
MIN_EXAMPLES = 2  # a batch of one has no other example to mix with, and nothing is held out
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats: what becomes a tensor the checks can use
_LOADED = 0  # how many user files load_factory imported: each gets a module name of its own


@dataclass(frozen=True)
class CheckReport:
    """What check_model found: the run it recorded (None when not recorded) and each check's verdict."""
    run_id: str | None
    checks: dict[str, Verdict] = field(default_factory=dict)

    @property
    def red(self) -> list[str]:
        return [name for name, v in self.checks.items() if v.ok is False]

    @property
    def ok(self) -> bool:
        return not self.red

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "checks": plain(verdicts.to_json(self.checks))}

    def __str__(self) -> str:
        return "\n".join(f"{_mark(v.ok)} {name}: {v.message}" for name, v in self.checks.items())


def _mark(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a "}[ok]


# -- the checks, recorded ---------------------------------------------------------------------------------------
def check_model(factory: Callable, x, y, loss: str | None = None, causal: bool = False, *, name: str | None = None,
                tolerance: float | None = None, budget=None, record: bool = True, store_url: str | None = None,
                dataset: str | None = None, target: str | None = None, tags=(), config: dict | None = None,
                seed: int = 0) -> CheckReport:
    """Run every check of the recipe on the model factory() builds, with (x, y) as the data.

    factory: a zero-argument callable returning a fresh torch.nn.Module (called again for the twins). x, y: numpy
    arrays or tensors, examples first; causal: x holds token ids [N, T] and the model returns [N, T, ...]. loss:
    one of model_checks.LOSSES (default: cross_entropy for integer y, mse for float y). record: a run in the store
    (RECIPE_STORE_URL, else the local one, or store_url) holding the verdicts, artifacts and curves.
    A model or factory that raises is one line (BadInput); when recorded, its run ends failed with that line.
    """
    from recipe_core.training import model_checks  # torch, only now

    settings = load_settings()
    tolerance = _tolerance(settings.check_tolerance if tolerance is None else tolerance)
    if not callable(factory):
        raise BadInput(f"the factory must be a callable that returns a fresh model, not {type(factory).__name__}")
    x_shape, y_shape = _shape(x), _shape(y)
    _check_shapes(x_shape, y_shape, causal)
    if loss is not None and loss not in model_checks.LOSSES:
        raise BadInput(f"unknown loss {str(loss)[:40]!r}; choose one of {', '.join(model_checks.LOSSES)}")
    budget = budget or model_checks.Budget()
    if not record:
        found, _ = run_checks(factory, x, y, loss, causal, tolerance, budget, seed)
        return CheckReport(None, found)

    # what can be refused before any check runs is refused before the run exists: no run for a typo in the data
    prepared = _guarded(lambda: model_checks.prepare(factory, x, y, loss, causal, budget.rows, seed))
    loss_name = prepared.loss
    run_config = {**(config or {}), "factory": _callable_name(factory), "loss": loss_name, "causal": bool(causal),
                  "examples": x_shape[0], "x_shape": list(x_shape), "x_dtype": _dtype_name(x),
                  "y_shape": list(y_shape), "y_dtype": _dtype_name(y), "tolerance": tolerance, "seed": seed,
                  "budget": plain(asdict(budget)) if is_dataclass(budget) else str(budget)}
    run = api.start_run(name=name or f"check {_callable_name(factory)}", config=run_config, tags=tags,
                        dataset=dataset, target=target, model="custom", store_url=store_url, source="check")
    try:
        run.store.update_run(run.run_id, model=prepared.model_name)
        found, artifacts = run_checks(factory, x, y, loss_name, causal, tolerance, budget, seed)
        attach(run, found, artifacts)
        log_curves(run, found)
    except KeyboardInterrupt:
        run.finish("cancelled", "interrupted (Ctrl-C)")
        raise
    except BaseException as e:  # noqa: BLE001 - whatever the user's model raised: the run ends failed, one line
        reason = str(e) if isinstance(e, RecipeError) else f"{type(e).__name__}: {first_line(e, 300)}"
        run.finish("failed", reason)
        raise BadInput(reason) from None
    run.finish()
    return CheckReport(run.run_id, found)


def run_checks(factory: Callable, x, y, loss: str | None = None, causal: bool = False,
               tolerance: float | None = None, budget=None, seed: int = 0):
    """model_checks.run_all, unrecorded, with the tolerance from the settings when not given (checked) and anything
    foreign the user's code raised as one line: (verdicts, artifacts). check_model and a script's run.check."""
    from recipe_core.training import model_checks  # torch, only now

    tolerance = _tolerance(load_settings().check_tolerance if tolerance is None else tolerance)
    return _guarded(lambda: model_checks.run_all(factory, x, y, loss=loss, causal=causal, tolerance=tolerance,
                                                 budget=budget or model_checks.Budget(), seed=seed))


def _guarded(call: Callable):
    """Anything foreign the user's code raised, as one line."""
    try:
        return call()
    except (RecipeError, KeyboardInterrupt):
        raise
    except BaseException as e:  # noqa: BLE001 - a user's model; SystemExit included (a model calling exit())
        raise BadInput(f"the model raised {type(e).__name__}: {first_line(e, 300)}") from None


def limit_threads(threads: int) -> None:
    """The CLI's check, a process of its own: as many torch threads as a training job (RECIPE_TRAIN_THREADS), so
    checks run beside jobs and each other without oversubscribing the cores (3 at once on 2 cores: 45 s each with
    torch's default, 16 s with one thread)."""
    import torch

    torch.set_num_threads(threads)


def attach(run, found: dict[str, Verdict], artifacts: dict | None = None) -> None:
    """Store the checks' verdicts (merged with any the run already has) and their artifacts on an existing run."""
    store, run_id = run.store, run.run_id
    checks = {**(store.get_run(run_id).checks or {}), **plain(verdicts.to_json(found))}
    store.update_run(run_id, checks=checks)
    for artifact, value in (artifacts or {}).items():
        store.put_json(run_id, artifact, plain(value))


def log_curves(run, found: dict[str, Verdict]) -> None:
    """The checks' numbers as the run's metrics, and the overfit curve as a history Compare can chart (and put
    beside other runs'). A check run's final metrics are the last point of each (Run.finish)."""
    init = found.get("loss_at_init")
    if init is not None and getattr(init, "measured", None) is not None:
        _log(run, 0, loss_at_init=init.measured, loss_at_init_expected=init.expected)
    lr = found.get("lr_range")  # its curve is against the LR, drawn with its details; a step axis would mislead
    if lr is not None and getattr(lr, "suggested", None) is not None:
        _log(run, 0, suggested_lr=lr.suggested)
    overfit = found.get("overfit_one_batch")
    if overfit is not None:
        for step, value in getattr(overfit, "curve", []) or []:
            _log(run, int(step), overfit_loss=value)
    twin = found.get("input_independent")
    if twin is not None and getattr(twin, "real_val_loss", None) is not None:
        _log(run, 0, real_val_loss=twin.real_val_loss, twin_val_loss=twin.twin_val_loss)
        if twin.twin_val_loss is not None:
            _log(run, 0, twin_gap=twin.twin_val_loss - twin.real_val_loss)


def _log(run, step: int, **values) -> None:
    """Only finite numbers: a diverging LR range ends in inf, which is a curve's end, not a point."""
    finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    if finite:
        run.log(step, **finite)


def _tolerance(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"the tolerance must be a number (a fraction, e.g. 0.1), not {str(value)[:40]!r}") from None
    if not 0 < value < 100:
        raise BadInput(f"the tolerance must be a fraction above 0 (e.g. 0.1 for 10%), not {value!r}")
    return value


def _callable_name(factory: Callable) -> str:
    return str(getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
               or type(factory).__name__)[:200]


def _shape(a) -> tuple[int, ...]:
    return tuple(int(n) for n in (a.shape if hasattr(a, "shape") else np.shape(a)))


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _dtype_name(a) -> str:
    return str(getattr(a, "dtype", type(a).__name__)).removeprefix("torch.")


def _check_shapes(x_shape: tuple, y_shape: tuple, causal: bool) -> None:
    """The shapes every check needs, said before any model runs."""
    if len(x_shape) < 1 or len(y_shape) < 1:
        raise BadInput("x and y must hold the examples along their first dimension (got a single value)")
    if x_shape[0] != y_shape[0]:
        raise BadInput(f"x and y must hold the same number of examples (first dimension): x has {x_shape[0]:,}, "
                       f"y has {y_shape[0]:,}")
    if x_shape[0] < MIN_EXAMPLES:
        raise BadInput(f"the checks need at least {MIN_EXAMPLES} examples, got {x_shape[0]}")
    if causal and (len(x_shape) != 2 or tuple(y_shape[:2]) != tuple(x_shape)):
        raise BadInput(f"--causal needs token ids x [N, T] and targets y [N, T] (got x {list(x_shape)}, "
                       f"y {list(y_shape)})")


# -- what the CLI is given --------------------------------------------------------------------------------------
def load_factory(spec: str) -> Callable:
    """"path/to/file.py:NAME" -> the callable NAME of that file, imported with its folder on sys.path (so its own
    local imports work). Everything that can go wrong is one line naming the file."""
    path_text, sep, name = str(spec).rpartition(":")
    if not sep or not path_text or not name:
        raise BadInput(f"give the factory as FILE.py:NAME (e.g. model.py:make_model), not {str(spec)[:200]!r}")
    path = Path(path_text).expanduser()
    if path.suffix != ".py":
        raise BadInput(f"the factory's file must be a .py file, not {path.name[:200]!r}")
    if not path.is_file():
        raise BadInput(f"no such file: {path_text[:200]}")
    if not name.isidentifier():
        raise BadInput(f"{name[:80]!r} is not a Python name; give FILE.py:NAME with NAME the factory function")
    module = _import_file(path.resolve())
    if not hasattr(module, name):
        raise BadInput(f"{path.name} defines no {name!r}")
    factory = getattr(module, name)
    if not callable(factory):
        raise BadInput(f"{path.name}:{name} is a {type(factory).__name__}, not a callable that returns a model")
    return factory


def _import_file(path: Path):
    global _LOADED
    _LOADED += 1
    module_name = f"recipe_user_{_LOADED}_{path.stem}" if path.stem.isidentifier() else f"recipe_user_{_LOADED}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"cannot import {path.name} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module's classes up here
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - the user's file: a SyntaxError, an ImportError, exit() ...
        sys.modules.pop(module_name, None)
        raise BadInput(f"importing {path.name} raised {type(e).__name__}: {first_line(e, 300)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def load_arrays(path_text: str, causal: bool = False, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an .npz file (numpy.savez), read without pickle; their sizes are read from the headers first, so a
    small compressed file that would expand past max_bytes (default RECIPE_MAX_UPLOAD_MB) is refused unread."""
    path = Path(str(path_text)).expanduser()
    if not path.is_file():
        raise BadInput(f"no such file: {str(path_text)[:200]}")
    limit = max_bytes or load_settings().max_upload_bytes
    headers = _npz_headers(path)
    for key in ("x", "y"):
        if key not in headers:
            raise BadInput(f"{path.name} holds no array {key!r} (it holds {', '.join(sorted(headers)) or 'none'}); "
                           "save it with numpy.savez(path, x=..., y=...)")
        shape, dtype = headers[key]
        if dtype.hasobject:
            raise BadInput(f"{path.name}: {key} holds Python objects (pickled), which are not read; save numbers")
        if dtype.kind not in NUMERIC_KINDS:
            raise BadInput(f"{path.name}: {key} must hold numbers, not {dtype} values")
    size = sum(int(np.prod(headers[k][0], dtype=np.float64)) * headers[k][1].itemsize for k in ("x", "y"))
    if size > limit:
        raise BadInput(f"{path.name}: x and y take {units.human_bytes(size)}, above the {units.human_bytes(limit)} "
                       "limit (RECIPE_MAX_UPLOAD_MB); the checks use a few thousand examples at most, save fewer")
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    except ValueError as e:
        raise BadInput(f"{path.name} cannot be read without pickle: {first_line(e, 200)}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BadInput(f"{path.name} cannot be read: {first_line(e, 200)}") from None
    _check_shapes(x.shape, y.shape, causal)
    if causal and x.dtype.kind not in "iu":
        raise BadInput(f"--causal needs integer token ids in x, not {x.dtype} values")
    return x, y


def _npz_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) of each array of an .npz, from its .npy headers alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            out = {}
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise BadInput(f"{path.name}: {member} is in .npy format {version[0]}.{version[1]}, "
                                       "which is not read; save it with numpy.savez")
                    shape, _, dtype = read(f, max_header_size=10_000)
                out[member[:-4]] = (tuple(shape), dtype)
            return out
    except (zipfile.BadZipFile, OSError, EOFError):
        raise BadInput(f"{path.name} is not an .npz file (save x and y with numpy.savez)") from None
    except ValueError as e:  # a header numpy cannot parse, or one that names a pickled dtype
        raise BadInput(f"{path.name} holds an array numpy cannot read safely: {first_line(e, 200)}") from None
