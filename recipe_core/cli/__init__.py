"""The CLI, `python -m recipe_core <command>`: parse, call the core, print; the commands live in modules by concept.

With --json each command prints one JSON document on stdout. Errors print one line starting "error:" on
stderr and exit non-zero, never a traceback. Starting is cheap: a command imports the heavy libraries it uses
(DuckDB, torch, Optuna...) when it runs, so listing datasets never loads torch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from recipe_core.cli import check, data, labels, lifecycle, runs, search, team
from recipe_core.config import Settings, load_settings
from recipe_core.errors import RecipeError, unexpected
from recipe_core.jsonsafe import plain
from recipe_core.limits import limit_memory
from recipe_core.tracking.store import Store


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other error; `--help` still shows the usage
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m recipe_core", description="Recipe: the training recipe, from a terminal.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in (data, runs, check, lifecycle, search, labels, team):  # the order of `--help`
        group.add_commands(sub)
    for name, s in sub.choices.items():
        if name != "labels":  # each labels command has its own (the others' sub-commands too: lifecycle.json_option)
            s.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def _bounded(settings: Settings) -> Settings:
    """A command that only reads a dataset caps its own address space as the server's query worker is capped, and
    queries on its own connection: the same bound, without starting a worker (a fresh process is already alone)."""
    # DuckDB and Arrow mapped before the cap, as in the worker: past the cap a query fails, not an import.
    from recipe_core.data import db  # noqa: F401

    limit_memory(settings.query_memory_bytes)
    return replace(settings, queries_in_process=True)


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """Run one command; the exit code. own_process: this process is the command's alone (`python -m recipe_core`),
    so a command that reads a dataset may bound it (see _bounded); a caller's process keeps its limits."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    try:
        settings = load_settings()
        if own_process and getattr(args, "reads_data", False):
            settings = _bounded(settings)
        store = Store(settings.store_url)
        out = plain(args.run(args, settings, store))
    except lifecycle.Refused as e:  # what depends on it, one per line on stdout, then the one error line
        lifecycle.print_refused(e, args.json)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # past the bound _bounded set (or the machine's own)
        print("error: out of memory (a command that reads a dataset may use RECIPE_QUERY_MEMORY_MB)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, never a traceback
        print(f"error: {unexpected(e)}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(out, ensure_ascii=False) if args.json else args.show(out), flush=True)
    except BrokenPipeError:  # `... | head -1` closed the pipe: what it wanted is read; no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
