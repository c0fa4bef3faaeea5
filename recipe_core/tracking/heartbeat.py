"""Liveness: a process that owns runs marks them alive every few seconds while it lives.

A kill -9, an out-of-memory kill or a lost machine leaves no last word, so the silence is the signal: the store
reads an active run whose beats stopped as lost (lost_after_s). A beat is one small UPDATE on its own thread,
so a long step (a big fit, a slow epoch, a script that logs once an hour) never reads as a death.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from recipe_core.tracking.records import ACTIVE

if TYPE_CHECKING:  # the store reads runs as lost by lost_after_s: it imports this module
    from recipe_core.tracking.store import Store

BEATS_BEFORE_LOST = 6


def heartbeat_s() -> float:
    """How often a process marks its runs alive (RECIPE_HEARTBEAT_S, default 10 s)."""
    try:
        return max(0.05, float(os.environ.get("RECIPE_HEARTBEAT_S") or 10.0))
    except ValueError:
        return 10.0


def lost_after_s() -> float:
    """An active run silent this long reads lost: a minute by default, well within the two the team expects."""
    return BEATS_BEFORE_LOST * heartbeat_s()


class Heartbeat:
    """Marks runs alive (those still in `statuses`) from a daemon thread; a context manager.

    The process that runs a run beats for it while it is queued or running; the driver of a study or a learning
    curve beats only while its runs wait, queued (statuses=("queued",)), so a worker that died is not covered up.
    """

    def __init__(self, store: Store, run_ids=(), statuses: tuple[str, ...] = ACTIVE):
        self.store, self.statuses = store, statuses
        self.run_ids: set[str] = set(run_ids)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        self.run_ids.add(run_id)

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, daemon=True, name="recipe-heartbeat")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            ids = list(self.run_ids)
            if not ids:
                continue
            try:
                self.store.beat(ids, self.statuses)
            except Exception:  # noqa: BLE001 - a store that is briefly unreachable: the next beat tries again
                pass

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
