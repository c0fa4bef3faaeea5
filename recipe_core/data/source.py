"""What a reader hands the snapshot writer: the Source (a FROM clause, column names and types), the names made
unique, which DuckDB types are stored as they are, and a reader error's one line."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from recipe_core.data.snapshot import RESERVED_NAMES
from recipe_core.errors import first_line

CHUNK = 1 << 20  # bytes per read when hashing, staging and decompressing
SAMPLE_BYTES = 1 << 20  # the head of a file that sniffing looks at
MAX_LINE_BYTES = 64 << 20  # one CSV line or JSON record; a 10 MB cell must fit
NULL_STRINGS = ("", "NA", "N/A", "NULL", "null", "#N/A")  # what spreadsheets and R/pandas write for missing
KEEP_TYPES = re.compile(
    r"^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)|DATE|TIMESTAMP.*|VARCHAR)$"
)


@dataclass
class Source:
    """What to read with DuckDB: a FROM clause, its columns by position, and how to store each one."""

    fmt: str
    path: Path
    from_sql: str
    names: list[str]  # final user column names, in file order
    types: list[str]  # DuckDB types as read
    notes: list[str] = field(default_factory=list)
    csv: dict | None = None  # explicit read_csv options, so a failed type guess can be widened and retried
    ascii_head: bool = False  # the sniffed sample was plain ASCII: UTF-8 was a guess, Latin-1 is as likely
    check_integers: bool = False  # rows beyond the sniffer's sample: a later 2.5 must not become 3
    json: str | None = None  # read_json call (no closing parenthesis) while its types come from a sample
    exact: set[int] = field(default_factory=set)  # checked BIGINT columns whose values a double cannot hold
    row_bound: int | None = None  # the file cannot hold more rows than this (None: unknown before reading)


def unique_names(raw: list[str]) -> tuple[list[str], list[str]]:
    """Keep names exactly; fill blanks; suffix duplicates _2, _3 (DuckDB names are case-insensitive)."""
    taken = {n.lower() for n in raw} | set(RESERVED_NAMES)
    seen: set[str] = set(RESERVED_NAMES)
    names, notes = [], []
    for i, name in enumerate(raw):
        if name == "":
            new = f"column_{i + 1}"
            while new.lower() in taken or new.lower() in seen:
                new += "_"
            notes.append(f"column {i + 1} has no name; named it {new!r}")
        elif name.lower() in seen:
            n = 2
            while f"{name}_{n}".lower() in taken or f"{name}_{n}".lower() in seen:
                n += 1
            new = f"{name}_{n}"
            why = "is reserved for the row id" if name.lower() in RESERVED_NAMES else "is a duplicate"
            notes.append(f"column name {name!r} {why}; renamed to {new!r}")
        else:
            new = name
        seen.add(new.lower())
        names.append(new)
    return names, notes


def text_notes(names: list[str], types: list[str]) -> list[str]:
    """The notes on columns of a type the app does not handle, which are stored as text."""
    return [
        f"column {n!r} ({t}) is stored as text" + (" (JSON)" if nested(t) else "")
        for n, t in zip(names, types, strict=True)
        if not KEEP_TYPES.match(t)
    ]


def nested(dtype: str) -> bool:
    return dtype.endswith("]") or dtype.startswith(("STRUCT", "MAP", "UNION"))


def error_line(e: Exception, drop_quoted_paths: bool = False) -> str:
    """An error's first line without DuckDB's "... Error: " prefix (and, when asked, without file paths)."""
    line = re.sub(r"^[A-Za-z ]*Error: ", "", first_line(e))
    if drop_quoted_paths:
        # our temp paths mean nothing to the person who uploaded the file
        line = re.sub(r"""(in )?file ["'][^"']*["'],?\s*""", "", line)
    return line

