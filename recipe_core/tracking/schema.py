"""The store's tables, and the engine for a URL: SQLite pragmas, tables created on first use, older stores migrated."""
from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from recipe_core.tracking.migrate import add_new_columns, migrate_metric_rows

metadata = sa.MetaData()
# What another library on the store's database (Optuna) raises when a second process loses a race to create its
# tables: callers outside tracking catch it by this name rather than importing SQLAlchemy.
DatabaseError = sa.exc.DatabaseError

datasets_table = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("fmt", sa.String(32), nullable=False),
    sa.Column("n_rows", sa.BigInteger, nullable=False),
    sa.Column("columns_json", sa.Text, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("notes_json", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.Text, nullable=False, server_default=""),
    sa.Column("visibility", sa.String(16), nullable=False, server_default="shared"),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", sa.Float, nullable=True),
)


splits_table = sa.Table(
    "splits",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("fractions_json", sa.Text, nullable=False),
    sa.Column("stratified", sa.Boolean, nullable=False),
    sa.Column("counts_json", sa.Text, nullable=False),
    sa.Column("assignment", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("dataset_id", "target", name="one_split_per_target"),
)

runs_table = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=True),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("split_id", sa.String(32), nullable=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("task", sa.String(32), nullable=True),
    sa.Column("seed", sa.Integer, nullable=True),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=True),
    sa.Column("finished_at", sa.String(40), nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),  # unix time of the job's last sign of life
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("checks_json", sa.Text, nullable=False),
    sa.Column("parent_id", sa.String(32), nullable=True),
    sa.Column("hypothesis", sa.Text, nullable=False),
    sa.Column("tags_json", sa.Text, nullable=False, server_default="[]"),
    sa.Column("source", sa.String(40), nullable=False, server_default="app"),  # app, api, tensorboard, lightning
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", sa.Float, nullable=True),
    sa.Index("runs_by_dataset", "dataset_id", "target"),
)

# One row per chunk of points of one run and metric: the layout and the codec are in chunks.py.
metric_chunks_table = sa.Table(
    "metric_chunks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("last_step", sa.BigInteger, nullable=False),  # the chunk's highest step
    sa.Column("last_value", sa.Float, nullable=True),  # its value there (NULL when not finite)
    sa.Column("min_value", sa.Float, nullable=True),
    sa.Column("min_step", sa.BigInteger, nullable=True),
    sa.Column("max_value", sa.Float, nullable=True),
    sa.Column("max_step", sa.BigInteger, nullable=True),
    sa.Column("step_first", sa.BigInteger, nullable=False),
    sa.Column("step_stride", sa.BigInteger, nullable=True),  # steps are step_first + i * stride; NULL: see steps
    sa.Column("steps", sa.LargeBinary, nullable=False),  # int64, little-endian; empty when evenly spaced
    sa.Column("vals", sa.LargeBinary, nullable=False),  # float64; NaN where not finite
    sa.Column("epochs", sa.LargeBinary, nullable=False),  # float64; empty when no point has an epoch
    sa.Column("walls", sa.LargeBinary, nullable=False),  # float64 unix seconds
    sa.Index("metric_chunks_by_run", "run_id", "key", "id"),
)

# Notes and comments on runs, visible to the whole team.
comments_table = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # client-made: a resend stores nothing new
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("comments_by_run", "run_id", "at"),
)

artifacts_table = sa.Table(
    "artifacts",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


# Human labels are events: a client-made id makes a resend (double click, rerun, retry) a no-op, and the latest
# event of an annotator for an item is their label.
labels_table = sa.Table(
    "labels",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("item", sa.BigInteger, nullable=False),  # row id in the snapshot
    sa.Column("annotator", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=True),  # NULL: skipped
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("features_json", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # unix time of the event
    sa.Index("labels_by_target", "dataset_id", "target", "annotator"),
)


# Roles of signed-in people, set by an operator (CLI) or an admin (Team page); anyone absent is a viewer.
users_table = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(320), primary_key=True),  # the identity: st.user's email, else its subject
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),
    sa.Column("added_by", sa.Text, nullable=False),
)

# Who did what and when: only ever appended to.
audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # what it touched: dataset, run, study, curve, user, label
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("audit_by_time", "at"),
)

# Soft-deleted groups of runs (a study, a learning curve): runs and datasets carry their own deleted_at; a group
# needs a row of its own so it is hidden, and undone, as one.
trash_table = sa.Table(
    "trash",
    metadata,
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("deleted_at", sa.Float, nullable=False),
    sa.Column("deleted_by", sa.Text, nullable=False),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers and one writer work at once; FULL sync so an acknowledged write survives a kill.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine(url: str) -> sa.Engine:
    """One engine per URL in this process, its tables there and up to date."""
    with _engines_lock:
        if url not in _engines:
            created = sa.create_engine(url, pool_pre_ping=True)
            if created.dialect.name == "sqlite":
                if created.url.database and created.url.database != ":memory:":
                    Path(created.url.database).parent.mkdir(parents=True, exist_ok=True)
                sa.event.listen(created, "connect", _sqlite_pragmas)
            _create_tables(created)
            _engines[url] = created
        return _engines[url]


def _create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    # Two processes opening a fresh store both see no tables and both CREATE: the loser's error is harmless,
    # and the next attempt finds the tables there.
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            add_new_columns(engine, metadata)
            migrate_metric_rows(engine, metric_chunks_table)
            return
        except sa.exc.DatabaseError:
            if attempt == attempts - 1:
                raise


def fetch_binary(conn: sa.Connection, q: sa.Select) -> list[dict]:
    """Rows as dicts. On PostgreSQL in binary format: psycopg's default text format sends bytea as hex, twice
    the bytes, and decoding it took more than half of reading 10M points."""
    if conn.dialect.name != "postgresql":
        return [dict(r._mapping) for r in conn.execute(q)]
    compiled = q.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    with conn.connection.driver_connection.cursor(binary=True) as cur:
        cur.execute(str(compiled), compiled.params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
