"""The Python API for a user's own training script, on any machine that reaches the store:

    import recipe_core as rc
    with rc.start_run(name="wd-1e-4", config={"lr": 3e-4, "wd": 1e-4}, parent=base_id,
                      hypothesis="weight decay should close the train/val gap") as run:
        for step in range(n_steps):
            ...
            run.log(step, train_loss=loss.item(), val_loss=val)

Points are buffered and written in batches, so logging costs about a microsecond a point. A script that raises
leaves its run marked failed (cancelled on Ctrl-C) with every point logged before the crash.
"""
from __future__ import annotations

import atexit
import getpass
import os
import socket
import sys
import time
import weakref
from numbers import Integral

from recipe_core.config import load_settings
from recipe_core.errors import BadInput, NotFound
from recipe_core.jsonsafe import plain
from recipe_core.store import Comment, RunRecord, Store, new_id, now_iso

FLUSH_SECONDS = 2.0  # the page sees a live run's points this late at most
FLUSH_POINTS = 50_000  # and a fast loop writes in batches of this many
MAX_KEY = 200


class Run:
    """A run being logged; use it as a context manager, or call finish() yourself."""

    def __init__(self, store: Store, record: RunRecord):
        self.store, self.record = store, record
        self.points: list[tuple] = []
        self.last_flush = time.monotonic()
        self.cancel_requested = False  # set when someone asks on the page to stop this run
        self.ended = False
        _open_runs.add(self)

    @property
    def run_id(self) -> str:
        return self.record.id

    def log(self, step: int, epoch: float | None = None, wall_time: float | None = None, **metrics) -> None:
        """Record metric values at a step (and optionally the epoch; wall_time defaults to now)."""
        if self.ended:
            raise BadInput(f"run {self.run_id} has ended; start a new run to log more")
        if isinstance(step, bool) or not isinstance(step, Integral):
            raise BadInput(f"step must be an integer, got {step!r}")
        at = time.time() if wall_time is None else float(wall_time)
        for key, value in metrics.items():
            try:
                value = float(value)  # also takes numpy and torch scalars
            except (TypeError, ValueError):
                raise BadInput(f"metric {key!r} must be a number, got {type(value).__name__}") from None
            self.points.append((key, step, value, epoch, at))
        if len(self.points) >= FLUSH_POINTS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points now (also marks the run alive)."""
        for key in {p[0] for p in self.points}:
            _check_key(key)
        self.cancel_requested = self.store.log_metrics(self.run_id, self.points)
        self.points = []
        self.last_flush = time.monotonic()

    def note(self, text: str) -> None:
        """A note on this run, shown with the run on the Compare page."""
        self.store.add_comment(Comment(new_id(), self.run_id, self.record.author, str(text)))

    def finish(self, status: str = "finished", reason: str = "") -> None:
        """Write what is buffered and end the run; its final metrics are the last value of each key."""
        if self.ended:
            return
        try:
            self.flush()
        finally:
            self.ended = True
            _open_runs.discard(self)
            last = {key: s.last for key, s in self.store.metric_summaries([self.run_id]).get(self.run_id, {}).items()}
            self.store.update_run(self.run_id, status=status, reason=reason[:2000], progress=1.0,
                                  finished_at=now_iso(), heartbeat=time.time(), metrics=last)
            self.store.compact_metrics(self.run_id)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, error, _tb) -> bool:
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("cancelled", "interrupted (Ctrl-C)")
        else:
            self.finish("failed", f"{kind.__name__}: {error}")
        return False  # the script's exception goes on as it would without us


def start_run(name: str | None = None, config: dict | None = None, parent: str | None = None,
              hypothesis: str | None = None, tags: tuple[str, ...] | list[str] = (), *, dataset: str | None = None,
              target: str | None = None, model: str | None = None, author: str | None = None,
              store_url: str | None = None, source: str = "api", created_at: str | None = None,
              run_id: str | None = None) -> Run:
    """Register a run in the store (RECIPE_STORE_URL, else the local one) and return it for logging.

    parent is the id (or an unambiguous prefix) of the run this one changes; hypothesis says what the change
    should do. dataset and target tie the run to a dataset of the catalog, for the reference lines.
    """
    store = Store(store_url or load_settings().store_url)
    config = plain(dict(config or {}))
    if parent:
        try:
            parent = store.get_run(parent).id
        except NotFound:
            raise BadInput(f"parent run {parent!r} is not in the store") from None
    dataset_id = store.get_dataset(dataset).id if dataset else None
    seed = config.get("seed")
    record = RunRecord(
        id=run_id or new_id(), name=str(name or f"run-{time.strftime('%Y%m%d-%H%M%S')}")[:500],
        model=str(model or config.get("model") or "custom")[:64], config=config, dataset_id=dataset_id,
        target=target, seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        author=author or os.environ.get("RECIPE_AUTHOR") or login_name("unknown"), status="running", host=socket.gethostname(),
        pid=os.getpid(), created_at=created_at or now_iso(), started_at=created_at or now_iso(),
        heartbeat=time.time(), parent_id=parent or None, hypothesis=str(hypothesis or ""),
        tags=tuple(str(t) for t in tags), source=source)
    return Run(store, store.add_run(record))


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY:
        raise BadInput(f"metric names must have 1 to {MAX_KEY} characters, got {key[:40]!r}")


def login_name(fallback: str = "anonymous") -> str:
    """Who runs this process (the default author of runs from a script or the CLI)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return fallback


# A script that never ends its run (no `with`, no finish()) still gets it ended at exit: failed when an uncaught
# exception is what ended the script, finished otherwise.
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_uncaught: list[BaseException] = []
_previous_hook = sys.excepthook


def _remember_uncaught(kind, error, tb) -> None:
    _uncaught.append(error)
    _previous_hook(kind, error, tb)


def _end_open_runs() -> None:
    for run in list(_open_runs):
        if _uncaught:
            error = _uncaught[-1]
            run.finish("failed", f"{type(error).__name__}: {error}")
        else:
            run.finish()


sys.excepthook = _remember_uncaught
atexit.register(_end_open_runs)
