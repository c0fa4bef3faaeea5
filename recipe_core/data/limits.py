"""The ingest limits (RECIPE_MAX_*: upload size, rows, cells, columns, one value) and the line refusing each."""
from __future__ import annotations

from recipe_core.config import Settings
from recipe_core.errors import BadInput
from recipe_core.units import human_bytes

NO_MEMORY = "the file needs more memory to ingest than this server allows"


def row_cap(settings: Settings, n_columns: int) -> int:
    return min(settings.max_rows, settings.max_cells // max(1, n_columns))


def over_cap(settings: Settings, n_columns: int) -> str:
    if row_cap(settings, n_columns) == settings.max_rows:
        return f"the file has more than {settings.max_rows:,} rows (the RECIPE_MAX_ROWS limit)"
    return (f"the file has more than {settings.max_cells:,} cells, rows x columns "
            f"(the RECIPE_MAX_CELLS limit; {n_columns:,} columns allow {row_cap(settings, n_columns):,} rows)")


def cell_cap(settings: Settings) -> str:
    return f"{human_bytes(settings.max_cell_bytes)} (the RECIPE_MAX_CELL_MB limit)"


def check_width(n_columns: int, settings: Settings) -> None:
    if n_columns > settings.max_columns:
        raise BadInput(f"the file has more than {settings.max_columns:,} columns (the RECIPE_MAX_COLUMNS limit)")


def check_size(size: int, settings: Settings) -> None:
    if size == 0:
        raise BadInput("the file is empty")
    if size > settings.max_upload_bytes:
        raise BadInput(too_big(f"the file ({human_bytes(size)})", settings))


def too_big(what: str, settings: Settings) -> str:
    return f"{what} is larger than the {human_bytes(settings.max_upload_bytes)} limit (RECIPE_MAX_UPLOAD_MB)"

