"""The CLI: python -m recipe_core <command>. Thin like a page: parse, call the core, print.

With --json each command prints one JSON document on stdout. Errors print one line starting "error:" on
stderr and exit non-zero, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipe_core.config import MODELS, TrainConfig, load_settings
from recipe_core.data import datasets, profiles, queries
from recipe_core.errors import RecipeError
from recipe_core.jsonsafe import plain
from recipe_core.labelling import labels
from recipe_core.tracking.api import login_name
from recipe_core.tracking.store import KINDS, DatasetRecord, RunRecord, Store
from recipe_core.training import jobs, runs


def dataset_json(r: DatasetRecord) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "n_rows": r.n_rows,
        "columns": [{"name": c.name, "type": c.kind, "dtype": c.dtype} for c in r.columns],
        "format": r.fmt,
        "source_name": r.source_name,
        "created_at": r.created_at,
        "notes": list(r.notes),
    }


def cmd_ingest(args, settings, store) -> dict:
    path = Path(args.path)
    if not path.is_file():
        raise RecipeError(f"no such file: {args.path}")
    record = datasets.ingest_file(settings, store, path, name=args.name)
    return dataset_json(record)


def cmd_datasets(args, settings, store) -> list:
    return [dataset_json(r) for r in store.list_datasets()]


def cmd_profile(args, settings, store) -> dict:
    record = store.get_dataset(args.dataset)
    if args.target is not None:
        record.column(args.target)
    db = queries.DatasetDB(settings, record)
    try:
        return profiles.as_json(profiles.profile(db, args.target))
    finally:
        db.close()


def cmd_query(args, settings, store) -> dict:
    record = store.get_dataset(args.dataset)
    q = queries.RowQuery(
        where=args.where or "",
        search=args.search or "",
        sort=args.sort,
        descending=args.desc,
        limit=args.limit,
        offset=args.offset,
    )
    db = queries.DatasetDB(settings, record)
    try:
        page = queries.page(db, q)
    finally:
        db.close()
    rows = [{"__row_id": int(i), **r} for i, r in zip(page.rows.index, page.rows.to_dict("records"))]
    return {"n_total": page.n_total, "rows": rows}


def cmd_set_type(args, settings, store) -> dict:
    return dataset_json(store.set_column_kind(store.get_dataset(args.dataset).id, args.column, args.type))


def run_json(r: RunRecord, datasets_by_id: dict | None = None) -> dict:
    out = {"run_id": r.id, "name": r.name, "dataset": r.dataset_id, "target": r.target, "model": r.model,
           "seed": r.seed, "task": r.task, "status": r.status, "metrics": r.metrics, "checks": r.checks,
           "author": r.author, "created_at": r.created_at, "source": r.source, "parent": r.parent_id,
           "hypothesis": r.hypothesis, "tags": list(r.tags)}
    if r.reason:
        out["reason"] = r.reason
    if datasets_by_id and r.dataset_id in datasets_by_id:
        out["dataset_name"] = datasets_by_id[r.dataset_id].name
    return out


def cmd_train(args, settings, store) -> dict:
    record = store.get_dataset(args.dataset)
    config = TrainConfig(model=args.model, seed=args.seed, epochs=args.epochs, bias_init=not args.no_bias_init,
                         task=args.task, exclude=tuple(args.exclude) if args.exclude is not None else None,
                         checks=not args.no_checks)
    runs.preflight(settings, record, args.target, config)
    run = runs.create(store, record, args.target, config, author=args.author or login_name())
    # The CLI is its own process, so it runs the job inline (in one of the machine's training slots, waiting for
    # one if they are all taken); Ctrl-C marks the run cancelled.
    run = jobs.execute(settings, store, run.id)
    if run.status != "finished":
        raise RecipeError(f"run {run.id} {run.status}: {run.reason}")
    return run_json(run)


def cmd_runs(args, settings, store) -> list:
    by_id = {d.id: d for d in store.list_datasets()}
    dataset_id = store.get_dataset(args.dataset).id if args.dataset else None
    return [run_json(r, by_id) for r in store.list_runs(dataset_id, args.target)]


def _labels_base(args, settings, store) -> labels.Baseline:
    return labels.baseline(settings, store, store.get_dataset(args.dataset), args.target, n=args.n)


def cmd_labels_sample(args, settings, store) -> dict:
    return {"items": list(_labels_base(args, settings, store).items)}


def cmd_labels_add(args, settings, store) -> dict:
    base = _labels_base(args, settings, store)
    event = labels.add(store, base, args.annotator, args.item, args.label, note=args.note or "")
    return {"stored": True, "event_id": event.event_id, "item": event.item, "label": event.label}


def cmd_labels_import(args, settings, store) -> dict:
    path = Path(args.file)
    if not path.is_file():
        raise RecipeError(f"no such file: {args.file}")
    if path.stat().st_size > labels.MAX_IMPORT_BYTES:
        raise RecipeError(f"the label file is over {labels.MAX_IMPORT_BYTES // 2**20} MB")
    n = labels.import_csv(store, _labels_base(args, settings, store), args.annotator, path.read_bytes())
    return {"imported": n}


def cmd_labels_summary(args, settings, store) -> dict:
    base = _labels_base(args, settings, store)
    return labels.summary(base, store.label_events(base.dataset_id, base.target))


def cmd_labels_export(args, settings, store) -> dict:
    base = _labels_base(args, settings, store)
    n = labels.export(base, store.label_events(base.dataset_id, base.target), Path(args.file))
    return {"exported": n, "file": args.file}


def cmd_import(args, settings, store) -> dict:
    from recipe_core.tracking import importers

    path = Path(args.path)
    if not path.exists():
        raise RecipeError(f"no such file or directory: {args.path}")
    return {"runs": importers.import_path(store, path, author=args.author)}


def cmd_history(args, settings, store) -> dict:
    run = store.get_run(args.run_id)
    history = store.histories([run.id], args.metric).get(run.id)
    if history is None:
        logged = sorted(store.metric_summaries([run.id]).get(run.id, {}))
        raise RecipeError(f"run {run.id} has no metric {args.metric!r}; it logged: {', '.join(logged) or 'nothing'}")
    return {"run_id": run.id, "metric": args.metric,
            "points": [[int(s), plain(float(v))] for s, v in zip(history.step, history.value)]}


def cmd_plot(args, settings, store) -> dict:
    from recipe_core.compare import comparison
    from recipe_core.compare.chart import ChartSpec

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("json", "html", "png"):
        raise RecipeError(f"--out must end in .json, .html or .png, not {out.name!r}")
    spec = ChartSpec(metric=args.metric, x=args.x, log_y=args.log_y, smoothing=args.smoothing,
                     group_seeds=args.group_seeds)
    fig, counts, runs = comparison.figure(settings, store, args.run_ids, spec)
    data = comparison.figure_bytes(fig, fmt)
    out.write_bytes(data)
    return {"file": str(out), "bytes": len(data), "runs": [r.id for r in runs], **counts}


def cmd_tune(args, settings, store) -> dict:
    from recipe_core.search import tuning

    record = store.get_dataset(args.dataset)
    space = tuning.DEFAULT_SPACES.get(args.model, ())
    if args.space is not None or args.space_file is not None:
        space = tuning.space_from_rows(args.model, _space_rows(args.space, args.space_file))
    base = TrainConfig(model=args.model, epochs=args.epochs, seed=args.seed)
    return tuning.run_study(settings, store, record, args.target, base, space, args.trials, sampler=args.sampler,
                            seed=args.seed, executor=args.executor, workers=args.workers,
                            author=args.author or login_name(), study_name=args.study)


SPACE_FORMAT = '[{"name", "kind", "low", "high", "choices"}, ...]'


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
    curve, queued = learning_curve.start(settings, store, parent, fractions, args.seeds, author=args.author or login_name())
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
    run = ensembles.create(settings, store, ids, author=args.author or login_name())
    return ensembles.summary(store, run)


def executor_options(s: argparse.ArgumentParser) -> None:
    """Where the runs of a search or a learning curve train, and how many at a time."""
    s.add_argument("--executor", default="local", help="local (worker processes) or dask://HOST:PORT")
    s.add_argument("--workers", type=int, default=2, help="runs at a time")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other error; `--help` still shows the usage
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m recipe_core", description="Recipe: the training recipe, from a terminal.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("ingest", help="add a dataset file (CSV, TSV, Parquet, JSON, JSON Lines, xlsx, gzip)")
    s.add_argument("path")
    s.add_argument("--name")
    s.set_defaults(run=cmd_ingest)

    s = sub.add_parser("datasets", help="list the registered datasets")
    s.set_defaults(run=cmd_datasets)

    s = sub.add_parser("profile", help="profile every column and list the data-quality warnings")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--target")
    s.set_defaults(run=cmd_profile)

    s = sub.add_parser("query", help="filter, search, sort and page through rows")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--where", help="a SQL expression over the columns (validated, sandboxed)")
    s.add_argument("--search", help="case-insensitive text searched in text columns")
    s.add_argument("--sort", help="column to sort by")
    s.add_argument("--desc", action="store_true", help="sort descending")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--offset", type=int, default=0)
    s.set_defaults(run=cmd_query)

    s = sub.add_parser("set-type", help="change how a column is treated")
    s.add_argument("dataset", help="id or name")
    s.add_argument("column")
    s.add_argument("type", choices=KINDS)
    s.set_defaults(run=cmd_set_type)

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
    s.add_argument("--author", help="default: the login name")
    s.set_defaults(run=cmd_train)

    s = sub.add_parser("runs", help="list runs with their status and metrics")
    s.add_argument("--dataset", help="only runs of this dataset (id or name)")
    s.add_argument("--target", help="only runs of this target")
    s.set_defaults(run=cmd_runs)

    s = sub.add_parser("import", help="runs from TensorBoard event directories or Lightning CSVLogger logs")
    s.add_argument("path", help="a directory (searched recursively) or one events file / metrics.csv")
    s.add_argument("--author", help="default: the login name")
    s.set_defaults(run=cmd_import)

    s = sub.add_parser("history", help="every stored point of one metric of a run")
    s.add_argument("run_id")
    s.add_argument("--metric", required=True)
    s.set_defaults(run=cmd_history)

    s = sub.add_parser("plot", help="the Compare page's figure of runs, to .json (plotly), .html or .png")
    s.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    s.add_argument("--metric", required=True)
    s.add_argument("--out", required=True, help="FILE.json, FILE.html or FILE.png")
    s.add_argument("--x", choices=("step", "epoch", "wall_time"), default="step")
    s.add_argument("--smoothing", choices=("none", "ema", "window"), default="ema")
    s.add_argument("--log-y", action="store_true")
    s.add_argument("--group-seeds", action="store_true", help="runs differing only in seed: mean and band")
    s.set_defaults(run=cmd_plot)

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
    s.add_argument("--author", help="default: the login name")
    s.set_defaults(run=cmd_tune)

    s = sub.add_parser("learning-curve", help="a run's config on 10/25/50/100%% of the training rows, several seeds")
    s.add_argument("run_id")
    s.add_argument("--fractions", help="comma-separated, default 0.1,0.25,0.5,1")
    s.add_argument("--seeds", type=int, default=3)
    executor_options(s)
    s.add_argument("--author", help="default: the login name")
    s.set_defaults(run=cmd_learning_curve)

    s = sub.add_parser("ensemble", help="average the validation predictions of runs; stored as a run of its own")
    s.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    s.add_argument("--top", type=int, help="also the K best runs (lowest val_loss) of --dataset and --target")
    s.add_argument("--dataset", help="id or name, for --top")
    s.add_argument("--target", help="for --top")
    s.add_argument("--author", help="default: the login name")
    s.set_defaults(run=cmd_ensemble)

    labels_parser = sub.add_parser("labels", help="the human baseline: sample, add, import, summary, export")
    lab = labels_parser.add_subparsers(dest="labels_command", required=True, parser_class=_Parser)

    def labels_command(name: str, help: str, run) -> argparse.ArgumentParser:
        s = lab.add_parser(name, help=help)
        s.add_argument("dataset", help="id or name")
        s.add_argument("--target", required=True)
        s.add_argument("--n", type=int, default=labels.DEFAULT_N, help="sample size (default 100)")
        s.add_argument("--json", action="store_true", help="print one JSON document")
        s.set_defaults(run=run)
        return s

    labels_command("sample", "the fixed sample of validation rows to label (the same every call)", cmd_labels_sample)
    s = labels_command("add", "store one label", cmd_labels_add)
    s.add_argument("--annotator", required=True)
    s.add_argument("--item", type=int, required=True, help="row id (0-based row position in the dataset)")
    s.add_argument("--label", required=True)
    s.add_argument("--note")
    s = labels_command("import", "labels made elsewhere, from a CSV of item,label[,note]", cmd_labels_import)
    s.add_argument("--annotator", required=True)
    s.add_argument("file")
    labels_command("summary", "accuracy per annotator, agreement, suspect labels", cmd_labels_summary)
    s = labels_command("export", "every label with annotator, time and note (.csv or .parquet)", cmd_labels_export)
    s.add_argument("file")

    for s in sub.choices.values():
        if s is not labels_parser:
            s.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def show(command: str, out) -> str:
    """The human-readable form of a command's result."""
    if command in ("ingest", "set-type"):
        return f"{out['name']}  id {out['id']}  {out['n_rows']:,} rows  {len(out['columns'])} columns"
    if command == "datasets":
        return "\n".join(f"{d['id']}  {d['n_rows']:>10,} rows  {d['name']}" for d in out) or "no datasets"
    if command == "profile":
        lines = [f"{out['n_rows']:,} rows"]
        lines += [f"  {c['name']}: {c['type']}, {c['n_missing']:,} missing, {c['n_distinct']:,} distinct" for c in out["columns"]]
        lines += [f"warning [{w['kind']}] {w['column'] or ''}: {w['message']}" for w in out["warnings"]]
        return "\n".join(lines)
    if command == "query":
        lines = [f"{out['n_total']:,} matching rows"]
        lines += [json.dumps(r, ensure_ascii=False, default=str) for r in out["rows"]]
        return "\n".join(lines)
    if command == "labels":
        return _show_labels(out)
    if command == "import":
        return "\n".join(f"{r['run_id']}  {r['name']}  " + ("(already imported) " if r.get("already") else "")
                         + ", ".join(f"{k} {n:,}" for k, n in r["metrics"].items()) for r in out["runs"])
    if command == "history":
        return "\n".join(f"{s}\t{v}" for s, v in out["points"])
    if command == "tune":
        lines = [f"study {out['study']}"] + [_trial_line(t) for t in out["trials"]]
        if out["best"]:
            lines.append("best: " + _trial_line(out["best"]).strip())
        return "\n".join(lines)
    if command == "ensemble":
        m = out["metrics"]
        lines = [f"ensemble {out['run_id']} of {len(out['members'])} runs: val_loss {m['val_loss']:.4g} "
                 f"(gain vs the best member {out['gain_vs_best']:+.4g}; {m.get('n_parameters', 0):,} parameters)"]
        lines += [f"  {r['run_id']}  {r['model']:<6} val_loss {r['val_loss']:.4g}" for r in out["members"]]
        return "\n".join(lines)
    if command == "learning-curve":
        lines = [f"  {p['fraction']:.0%} ({p['n_train']} rows): val_loss {p['mean']:.4g} (min {p['min']:.4g}, max {p['max']:.4g})"
                 for p in out["summary"]]
        return "\n".join(lines + [out["verdict"]])
    if command == "plot":
        return f"wrote {out['file']} ({out['bytes']:,} bytes, {out['shown']:,} of {out['total']:,} points shown)"
    if command == "train":
        lines = [f"run {out['run_id']} {out['status']} ({out['model']}, {out['task']}, seed {out['seed']})"]
        lines += [f"  {k} {v:.4g}" for k, v in out["metrics"].items() if isinstance(v, (int, float))]
        lines += [f"  check {name}: {_verdict(c.get('ok'))} {c.get('message', '')}" for name, c in out["checks"].items()]
        return "\n".join(lines)
    if command == "runs":
        return "\n".join(f"{r['run_id']}  {r['status']:<9} {r['model']:<6} seed {r['seed']}  "
                         f"{r.get('dataset_name', r['dataset'] or r['name'])} -> {r['target'] or '-'}  "
                         f"val_loss {r['metrics'].get('val_loss', float('nan')):.4g}" for r in out) or "no runs"
    return json.dumps(out)


def _trial_line(t: dict) -> str:
    value = "" if t["value"] is None else f"{t['value']:.4g}"
    return f"  #{t['number']:<3} {t['state']:<8} {value:>8}  {t['run_id']}  {json.dumps(t['params'])}"


def _show_labels(out) -> str:
    if "items" in out:
        return " ".join(str(i) for i in out["items"])
    if "annotators" in out:
        lines = [f"{out['n_items']} items in the sample"]
        for a in out["annotators"]:
            score = f"accuracy {a['accuracy']:.4g}" if "accuracy" in a else f"MAE {a['mae']:.4g}"
            lines.append(f"  {a['name']}: {a['n_labelled']} labelled, {score} (95% {a['ci_low']:.3g}-{a['ci_high']:.3g})")
        lines += [f"  {p['a']} vs {p['b']}: {p['n_common']} common items, kappa {p['cohen_kappa']}" for p in out["agreement"]]
        lines.append(f"  suspect labels: {' '.join(map(str, out['suspect_labels'])) or 'none'}")
        return "\n".join(lines)
    return json.dumps(out)


def _verdict(ok) -> str:
    return {True: "ok", False: "FAILED", None: "skipped"}[ok]


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    try:
        settings = load_settings()
        store = Store(settings.store_url)
        out = plain(args.run(args, settings, store))
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, never a traceback
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False) if args.json else show(args.command, out))
    return 0


if __name__ == "__main__":
    code = main()
    jobs.record_exit(code)  # started from a page: the page reads how it ended (see jobs.start_command)
    sys.exit(code)
