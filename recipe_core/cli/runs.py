"""The CLI's run commands: train, runs, import, history, plot.

Only `train` loads torch, `plot` plotly and `import` the log readers, each when it runs: `runs` and `history`
read the store alone.
"""
from __future__ import annotations

from pathlib import Path

from recipe_core.cli import lifecycle as lifecycle_commands
from recipe_core.config import MODELS, TrainConfig
from recipe_core.errors import RecipeError
from recipe_core.jsonsafe import plain
from recipe_core.tracking import access, users
from recipe_core.tracking.records import RunRecord


def run_json(r: RunRecord, datasets_by_id: dict | None = None) -> dict:
    out = {"run_id": r.id, "name": r.name, "dataset": r.dataset_id, "target": r.target, "model": r.model,
           "seed": r.seed, "task": r.task, "status": r.status, "metrics": r.metrics, "checks": r.checks,
           "author": r.author, "created_at": r.created_at, "source": r.source, "parent": r.parent_id,
           "hypothesis": r.hypothesis, "tags": list(r.tags), "archived": r.archived}
    if r.reason:
        out["reason"] = r.reason
    if datasets_by_id and r.dataset_id in datasets_by_id:
        out["dataset_name"] = datasets_by_id[r.dataset_id].name
    return out


def cmd_train(args, settings, store) -> dict:
    from recipe_core.training import jobs, runs

    record = store.get_dataset(args.dataset)
    config = TrainConfig(model=args.model, seed=args.seed, epochs=args.epochs, bias_init=not args.no_bias_init,
                         task=args.task, exclude=tuple(args.exclude) if args.exclude is not None else None,
                         checks=not args.no_checks)
    runs.preflight(settings, record, args.target, config)
    run = runs.create(store, record, args.target, config, author=args.author or access.operator().name)
    # The CLI is its own process, so it runs the job inline (in one of the machine's training slots, waiting for
    # one if they are all taken); Ctrl-C marks the run cancelled.
    run = jobs.execute(settings, store, run.id)
    if run.status != "finished":
        raise RecipeError(f"run {run.id} {run.status}: {run.reason}")
    return run_json(run)


def cmd_runs(args, settings, store) -> list:
    """The runs (never the deleted ones; archived ones marked); with --as, only those that identity may see."""
    records = store.list_datasets()
    who = users.identity(store, args.as_user) if args.as_user else access.operator()
    dataset_id = None
    if args.dataset:
        dataset_id = access.require_visible_dataset(who, store.get_dataset(args.dataset)).id
    runs = access.visible_runs(who, store.list_runs(dataset_id, args.target), records)
    return [run_json(r, {d.id: d for d in records}) for r in runs]


def cmd_import(args, settings, store) -> dict:
    from recipe_core.tracking import importers

    path = Path(args.path)
    if not path.exists():
        raise RecipeError(f"no such file or directory: {args.path}")
    return {"runs": importers.import_path(store, path, author=args.author or access.operator().name)}


def cmd_history(args, settings, store) -> dict:
    run = store.get_run(args.run_id)
    history = store.histories([run.id], args.metric).get(run.id)
    if history is None:
        logged = sorted(store.metric_summaries([run.id]).get(run.id, {}))
        raise RecipeError(f"run {run.id} has no metric {args.metric!r}; it logged: {', '.join(logged) or 'nothing'}")
    return {"run_id": run.id, "metric": args.metric,
            "points": [[int(s), plain(float(v))] for s, v in zip(history.step, history.value, strict=True)]}


def cmd_plot(args, settings, store) -> dict:
    from recipe_core.compare import comparison
    from recipe_core.compare.chart import ChartSpec

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("json", "html", "png"):
        raise RecipeError(f"--out must end in .json, .html or .png, not {out.name!r}")
    spec = ChartSpec(metric=args.metric, x=args.x, log_y=args.log_y, smoothing=args.smoothing,
                     group_seeds=args.group_seeds)
    fig, counts, shown = comparison.figure(settings, store, args.run_ids, spec)
    data = comparison.figure_bytes(fig, fmt)
    out.write_bytes(data)
    return {"file": str(out), "bytes": len(data), "runs": [r.id for r in shown], **counts}


def _verdict(ok) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[ok]


def show_train(out: dict) -> str:
    lines = [f"run {out['run_id']} {out['status']} ({out['model']}, {out['task']}, seed {out['seed']})"]
    lines += [f"  {k} {v:.4g}" for k, v in out["metrics"].items() if isinstance(v, (int, float))]
    lines += [f"  check {name}: {_verdict(c.get('ok'))} {c.get('message', '')}" for name, c in out["checks"].items()]
    return "\n".join(lines)


def show_runs(out: list) -> str:
    return "\n".join(f"{r['run_id']}  {r['status']:<9} {r['model']:<6} seed {r['seed']}  "
                     f"{r.get('dataset_name', r['dataset'] or r['name'])} -> {r['target'] or '-'}  "
                     f"val_loss {r['metrics'].get('val_loss', float('nan')):.4g}"
                     + ("  [archived]" if r["archived"] else "") for r in out) or "no runs"


def show_import(out: dict) -> str:
    return "\n".join(f"{r['run_id']}  {r['name']}  " + ("(already imported) " if r.get("already") else "")
                     + ", ".join(f"{k} {n:,}" for k, n in r["metrics"].items()) for r in out["runs"])


def show_history(out: dict) -> str:
    return "\n".join(f"{s}\t{v}" for s, v in out["points"])


def show_plot(out: dict) -> str:
    return f"wrote {out['file']} ({out['bytes']:,} bytes, {out['shown']:,} of {out['total']:,} points shown)"


def add_commands(sub) -> None:
    s = sub.add_parser("train", help="train a baseline on the fixed split and run the recipe's checks")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--target", required=True)
    s.add_argument("--model", choices=MODELS, default="mlp")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--epochs", type=int, help="default: enough for about 2,000 optimizer steps")
    s.add_argument("--task", choices=("classification", "regression"), help="default: inferred from the target")
    s.add_argument("--exclude", nargs="*", metavar="COLUMN", help="columns to leave out (default: the ID-like ones)")
    s.add_argument("--no-bias-init", action="store_true", help="start the last-layer bias at 0 (see the hockey stick)")
    s.add_argument("--no-checks", action="store_true", help="skip the recipe's checks (faster)")
    s.add_argument("--author", help="default: RECIPE_AUTHOR, else the login name")
    s.set_defaults(run=cmd_train, show=show_train)

    s = sub.add_parser("runs", help="list runs with their status and metrics; or delete, undo, archive, rename, edit")
    s.add_argument("--dataset", help="only runs of this dataset (id or name)")
    s.add_argument("--target", help="only runs of this target")
    s.add_argument("--as", dest="as_user", metavar="EMAIL", help="only the runs this person may see")
    s.set_defaults(run=cmd_runs, show=show_runs)
    lifecycle_commands.add_run_actions(s)

    s = sub.add_parser("import", help="runs from TensorBoard event directories or Lightning CSVLogger logs")
    s.add_argument("path", help="a directory (searched recursively) or one events file / metrics.csv")
    s.add_argument("--author", help="default: RECIPE_AUTHOR, else the login name")
    s.set_defaults(run=cmd_import, show=show_import)

    s = sub.add_parser("history", help="every stored point of one metric of a run")
    s.add_argument("run_id")
    s.add_argument("--metric", required=True)
    s.set_defaults(run=cmd_history, show=show_history)

    s = sub.add_parser("plot", help="the Compare page's figure of runs, to .json (plotly), .html or .png")
    s.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    s.add_argument("--metric", required=True)
    s.add_argument("--out", required=True, help="FILE.json, FILE.html or FILE.png")
    s.add_argument("--x", choices=("step", "epoch", "wall_time"), default="step")
    s.add_argument("--smoothing", choices=("none", "ema", "window"), default="ema")
    s.add_argument("--log-y", action="store_true")
    s.add_argument("--group-seeds", action="store_true", help="runs differing only in seed: mean and band")
    s.set_defaults(run=cmd_plot, show=show_plot)
