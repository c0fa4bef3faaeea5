"""The CLI's lifecycle commands: `runs|datasets|studies|curves delete|undo|archive|unarchive ...`, `runs rename`,
`runs edit`, `datasets rename|share|unshare`.

They act as the operator (access.operator()), through recipe_core.tracking.lifecycle, which checks and audits.
Deleting something others depend on lists them and asks for --force, so that nothing goes that was not asked for.
"""
from __future__ import annotations

import argparse
import json

from recipe_core.errors import BadInput, NotFound, RecipeError
from recipe_core.tracking import access
from recipe_core.units import count

WORDS = {"run": "run", "dataset": "dataset", "study": "study", "curve": "learning curve"}
COMMANDS = {"run": "runs", "dataset": "datasets", "study": "studies", "curve": "curves"}


class Refused(RecipeError):
    """A delete that would take what others depend on: main() prints `lines` on stdout, then the error line."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = lines


def json_option(s: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command leaves alone the --json its parent command may have been given (`runs --json undo X`)
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document")


def _trashed_json(t) -> dict:
    return {"kind": t.kind, "key": t.key, "name": t.name, "deleted_at": t.deleted_at, "run_ids": list(t.run_ids),
            "dependents": list(t.dependents)}


def _canonical(store, kind: str, key: str, live: bool = False) -> str:
    """A run's or dataset's id (a prefix or a name given), so that a key given twice counts once; live: refuse
    one already deleted."""
    if kind not in ("run", "dataset"):
        return _group(store, kind, str(key), live)
    found = store.get_run(key) if kind == "run" else store.get_dataset(key)
    if live and found.deleted_at is not None:
        raise BadInput(f"{kind} {found.id} is deleted already (see `python -m recipe_core trash`)")
    return found.id


def _group(store, kind: str, name: str, live: bool) -> str:
    """A study or learning curve that has runs (deleted ones too: their delete can be undone)."""
    from recipe_core.tracking import lifecycle

    tag = lifecycle.GROUP_TAGS[kind] + name
    if not any(tag in r.tags for r in store.list_runs(include_deleted=True)):
        raise NotFound(f"no {WORDS[kind]} {name[:80]!r} with runs in this store")
    if live and name in lifecycle.deleted_groups(store, kind):
        raise BadInput(f"{WORDS[kind]} {name[:80]!r} is deleted already (see `python -m recipe_core trash`)")
    return name


def cmd_delete(args, settings, store) -> dict:
    from recipe_core.tracking import lifecycle

    # Every key is checked before anything goes: one unknown, already deleted or depended-on key deletes nothing.
    keys = list(dict.fromkeys(_canonical(store, args.kind, k, live=True) for k in args.keys))
    lines = [(f"{WORDS[args.kind]} {key}: " if len(keys) > 1 else "") + line
             for key in keys for line in lifecycle.dependents(store, args.kind, key)]
    if lines and not args.force:
        what = f"{WORDS[args.kind]} {keys[0]}" if len(keys) == 1 else f"these {COMMANDS[args.kind]}"
        things = "1 thing depends" if len(lines) == 1 else f"{len(lines)} things depend"
        raise Refused(f"{things} on {what} (listed on stdout); nothing was deleted; "
                      f"give --force to delete anyway", lines)
    who = access.operator()
    return {"deleted": [_trashed_json(lifecycle.delete(store, who, args.kind, key)) for key in keys]}


def cmd_undo(args, settings, store) -> dict:
    from recipe_core.tracking import lifecycle

    who = access.operator()
    return {"restored": [_trashed_json(lifecycle.undo(store, who, args.kind, key)) for key in args.keys]}


def cmd_archive(args, settings, store) -> dict:
    from recipe_core.tracking import lifecycle

    who, archived = access.operator(), args.action == "archive"
    done = []
    for key in args.keys:
        key = _canonical(store, args.kind, key)
        done.append({"kind": args.kind, "key": key, "changed": lifecycle.archive(store, who, args.kind, key, archived)})
    return {"archived" if archived else "unarchived": done}


def cmd_rename(args, settings, store) -> dict:
    from recipe_core.tracking import lifecycle

    key = _canonical(store, args.kind, args.key)
    return {"kind": args.kind, "key": key, "name": lifecycle.rename(store, access.operator(), args.kind, key,
                                                                    args.new_name)}


def cmd_edit(args, settings, store) -> dict:
    from recipe_core.cli.runs import run_json
    from recipe_core.tracking import lifecycle

    tags = [] if args.clear_tags else args.tag
    if tags is None and args.hypothesis is None:
        raise RecipeError("give --tag, --clear-tags or --hypothesis: there is nothing to change")
    return run_json(lifecycle.edit_run(store, access.operator(), args.key, tags=tags, hypothesis=args.hypothesis))


def cmd_share(args, settings, store) -> dict:
    from recipe_core.cli.data import dataset_json
    from recipe_core.tracking import lifecycle

    visibility = "shared" if args.action == "share" else "private"
    return dataset_json(lifecycle.set_visibility(store, access.operator(), args.key, visibility))


def show_deleted(out: dict) -> str:
    lines = []
    for t in out["deleted"]:
        lines.append(f"deleted {WORDS[t['kind']]} {t['key']} ({t['name']}), {count(len(t['run_ids']), 'run')}; "
                     f"undo with `python -m recipe_core {COMMANDS[t['kind']]} undo {t['key']}` until it is purged")
        lines += [f"  it had: {line}" for line in t["dependents"]]
    return "\n".join(lines)


def show_restored(out: dict) -> str:
    return "\n".join(f"restored {WORDS[t['kind']]} {t['key']} ({t['name']}), "
                     f"{count(len(t['run_ids']), 'run')}" for t in out["restored"])


def show_archived(out: dict) -> str:
    action, done = next(iter(out.items()))
    return "\n".join(f"{action} {WORDS[d['kind']]} {d['key']} ({d['changed']} changed)" for d in done)


def show_renamed(out: dict) -> str:
    return f"renamed {WORDS[out['kind']]} {out['key']} to {out['name']!r}"


def show_edited(out: dict) -> str:
    return f"run {out['run_id']}: tags {', '.join(out['tags']) or '(none)'}; hypothesis {out['hypothesis']!r}"


def show_visibility(out: dict) -> str:
    return f"dataset {out['id']} ({out['name']}) is {out['visibility']}"


def add_actions(parent: argparse.ArgumentParser, kind: str, required: bool = False) -> argparse._SubParsersAction:
    """delete, undo, archive and unarchive under `parent` (`runs`, `datasets`, `studies`, `curves`)."""
    word, key = WORDS[kind], "NAME" if kind == "study" else "ID" if kind != "dataset" else "KEY"
    actions = parent.add_subparsers(dest="action", required=required, parser_class=type(parent))

    def action(name: str, help: str, run, show, many: bool = True) -> argparse.ArgumentParser:
        s = actions.add_parser(name, help=help)
        s.add_argument("keys" if many else "key", nargs="+" if many else None, metavar=key)
        json_option(s)
        s.set_defaults(run=run, show=show, kind=kind, action=name)
        return s

    s = action("delete", f"delete (soft: undoable until purged); asks for --force if something depends on the {word}",
               cmd_delete, show_deleted)
    s.add_argument("--force", action="store_true", help="delete even what others depend on")
    action("undo", "bring back what a delete took", cmd_undo, show_restored)
    action("archive", "off the leaderboards and pickers; nothing else changes", cmd_archive, show_archived)
    action("unarchive", "back on the leaderboards and pickers", cmd_archive, show_archived)
    if kind in ("run", "dataset"):
        s = action("rename", f"give the {word} a new name", cmd_rename, show_renamed, many=False)
        s.add_argument("new_name", metavar="NEW_NAME")
    return actions


def add_run_actions(runs_parser: argparse.ArgumentParser) -> None:
    actions = add_actions(runs_parser, "run")
    s = actions.add_parser("edit", help="set a run's tags and/or hypothesis")
    s.add_argument("key", metavar="ID")
    s.add_argument("--tag", action="append", help="a tag (repeat for more); replaces the run's tags")
    s.add_argument("--clear-tags", action="store_true", help="remove the run's tags")
    s.add_argument("--hypothesis", help="what the run tests")
    json_option(s)
    s.set_defaults(run=cmd_edit, show=show_edited, kind="run", action="edit")


def add_dataset_actions(datasets_parser: argparse.ArgumentParser) -> None:
    actions = add_actions(datasets_parser, "dataset")
    for name, help in (("share", "share the dataset with the team"),
                       ("unshare", "make the dataset private to its owner")):
        s = actions.add_parser(name, help=help)
        s.add_argument("key", metavar="KEY")
        json_option(s)
        s.set_defaults(run=cmd_share, show=show_visibility, kind="dataset", action=name)


def add_commands(sub) -> None:
    for kind, help in (("study", "a study (its trials and its Optuna study): delete, undo, archive, unarchive"),
                       ("curve", "a learning curve (its runs): delete, undo, archive, unarchive")):
        add_actions(sub.add_parser(COMMANDS[kind], help=help), kind, required=True)


def print_refused(e: Refused, as_json: bool) -> None:
    print(json.dumps({"dependents": e.lines}, ensure_ascii=False) if as_json else "\n".join(e.lines))
