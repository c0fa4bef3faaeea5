"""The CLI's dataset commands: ingest, datasets, profile, query, set-type.

The DuckDB side (recipe_core.data) is imported inside the commands that query a snapshot: `datasets` and
`set-type` read only the store.
"""
from __future__ import annotations

import json
from pathlib import Path

from recipe_core.cli import lifecycle as lifecycle_commands
from recipe_core.data.records import KINDS, DatasetRecord
from recipe_core.errors import RecipeError
from recipe_core.tracking import access, users


def dataset_json(r: DatasetRecord) -> dict:
    return {
        "id": r.id,
        "name": r.name,
        "n_rows": r.n_rows,
        "columns": [{"name": c.name, "type": c.kind, "dtype": c.dtype} for c in r.columns],
        "format": r.fmt,
        "source_name": r.source_name,
        "created_at": r.created_at,
        "notes": list(r.notes),
        "owner": r.owner,
        "visibility": r.visibility,
        "archived": r.archived,
    }


def cmd_ingest(args, settings, store) -> dict:
    from recipe_core.data import ingest
    from recipe_core.tracking import lifecycle

    path = Path(args.path)
    if not path.is_file():
        raise RecipeError(f"no such file: {args.path}")
    who = access.operator()
    record = ingest.ingest_file(settings, store, path, name=args.name, owner=who.name,
                                visibility="private" if args.private else "shared")
    # identical bytes already here: that dataset (brought back from the trash if need be); audited as an upload
    return dataset_json(lifecycle.claim_upload(store, who, record))


def cmd_datasets(args, settings, store) -> list:
    """The catalog (never the deleted datasets; archived ones marked); with --as, what that person may see."""
    records = store.list_datasets()
    if args.as_user:
        records = access.visible_datasets(users.identity(store, args.as_user), records)
    return [dataset_json(r) for r in records]


def cmd_profile(args, settings, store) -> dict:
    from recipe_core.data import profile
    from recipe_core.data.db import DatasetDB

    record = store.get_dataset(args.dataset)
    if args.target is not None:
        record.column(args.target)
    db = DatasetDB(settings, record)
    try:
        return profile.as_json(profile.profile(db, args.target))
    finally:
        db.close()


def cmd_query(args, settings, store) -> dict:
    from recipe_core.data import rows
    from recipe_core.data.db import DatasetDB
    from recipe_core.data.filters import RowQuery

    record = store.get_dataset(args.dataset)
    q = RowQuery(
        where=args.where or "",
        search=args.search or "",
        sort=args.sort,
        descending=args.desc,
        limit=args.limit,
        offset=args.offset,
    )
    db = DatasetDB(settings, record)
    try:
        page = rows.page(db, q)
    finally:
        db.close()
    found = [{"__row_id": int(i), **r} for i, r in zip(page.rows.index, page.rows.to_dict("records"), strict=True)]
    return {"n_total": page.n_total, "rows": found}


def cmd_set_type(args, settings, store) -> dict:
    from recipe_core.tracking import lifecycle

    record = store.get_dataset(args.dataset)
    return dataset_json(lifecycle.set_column_kind(store, access.operator(), record.id, args.column, args.type))


def show_dataset(out: dict) -> str:
    return f"{out['name']}  id {out['id']}  {out['n_rows']:,} rows  {len(out['columns'])} columns"


def show_datasets(out: list) -> str:
    return "\n".join(f"{d['id']}  {d['n_rows']:>10,} rows  {d['name']}  {d['visibility']}"
                     + (f" ({d['owner']})" if d["owner"] else "") + ("  [archived]" if d["archived"] else "")
                     for d in out) or "no datasets"


def show_profile(out: dict) -> str:
    lines = [f"{out['n_rows']:,} rows"]
    lines += [f"  {c['name']}: {c['type']}, {c['n_missing']:,} missing, {c['n_distinct']:,} distinct"
              for c in out["columns"]]
    lines += [f"warning [{w['kind']}] {w['column'] or ''}: {w['message']}" for w in out["warnings"]]
    return "\n".join(lines)


def show_query(out: dict) -> str:
    lines = [f"{out['n_total']:,} matching rows"]
    lines += [json.dumps(r, ensure_ascii=False, default=str) for r in out["rows"]]
    return "\n".join(lines)


def add_commands(sub) -> None:
    s = sub.add_parser("ingest", help="add a dataset file (CSV, TSV, Parquet, JSON, JSON Lines, xlsx, gzip)")
    s.add_argument("path")
    s.add_argument("--name")
    s.add_argument("--private", action="store_true", help="only its owner (you) and admins see it; default: shared")
    s.set_defaults(run=cmd_ingest, show=show_dataset)

    s = sub.add_parser("datasets", help="list the registered datasets; or delete, undo, archive, rename, share them")
    s.add_argument("--as", dest="as_user", metavar="EMAIL", help="only the datasets this person may see")
    s.set_defaults(run=cmd_datasets, show=show_datasets)
    lifecycle_commands.add_dataset_actions(s)

    s = sub.add_parser("profile", help="profile every column and list the data-quality warnings")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--target")
    s.set_defaults(run=cmd_profile, show=show_profile, reads_data=True)

    s = sub.add_parser("query", help="filter, search, sort and page through rows")
    s.add_argument("dataset", help="id or name")
    s.add_argument("--where", help="a SQL expression over the columns (validated, sandboxed)")
    s.add_argument("--search", help="case-insensitive text searched in text columns")
    s.add_argument("--sort", help="column to sort by")
    s.add_argument("--desc", action="store_true", help="sort descending")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--offset", type=int, default=0)
    s.set_defaults(run=cmd_query, show=show_query, reads_data=True)

    s = sub.add_parser("set-type", help="change how a column is treated")
    s.add_argument("dataset", help="id or name")
    s.add_argument("column")
    s.add_argument("type", choices=KINDS)
    s.set_defaults(run=cmd_set_type, show=show_dataset)
