"""The CLI's `labels` commands, the human baseline: sample, add, import, summary, export.

recipe_core.labelling is imported when a command runs, and never loads torch (tests/test_cli.py checks).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from recipe_core.errors import RecipeError
from recipe_core.tracking import access
from recipe_core.units import human_bytes


def _labels_base(args, settings, store):
    from recipe_core.labelling import labels

    n = labels.DEFAULT_N if args.n is None else args.n  # None in the parser, so that parsing imports nothing
    return labels.baseline(settings, store, store.get_dataset(args.dataset), args.target, n=n)


def _annotator(args) -> str:
    """The name on the labels: the operator's unless given (an operator may import a colleague's labels)."""
    return args.annotator or access.operator().name


def cmd_sample(args, settings, store) -> dict:
    return {"items": list(_labels_base(args, settings, store).items)}


def cmd_add(args, settings, store) -> dict:
    from recipe_core.labelling import labels

    base = _labels_base(args, settings, store)
    event = labels.add(store, base, _annotator(args), args.item, args.label, note=args.note or "",
                       who=access.operator())
    return {"stored": True, "event_id": event.event_id, "item": event.item, "label": event.label}


def cmd_import(args, settings, store) -> dict:
    from recipe_core.labelling import labels

    path = Path(args.file)
    if not path.is_file():
        raise RecipeError(f"no such file: {args.file}")
    if path.stat().st_size > labels.MAX_IMPORT_BYTES:
        raise RecipeError(f"the label file is over {human_bytes(labels.MAX_IMPORT_BYTES)}")
    n = labels.import_csv(store, _labels_base(args, settings, store), _annotator(args), path.read_bytes(),
                          who=access.operator())  # with who: audited
    return {"imported": n}


def cmd_summary(args, settings, store) -> dict:
    from recipe_core.labelling import labels

    base = _labels_base(args, settings, store)
    return labels.summary(base, store.label_events(base.dataset_id, base.target))


def cmd_export(args, settings, store) -> dict:
    from recipe_core.labelling import labels

    base = _labels_base(args, settings, store)
    n = labels.export(base, store.label_events(base.dataset_id, base.target), Path(args.file))
    return {"exported": n, "file": args.file}


def show_sample(out: dict) -> str:
    return " ".join(str(i) for i in out["items"])


def show_summary(out: dict) -> str:
    lines = [f"{out['n_items']} items in the sample"]
    for a in out["annotators"]:
        score = f"accuracy {a['accuracy']:.4g}" if "accuracy" in a else f"MAE {a['mae']:.4g}"
        lines.append(f"  {a['name']}: {a['n_labelled']} labelled, {score} (95% {a['ci_low']:.3g}-{a['ci_high']:.3g})")
    lines += [f"  {p['a']} vs {p['b']}: {p['n_common']} common items, kappa {p['cohen_kappa']}"
              for p in out["agreement"]]
    lines.append(f"  suspect labels: {' '.join(map(str, out['suspect_labels'])) or 'none'}")
    return "\n".join(lines)


def add_commands(sub) -> None:
    labels_parser = sub.add_parser("labels", help="the human baseline: sample, add, import, summary, export")
    lab = labels_parser.add_subparsers(dest="labels_command", required=True, parser_class=type(labels_parser))

    def labels_command(name: str, help: str, run, show=json.dumps) -> argparse.ArgumentParser:
        s = lab.add_parser(name, help=help)
        s.add_argument("dataset", help="id or name")
        s.add_argument("--target", required=True)
        s.add_argument("--n", type=int, help="sample size (default 100)")
        s.add_argument("--json", action="store_true", help="print one JSON document")
        s.set_defaults(run=run, show=show, reads_data=True)
        return s

    labels_command("sample", "the fixed sample of validation rows to label (the same every call)", cmd_sample,
                   show_sample)
    s = labels_command("add", "store one label", cmd_add)
    s.add_argument("--annotator", help="default: RECIPE_AUTHOR, else the login name")
    s.add_argument("--item", type=int, required=True, help="row id (0-based row position in the dataset)")
    s.add_argument("--label", required=True)
    s.add_argument("--note")
    s = labels_command("import", "labels made elsewhere, from a CSV of item,label[,note]", cmd_import)
    s.add_argument("--annotator", help="default: RECIPE_AUTHOR, else the login name")
    s.add_argument("file")
    labels_command("summary", "accuracy per annotator, agreement, suspect labels", cmd_summary, show_summary)
    s = labels_command("export", "every label with annotator, time and note (.csv or .parquet)", cmd_export)
    s.add_argument("file")
