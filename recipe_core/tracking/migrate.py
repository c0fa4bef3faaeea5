"""A store made by an older version, brought up to the current schema when it is opened (schema.engine)."""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from recipe_core.tracking import chunks


def add_new_columns(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """A store made by an older version gets the columns added since (each has a server default)."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for col in table.columns:
            if col.name not in present:
                kind = col.type.compile(dialect=engine.dialect)
                if col.nullable and col.server_default is None:
                    clause = ""
                else:  # booleans' defaults are SQL expressions (false()); '0' casts to false on every backend
                    default = col.server_default.arg if col.server_default is not None else ""
                    default = default if isinstance(default, str) else "0"
                    clause = f" NOT NULL DEFAULT '{default}'"
                with engine.begin() as conn:
                    conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {col.name} {kind}{clause}"))


def migrate_metric_rows(engine: sa.Engine, metric_chunks_table: sa.Table) -> None:
    """Older stores kept one row per point in a table `metrics`: move them into chunks, then drop that table, in
    one transaction (a racing process finds the table gone)."""
    if not sa.inspect(engine).has_table("metrics"):
        return
    old = sa.Table("metrics", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        rows = conn.execute(sa.select(old.c.run_id, old.c.key, old.c.step, old.c.value, old.c.epoch, old.c.wall_time)
                            .order_by(old.c.run_id, old.c.key, old.c.step)).all()
        by_series: dict[tuple, list] = {}
        for run_id, key, step, value, epoch, wall in rows:
            by_series.setdefault((run_id, key), []).append(
                (step, chunks.nan_if_none(value), chunks.nan_if_none(epoch), wall))
        rows_out = [row for (run_id, key), pts in by_series.items()
                    for row in chunks.encode(run_id, key, np.array(pts, chunks.DTYPE))]
        if rows_out:
            conn.execute(metric_chunks_table.insert(), rows_out)
        conn.execute(sa.text("DROP TABLE metrics"))
