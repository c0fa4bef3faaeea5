"""The CLI's commands over many runs: tune (a hyperparameter search), learning-curve, ensemble.

Each imports its part of recipe_core.search (Optuna, torch) when it runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from recipe_core.config import TrainConfig
from recipe_core.errors import RecipeError
from recipe_core.tracking import access

SPACE_FORMAT = '[{"name", "kind", "low", "high", "choices"}, ...]'


def cmd_tune(args, settings, store) -> dict:
    from recipe_core.search import tuning

    record = store.get_dataset(args.dataset)
    space = tuning.DEFAULT_SPACES.get(args.model, ())
    if args.space is not None or args.space_file is not None:
        space = tuning.space_from_rows(args.model, _space_rows(args.space, args.space_file))
    base = TrainConfig(model=args.model, epochs=args.epochs, seed=args.seed)
    return tuning.run_study(settings, store, record, args.target, base, space, args.trials, sampler=args.sampler,
                            seed=args.seed, executor=args.executor, workers=args.workers,
                            author=args.author or access.operator().name, study_name=args.study)


def _space_rows(text: str | None, file: str | None) -> list:
    """The rows of --space (JSON text) or --space-file (a JSON file): two options, never a guess between them."""
    if text is not None and file is not None:
        raise RecipeError("give --space or --space-file, not both")
    what = "--space"
    if file is not None:
        what = f"--space-file {file}"
        path = Path(file)
        if not path.is_file():
            raise RecipeError(f"no such file: {file}")
        if path.stat().st_size > 1_000_000:
            raise RecipeError(f"{what} is over 1 MB; a search space is a few settings")
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        rows = json.loads(text)
    except ValueError as e:
        raise RecipeError(f"{what} is not valid JSON ({e}); expected {SPACE_FORMAT}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RecipeError(f"{what} must be a JSON list of settings: {SPACE_FORMAT}")
    return rows


def cmd_learning_curve(args, settings, store) -> dict:
    from recipe_core.search import learning_curve

    parent = store.get_run(args.run_id)
    fractions = [float(f) for f in args.fractions.split(",")] if args.fractions else learning_curve.FRACTIONS
    author = args.author or access.operator().name
    curve, queued = learning_curve.start(store, parent, fractions, args.seeds, author=author)
    learning_curve.execute(settings, store, queued, executor=args.executor, workers=args.workers)
    frame = learning_curve.table(store, curve)
    points = learning_curve.summary(frame)
    return {"curve": curve, "runs": frame.to_dict("records"), "summary": points.to_dict("records"),
            "verdict": learning_curve.verdict(points)}


def cmd_ensemble(args, settings, store) -> dict:
    from recipe_core.search import ensembles

    ids = list(args.run_ids)
    if args.top:
        if not (args.dataset and args.target):
            raise RecipeError("--top needs --dataset and --target")
        ids += ensembles.top_k(store, store.get_dataset(args.dataset).id, args.target, args.top)
    if not ids:
        raise RecipeError("give run ids, or --top K with --dataset and --target")
    run = ensembles.create(settings, store, ids, author=args.author or access.operator().name)
    return ensembles.summary(store, run)


def _trial_line(t: dict) -> str:
    value = "" if t["value"] is None else f"{t['value']:.4g}"
    return f"  #{t['number']:<3} {t['state']:<8} {value:>8}  {t['run_id']}  {json.dumps(t['params'])}"


def show_tune(out: dict) -> str:
    lines = [f"study {out['study']}"] + [_trial_line(t) for t in out["trials"]]
    if out["best"]:
        lines.append("best: " + _trial_line(out["best"]).strip())
    return "\n".join(lines)


def show_learning_curve(out: dict) -> str:
    lines = [f"  {p['fraction']:.0%} ({p['n_train']} rows): val_loss {p['mean']:.4g} (min {p['min']:.4g}, "
             f"max {p['max']:.4g})" for p in out["summary"]]
    return "\n".join(lines + [out["verdict"]])


def show_ensemble(out: dict) -> str:
    m = out["metrics"]
    lines = [f"ensemble {out['run_id']} of {len(out['members'])} runs: val_loss {m['val_loss']:.4g} "
             f"(gain vs the best member {out['gain_vs_best']:+.4g}; {m.get('n_parameters', 0):,} parameters)"]
    lines += [f"  {r['run_id']}  {r['model']:<6} val_loss {r['val_loss']:.4g}" for r in out["members"]]
    return "\n".join(lines)


def executor_options(s: argparse.ArgumentParser) -> None:
    """Where the runs of a search or a learning curve train, and how many at a time."""
    s.add_argument("--executor", default="local", help="local (worker processes) or dask://HOST:PORT")
    s.add_argument("--workers", type=int, default=2, help="runs at a time")


def add_commands(sub) -> None:
    s = sub.add_parser("tune", help="random search (Optuna) over a model's settings; every trial is a run")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--target", required=True)
    s.add_argument("--model", choices=("mlp", "gbm", "linear"), default="mlp")
    s.add_argument("--trials", type=int, required=True)
    s.add_argument("--sampler", choices=("random", "grid", "tpe"), default="random")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same sequence of sampled params")
    executor_options(s)
    s.add_argument("--epochs", type=int, help="MLP epochs per trial (default: about 2,000 steps)")
    s.add_argument("--space", help='the search space as JSON text: a list of {"name", "kind": log|float|int|choice, '
                                   '"low", "high", "choices"}')
    s.add_argument("--space-file", metavar="FILE", help="the same JSON, read from a file")
    s.add_argument("--study", help="a study name: continue it (it lives in the store) or name the new one")
    s.add_argument("--author", help="default: RECIPE_AUTHOR, else the login name")
    s.set_defaults(run=cmd_tune, show=show_tune)

    s = sub.add_parser("learning-curve", help="a run's config on 10/25/50/100%% of the training rows, several seeds")
    s.add_argument("run_id")
    s.add_argument("--fractions", help="comma-separated, default 0.1,0.25,0.5,1")
    s.add_argument("--seeds", type=int, default=3)
    executor_options(s)
    s.add_argument("--author", help="default: RECIPE_AUTHOR, else the login name")
    s.set_defaults(run=cmd_learning_curve, show=show_learning_curve)

    s = sub.add_parser("ensemble", help="average the validation predictions of runs; stored as a run of its own")
    s.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    s.add_argument("--top", type=int, help="also the K best runs (lowest val_loss) of --dataset and --target")
    s.add_argument("--dataset", help="id or name, for --top")
    s.add_argument("--target", help="for --top")
    s.add_argument("--author", help="default: RECIPE_AUTHOR, else the login name")
    s.set_defaults(run=cmd_ensemble, show=show_ensemble)
