"""What the readers and the import share: a run found on disk, the points budget every reader draws from, and
the parts of a metric series ready to write."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipe_core.errors import BadInput
from recipe_core.safetext import check_text
from recipe_core.tracking.chunks import CHUNK_POINTS
from recipe_core.tracking.records import MAX_KEY

# Metric series (Lightning columns, TensorBoard tags) one run may have. Each costs a store transaction when written
# (~4 ms with SQLite's synchronous=FULL), and a page cannot chart 100k of them anyway.
MAX_SERIES = 10_000


@dataclass
class FoundRun:
    name: str
    source: str  # "tensorboard" or "lightning"
    files: list[Path]  # the data files: event files (in the order TensorBoard reads them), or one metrics.csv
    labels: dict  # path -> how messages name it (relative to the import, never a temp folder)
    hparams: Path | None = None
    run_id: str = ""


class Budget:
    """The metric points one import holds, all runs together (every run is read before the first is written)."""

    def __init__(self, max_points: int):
        self.max_points, self.held = max_points, 0

    def take(self, n: int, label: str) -> None:
        self.held += n
        if self.held > self.max_points:
            raise BadInput(f"{label} brings the import past {self.max_points:,} metric points, the limit "
                           "RECIPE_MAX_IMPORT_POINTS sets; import fewer runs at once, or raise the limit")


@dataclass
class Part:
    """Points of one metric as read from one file, ready to write: numpy views of the compact arrays read."""
    step: np.ndarray
    value: np.ndarray
    epoch: np.ndarray | None
    wall: np.ndarray | float  # a Lightning file has no times: its mtime for every point
    keep: np.ndarray | None = None  # False where a restart orphaned the point (TensorBoard drops those)

    def __len__(self) -> int:
        return len(self.step) if self.keep is None else int(np.count_nonzero(self.keep))

    def slices(self):
        """(step, value, epoch, wall_time) for store.log_arrays, one store chunk at a time: a call holds ~100 bytes
        a point while it writes, and a series that fits one chunk is not rewritten when its run finishes."""
        for start in range(0, len(self.step), CHUNK_POINTS):
            cut = slice(start, start + CHUNK_POINTS)
            keep = slice(None) if self.keep is None else self.keep[cut]
            step = self.step[cut][keep]
            if len(step):
                wall = np.full(len(step), self.wall) if isinstance(self.wall, float) else self.wall[cut][keep]
                yield (step, self.value[cut][keep], None if self.epoch is None else self.epoch[cut][keep], wall)


def check_name(name: str, label: str) -> str:
    """A metric name the store can hold, else one line naming the file."""
    shown = repr(printable(name[:40]) + ("..." if len(name) > 40 else ""))
    if not name or len(name) > MAX_KEY:
        raise BadInput(f"{label} has an empty or too long metric name {shown} (1 to {MAX_KEY} characters)")
    return check_text(name, f"{label}: the metric name {shown}")


def printable(text: str) -> str:
    """A file name, path or cell for a message: every control character shown as '?' (a tab or a line break too,
    unlike safetext.one_line: what the file holds is shown, not reflowed)."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)
