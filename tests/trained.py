"""Helpers shared by tests that need trained runs or wait on a background process."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from recipe_core.config import Settings, TrainConfig, load_settings
from recipe_core.data import ingest
from recipe_core.tracking.records import RunRecord
from recipe_core.tracking.store import Store
from recipe_core.training import runs

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
WINE = SAMPLES / "wine.csv"


def train(settings: Settings, store: Store, record, target: str, **config) -> RunRecord:
    """One run of `record` -> `target` with these TrainConfig settings, trained in this process."""
    run = runs.create(store, record, target, TrainConfig(**config), author="tester")
    return runs.execute(settings, store, run.id)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2):
    """Poll predicate() until it returns something truthy, and return that; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


@contextmanager
def trained_inline(home: Path, dataset: str, target: str, models: tuple[str, ...], author: str = ""
                   ) -> tuple[Settings, Store, list[RunRecord]]:
    """The samples registered in home (RECIPE_HOME for the block, as the app sees it) and one finished run per
    model, trained in this process without checks."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECIPE_HOME", str(home))
    mp.delenv("RECIPE_STORE_URL", raising=False)
    try:
        settings = load_settings()
        store = Store(settings.store_url)
        ingest.ensure_samples(settings, store, ROOT / "sample_data")
        record = store.get_dataset(dataset)
        done = [runs.execute(settings, store, runs.create(store, record, target, TrainConfig(model=m, checks=False),
                                                          author=author).id) for m in models]
        yield settings, store, done
    finally:
        mp.undo()
