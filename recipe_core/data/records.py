"""A dataset of the catalog and its columns, as plain frozen dataclasses: what the store keeps and the data reads."""
from __future__ import annotations

from dataclasses import dataclass

from recipe_core.errors import NotFound

KINDS = ("numeric", "categorical", "text", "boolean", "datetime")
VISIBILITIES = ("private", "shared")


@dataclass(frozen=True)
class Column:
    name: str  # exactly as in the file (after de-duplication)
    dtype: str  # DuckDB storage type in the snapshot, e.g. BIGINT, DOUBLE, VARCHAR
    kind: str  # how the app treats it: one of KINDS; the user may override it


@dataclass(frozen=True)
class DatasetRecord:
    id: str  # content hash of the uploaded bytes: identical uploads share one dataset
    name: str  # unique display name
    source_name: str  # the uploaded file's name, shown only, never used as a path
    fmt: str  # sniffed format: csv, tsv, parquet, json, jsonl, xlsx (with "+gzip" when compressed)
    n_rows: int
    columns: tuple[Column, ...]
    snapshot: str  # file name of the Parquet snapshot inside Settings.snapshots_dir
    created_at: str = ""  # ISO time, UTC
    notes: tuple[str, ...] = ()  # ingestion warnings, e.g. renamed duplicate column names
    size_bytes: int = 0  # of the uploaded file
    owner: str = ""  # who uploaded it (the identity's name); "" for the samples, which belong to no one
    visibility: str = "shared"  # "shared" with the team, or "private" to its owner (see tracking/access.py)
    archived: bool = False  # out of the pickers unless asked for; nothing else changes
    deleted_at: float | None = None  # unix time of a soft delete: hidden, undoable until purged

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise NotFound(f"dataset {self.name!r} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]
