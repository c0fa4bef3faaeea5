"""Shared fixtures: every test gets its own RECIPE_HOME (snapshots and SQLite store) under tmp_path."""
import os
import resource

# One torch thread in the test process (set before anything imports torch): its small nets gain nothing from
# more, and on 2 cores shared with the jobs, servers and browsers the tests start, more threads oversubscribe
# them (two MLP tests: 65 s with the default, 30 s with one thread, on a loaded machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from trained import WINE

from recipe_core.config import load_settings
from recipe_core.data import datasets
from recipe_core.tracking.store import Store


@pytest.fixture(autouse=True)
def address_space_restored():
    """A test that runs a worker's entry point in-process (executors.run_queued) lowers this process's soft
    address-space limit to a job's; put it back, or a later test's Chromium, which maps far more, dies at launch."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def settings(tmp_path, monkeypatch):
    home = tmp_path / "recipe_home"
    home.mkdir()
    # The environment too, so code that calls load_settings() itself (CLI, pages) sees the same home.
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    monkeypatch.delenv("RECIPE_MAX_UPLOAD_MB", raising=False)
    return load_settings({"RECIPE_HOME": str(home)})


@pytest.fixture
def store(settings):
    return Store(settings.store_url)


@pytest.fixture
def wine(settings, store):
    """The wine sample, ingested into this test's store (some modules define their own, shared one)."""
    return datasets.ingest_file(settings, store, WINE)
