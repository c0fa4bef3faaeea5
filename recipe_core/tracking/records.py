"""What the store keeps, as frozen dataclasses: runs, their metric histories and summaries, splits, labels and notes.

Plain values with no SQL behind them, so a reader of records (a page, a report) needs no database machinery.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from recipe_core.errors import BadInput
from recipe_core.safetext import check_text

ACTIVE = ("queued", "running")  # a run is queued, running, then finished, failed, cancelled or pruned (tuning)
LOST = "lost"  # never stored: what an active run whose process stopped beating reads as (see rows.run_record)
MAX_KEY = 200  # characters of a metric name (the column's size)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_key(key: str) -> str:
    """A metric name the store can hold: 1 to MAX_KEY characters of text, no NUL."""
    key = check_text(key, f"the metric name {str(key)[:40]!r}")
    if not key or len(key) > MAX_KEY:
        raise BadInput(f"metric names must have 1 to {MAX_KEY} characters, got {len(key)}: {key[:40]!r}")
    return key


@dataclass(frozen=True)
class LabelEvent:
    event_id: str
    dataset_id: str
    target: str
    item: int
    annotator: str
    label: str | None  # None: the annotator skipped the item
    note: str = ""
    features: tuple[str, ...] = ()  # the columns the annotator says they used
    at: float = 0.0


@dataclass(frozen=True)
class SplitRecord:
    id: str
    dataset_id: str
    target: str
    seed: int
    fractions: tuple[float, float, float]  # train, val, test
    stratified: bool
    counts: dict  # {"train": n, "val": n, "test": n, "excluded": n}
    assignment: bytes  # compressed codes per snapshot row; see training/splits.py
    created_at: str = ""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    model: str
    config: dict
    dataset_id: str | None = None
    target: str | None = None
    split_id: str | None = None
    task: str | None = None
    seed: int | None = None
    code_version: str = ""
    author: str = ""
    status: str = "queued"
    reason: str = ""  # why it failed or was cancelled
    progress: float = 0.0
    cancel_requested: bool = False
    host: str = ""
    pid: int | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    heartbeat: float | None = None
    metrics: dict = field(default_factory=dict)  # final metrics, e.g. {"val_loss": 0.31, ...}
    checks: dict = field(default_factory=dict)  # {name: {"ok": bool|None, ...}}
    parent_id: str | None = None
    hypothesis: str = ""
    tags: tuple[str, ...] = ()
    source: str = "app"  # where the run came from: app, api, tensorboard, lightning
    archived: bool = False  # off the leaderboards unless asked for; nothing else changes
    deleted_at: float | None = None  # unix time of a soft delete: hidden, undoable until purged

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class History:
    """Every stored point of one metric of one run, ordered by step (ties in logging order). Arrays may be
    read-only views of the stored bytes: never modify them."""
    step: np.ndarray  # int64
    value: np.ndarray  # float64; NaN where the logged value was not finite
    epoch: np.ndarray | None  # float64; NaN where no epoch was logged; None when not read (Store.histories)
    wall_time: np.ndarray | None  # float64, unix seconds; None when not read

    def __len__(self) -> int:
        return len(self.step)


@dataclass(frozen=True)
class MetricSummary:
    """What the runs table shows of one metric of one run, computed from the chunk summaries alone."""
    n: int
    last_step: int
    last: float | None  # the value at the highest step
    min: float | None
    min_step: int | None
    max: float | None
    max_step: int | None


@dataclass(frozen=True)
class Comment:
    id: str
    run_id: str
    author: str
    text: str
    at: float = 0.0  # unix time; set when stored
