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
import os
import socket
import sys
import time
import weakref
from numbers import Integral

from recipe_core.config import load_settings
from recipe_core.errors import BadInput, NotFound, RecipeError, first_line
from recipe_core.jsonsafe import plain
from recipe_core.tracking import access
from recipe_core.tracking.heartbeat import Heartbeat
from recipe_core.tracking.records import Comment, RunRecord, check_key, new_id, now_iso
from recipe_core.tracking.store import Store

FLUSH_SECONDS = 2.0  # the page sees a live run's points this late at most
FLUSH_POINTS = 50_000  # and a fast loop writes in batches of this many
MAX_STEP = 2**63 - 1  # steps are stored as int64


class Run:
    """A run being logged; use it as a context manager, or call finish() yourself."""

    def __init__(self, store: Store, record: RunRecord):
        self.store, self.record = store, record
        self.points: list[tuple] = []
        self.last_flush = time.monotonic()
        self.cancel_requested = False  # set when someone asks on the page to stop this run
        self.ended = False
        self.heartbeat = Heartbeat(store, [record.id]).start()  # a script that logs rarely is alive, not lost
        _open_runs.add(self)

    @property
    def run_id(self) -> str:
        return self.record.id

    def log(self, step: int, epoch: float | None = None, wall_time: float | None = None, **metrics) -> None:
        """Record metric values at a step (and optionally the epoch; wall_time defaults to now). Everything is
        checked here, so a point accepted is a point the store can hold."""
        self.check_open()
        step = checked_step(step)
        at = time.time() if wall_time is None else _number(wall_time, "wall_time")
        epoch = None if epoch is None else _number(epoch, "epoch")
        values = []
        for key, value in metrics.items():
            check_key(key)
            values.append((key, step, _number(value, f"metric {key!r}"), epoch, at))
        self.buffer(values)

    def check_open(self) -> None:
        if self.ended:
            raise BadInput(f"run {self.run_id} has ended; start a new run to log more")

    def buffer(self, points: list[tuple]) -> None:
        """Checked points (key, step, value, epoch, wall_time), written once the buffer is full or a flush is due."""
        self.points += points
        if len(self.points) >= FLUSH_POINTS or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points now (also marks the run alive). If the store cannot take them, they stay
        buffered for the next flush and the error says so: an acknowledged point is never dropped."""
        try:
            self.cancel_requested = self.store.log_metrics(self.run_id, self.points)
        except Exception as e:  # noqa: BLE001 - the store's own errors (connection lost, refused write)
            raise RecipeError(f"could not write {len(self.points):,} logged points of run {self.run_id} to the "
                              f"store ({type(e).__name__}: {first_line(e, 200)}); they are kept for the next flush") \
                from None
        self.points = []
        self.last_flush = time.monotonic()

    def note(self, text: str) -> None:
        """A note on this run, shown with the run on the Compare page."""
        self.store.add_comment(Comment(new_id(), self.run_id, self.record.author, str(text)))

    def finish(self, status: str = "finished", reason: str = "") -> None:
        """Write what is buffered and end the run; its final metrics are the last value of each key. If the
        points cannot be written, the run ends failed (never finished with points missing) and this raises."""
        if self.ended:
            return
        unwritten = None
        try:
            self.flush()
        except RecipeError as e:
            unwritten = e
            status, reason = "failed", str(e)
        self.ended = True
        self.heartbeat.stop()
        _open_runs.discard(self)
        last = {key: s.last for key, s in self.store.metric_summaries([self.run_id]).get(self.run_id, {}).items()}
        self.store.update_run(self.run_id, status=status, reason=reason[:2000], progress=1.0,
                              finished_at=now_iso(), heartbeat=time.time(), metrics=last)
        self.store.compact_metrics(self.run_id)
        if unwritten is not None:
            raise unwritten

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
              run_id: str | None = None, run_class: type[Run] | None = None) -> Run:
    """Register a run in the store (RECIPE_STORE_URL, else the local one) and return it for logging.

    parent is the id (or an unambiguous prefix) of the run this one changes; hypothesis says what the change
    should do. dataset and target tie the run to a dataset of the catalog, for the reference lines. run_class: a
    subclass of Run to return (rc.start_run gives training.script_run.ScriptRun, with watch and check).
    """
    store = Store(store_url or load_settings().store_url)
    try:
        config = plain(dict(config or {}))
    except RecursionError:
        raise BadInput("the config is nested too deeply to store") from None
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
        author=author or login_name(), status="running",
        host=socket.gethostname(), pid=os.getpid(), created_at=created_at or now_iso(),
        started_at=created_at or now_iso(),
        heartbeat=time.time(), parent_id=parent or None, hypothesis=str(hypothesis or ""),
        tags=tuple(str(t) for t in tags), source=source)
    return (run_class or Run)(store, store.add_run(record))


def checked_step(step) -> int:
    """A step the store can hold: an integer (not a bool) that fits in int64."""
    if isinstance(step, bool) or not isinstance(step, Integral) or not -MAX_STEP - 1 <= step <= MAX_STEP:
        raise BadInput(f"step must be an integer that fits in 64 bits, got {str(step)[:40]!r}")
    return int(step)


def _number(value, what: str) -> float:
    try:
        return float(value)  # also takes numpy and torch scalars
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{what} must be a number, got {type(value).__name__}") from None


def login_name() -> str:
    """Who runs this process (the default author of runs from a script or the CLI): RECIPE_AUTHOR, else the OS
    user. Whoever holds the store's credentials is an operator; this is only the name on what they write."""
    return access.operator().name


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
        try:
            if _uncaught:
                error = _uncaught[-1]
                run.finish("failed", f"{type(error).__name__}: {error}")
            else:
                run.finish()
        except RecipeError as e:  # at exit there is no caller left to tell but the terminal: one line
            print(f"recipe: {e}", file=sys.stderr)


sys.excepthook = _remember_uncaught
atexit.register(_end_open_runs)
