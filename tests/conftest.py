"""Shared fixtures: every test gets its own RECIPE_HOME (snapshots and SQLite store) under tmp_path."""
import pytest

from recipe_core.config import load_settings
from recipe_core.store import Store


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
