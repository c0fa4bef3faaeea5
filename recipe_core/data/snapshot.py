"""Where a dataset's immutable Parquet snapshot lives, and how its rows are numbered."""
from __future__ import annotations

from pathlib import Path

from recipe_core.config import Settings
from recipe_core.data.records import DatasetRecord

# The 0-based row position in the uploaded file. It is not stored: the snapshot keeps the file's row order,
# and DuckDB's read_parquet(file_row_number=true) numbers the rows, prunes row groups on ranges of that number
# (fast deep pages), and costs ingestion nothing (a stored row_number() made DuckDB write serially, ~1.8x).
ROW_ID = "__row_id"
FILE_ROW_NUMBER = "file_row_number"  # the column DuckDB adds; a user column of that name would collide
RESERVED_NAMES = (ROW_ID, FILE_ROW_NUMBER)


def snapshot_path(settings: Settings, record: DatasetRecord) -> Path:
    return settings.snapshots_dir / record.snapshot
