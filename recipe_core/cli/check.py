"""The CLI's `check` command: the recipe's checks on a user's own model, recorded as a run (source "check").

    python -m recipe_core check model.py:make_model --data data.npz [--loss cross_entropy] [--causal] [--json]

It exits 0 whenever the checks ran, whatever their verdicts (a red check is a finding, not an error); what cannot
be checked (a missing file, a bad .npz, a model that raises) is one `error:` line. torch loads only when it runs.
"""
from __future__ import annotations

import contextlib
import sys

LOSSES = ("cross_entropy", "bce", "mse", "l1", "huber")  # model_checks.LOSSES, without importing torch to list them


def cmd_check(args, settings, store) -> dict:
    from recipe_core.training import own_model

    # What the user's file prints (on import, in forward) goes to stderr: stdout holds the report (one JSON
    # document with --json) and nothing else.
    with contextlib.redirect_stdout(sys.stderr):
        own_model.limit_threads(settings.train_threads)
        x, y = own_model.load_arrays(args.data, causal=args.causal, max_bytes=settings.max_upload_bytes)
        factory = own_model.load_factory(args.factory)  # after the data: a bad .npz is refused before user code runs
        report = own_model.check_model(factory, x, y, loss=args.loss, causal=args.causal, name=args.name,
                                       tolerance=args.tolerance, store_url=settings.store_url,
                                       config={"file": args.factory, "data": args.data})
    return report.to_json()


def _mark(ok) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a "}.get(ok, "n/a ")


def show_check(out: dict) -> str:
    lines = [f"{_mark(c.get('ok'))} {name}: {c.get('message', '')}" for name, c in out["checks"].items()]
    lines.append(f"run {out['run_id']} in the store: open it on the Compare page")
    return "\n".join(lines)


def add_commands(sub) -> None:
    s = sub.add_parser("check", help="the recipe's checks on your own torch model (FILE.py:FACTORY), as a run")
    s.add_argument("factory", metavar="FILE.py:FACTORY", help="a zero-argument callable returning a fresh model")
    s.add_argument("--data", required=True, metavar="DATA.npz", help="numpy.savez(path, x=..., y=...), examples first")
    s.add_argument("--loss", choices=LOSSES, help="default: cross_entropy for integer y, mse for float y")
    s.add_argument("--causal", action="store_true", help="a sequence model: x token ids [N, T], y [N, T]")
    s.add_argument("--name", help="the run's name (default: check FACTORY)")
    s.add_argument("--tolerance", type=float, help="loss_at_init: how far above the formula, relative "
                                                   "(default RECIPE_CHECK_TOLERANCE, 0.1)")
    s.set_defaults(run=cmd_check, show=show_check)
