"""Settings from the environment, read once per call so tests can change them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recipe_core.errors import BadInput


@dataclass(frozen=True)
class Settings:
    home: Path  # RECIPE_HOME: snapshots and the default SQLite store live here
    store_url: str  # RECIPE_STORE_URL: SQLAlchemy URL of the runs/labels/catalog store
    max_upload_bytes: int  # RECIPE_MAX_UPLOAD_MB: caps the upload and its decompressed size alike
    query_timeout_s: float = 20.0  # a user query running longer is interrupted
    duckdb_memory_limit: str = "256MB"  # per DuckDB database; keeps browsing 10M rows well under 500 MB
    duckdb_threads: int = 2  # the machines have 2 cores

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"


def load_settings(env: os._Environ | dict | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("RECIPE_HOME") or ".recipe").expanduser().resolve()
    store_url = env.get("RECIPE_STORE_URL") or f"sqlite:///{home / 'recipe.db'}"
    raw_mb = env.get("RECIPE_MAX_UPLOAD_MB") or "1024"
    try:
        max_mb = float(raw_mb)
    except ValueError:
        raise BadInput(f"RECIPE_MAX_UPLOAD_MB must be a number of megabytes, not {raw_mb!r}") from None
    if max_mb <= 0:
        raise BadInput(f"RECIPE_MAX_UPLOAD_MB must be positive, not {raw_mb!r}")
    return Settings(home=home, store_url=store_url, max_upload_bytes=int(max_mb * 1024 * 1024))
