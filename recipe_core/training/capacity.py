"""What one machine gives training: a few runs at once, a memory limit per run, and a refusal up front for a model
that cannot fit.

Six jobs at once made the Data page take 7.5 s on 2 cores, and a width-4096 x depth-20 MLP (~5 GB) passed every
check. Slots are file locks under RECIPE_HOME, so they are shared by every process of this machine (the server's
jobs, a study's workers, the CLI) and freed by the kernel when a process dies, even by kill -9.
"""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager

from recipe_core.config import MB, Settings, TrainConfig
from recipe_core.data.records import Column
from recipe_core.errors import BadInput
from recipe_core.tracking.records import now_iso
from recipe_core.tracking.store import Store
from recipe_core.units import human_bytes

POLL_S = 0.5  # a queued run looks for a free slot (and for a cancel) this often
# What a training process maps before its first tensor: Python, torch, scikit-learn and DuckDB (measured 1.2 GB of
# address space; the limit counts address space, not resident memory).
PROCESS_BYTES = 1536 * MB
FLOAT32_BYTES = 4


@contextmanager
def training_slot(settings: Settings, store: Store, run_id: str):
    """Hold one of the machine's settings.max_jobs training slots; until one is free the run waits, queued, and a
    cancel ends the wait. Yields True with a slot, False when the run was cancelled while it waited."""
    folder = settings.home / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(settings.max_jobs):
            handle = open(folder / f"slot-{i}.lock", "a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield True
            finally:
                handle.close()  # closing releases the lock, as the kernel does when the process dies
            return
        if store.get_run(run_id).cancel_requested:
            store.update_run(run_id, only_if_active=True, status="cancelled", finished_at=now_iso(),
                             reason="cancelled while it waited for a free training slot")
            yield False
            return
        time.sleep(POLL_S)


def slots_in_use(settings: Settings) -> int:
    """How many of the machine's training slots are held now (a slot that is free is taken and let go at once)."""
    folder, held = settings.home / "slots", 0
    for i in range(settings.max_jobs):
        try:
            with open(folder / f"slot-{i}.lock", "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held += 1
        except FileNotFoundError:  # never used yet
            pass
    return held


def n_features_at_most(columns: tuple[Column, ...], config: TrainConfig) -> int:
    """An upper bound of the encoded width (features.py): a number and its missing flag per numeric-like column,
    the top values, "other" and a missing flag per categorical one, the hashed words and a flag per text one."""
    per_kind = {"categorical": config.top_k + 2, "text": config.text_features + 1}
    return sum(per_kind.get(c.kind, 2) for c in columns)


def mlp_bytes(config: TrainConfig, n_rows: int, n_features: int, n_classes: int) -> int:
    """About what an MLP run needs at its peak (address space, with the process itself).

    The data: the float32 matrix, its zeroed twin for the input-independent check, and the columns as read. The
    models: weights, gradients and Adam's two moments (4 copies) of the run's net and its twin, alive together,
    plus the capacity ladder's widest net (twice the width: four times the weights) when the checks run, and one
    batch of activations per layer.
    """
    def parameters(width: int) -> int:
        return n_features * width + width + (config.depth - 1) * (width * width + width) + width * n_classes + n_classes

    nets = 2 * parameters(config.width) + (parameters(2 * config.width) if config.checks else 0)
    data = 3 * n_rows * n_features * FLOAT32_BYTES
    activations = 3 * config.batch_size * 2 * config.width * config.depth * FLOAT32_BYTES
    return PROCESS_BYTES + data + 4 * FLOAT32_BYTES * nets + activations


def check_fits(settings: Settings, config: TrainConfig, n_rows: int, n_features: int, n_classes: int) -> None:
    """Refuse, in one line, an MLP that would not fit in a job's memory (RECIPE_JOB_MEMORY_MB)."""
    if config.model != "mlp":
        return
    need = mlp_bytes(config, n_rows, n_features, n_classes)
    if need > settings.job_memory_bytes:
        raise BadInput(f"this MLP needs about {human_bytes(need)} (width {config.width} x depth {config.depth}, for a "
                       f"dataset of {n_rows:,} rows and up to {n_features:,} features), more than a training job "
                       f"may use ({human_bytes(settings.job_memory_bytes)}, RECIPE_JOB_MEMORY_MB); make it narrower or "
                       "shallower")
