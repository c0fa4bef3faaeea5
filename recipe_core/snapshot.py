"""Where a dataset's immutable Parquet snapshot lives, and its one hidden column."""
from __future__ import annotations

from pathlib import Path

from recipe_core.config import Settings
from recipe_core.store import DatasetRecord

# The 0-based row position in the uploaded file. It is stored so that row ids stay stable across every
# process that reads the snapshot, and so that ranges of it prune Parquet row groups (fast deep pages).
ROW_ID = "__row_id"


def snapshot_path(settings: Settings, record: DatasetRecord) -> Path:
    return settings.snapshots_dir / record.snapshot
