"""SQL text for DuckDB written safely: quoted names and literals, and the lockdown every query connection runs under."""
from __future__ import annotations

import duckdb


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def locked_config(**settings) -> dict:
    """A connection's config: nothing is installed or loaded behind our back, plus the given settings."""
    return {"autoinstall_known_extensions": False, "autoload_known_extensions": False, **settings}


def lockdown(allowed_paths: list[str] = (), prepare: list[str] = ()) -> list[str]:
    """The statements that shut a new connection: only allowed_paths readable, then the prepare statements (which
    may read them), then no setting can change any more (a WHERE cannot SET its way out)."""
    # DuckDB accepts allowed_paths only while external access is still on, hence this order.
    allowed = [f"SET allowed_paths=[{', '.join(quote_literal(p) for p in allowed_paths)}]"] if allowed_paths else []
    return [*allowed, "SET enable_external_access=false", *prepare, "SET lock_configuration=true"]


def private_connection(**settings) -> duckdb.DuckDBPyConnection:
    """An in-memory connection for the app's own SQL (parsing a WHERE, converting Arrow), locked down the same way."""
    con = duckdb.connect(config=locked_config(**settings))
    for statement in lockdown():
        con.execute(statement)
    return con
