"""Browsing a dataset's rows and warnings as the Data page shows them, in plain values: a filter as a person reads it,
the row a link asks for and the page that holds it, how many pages, a row's detail cut to what a browser can hold."""
from __future__ import annotations

import hashlib

from recipe_core.units import ceil_div

NO_VALUE_OPS = ("is missing", "is not missing")
PAGE_SIZE = 50
DEFAULT_QUERY = ((), "", "", None, False, None)  # (filters, WHERE, search, sort, descending, sample seed): file order
DETAIL_MAX_CHARS = 20_000  # a 10 MB cell would freeze the browser; the CSV export has it whole


def filter_text(f) -> str:
    """A filter as a person reads it: a number bare (petal_length > 4), text quoted (species = 'setosa')."""
    if f.op in NO_VALUE_OPS:
        return f"{f.column} {f.op}"
    try:
        float(f.value)
    except (TypeError, ValueError):
        return f"{f.column} {f.op} {f.value!r}"
    return f"{f.column} {f.op} {f.value}"


def n_pages(n_rows: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, ceil_div(n_rows, page_size))


def linked_row(link: str | None, last: tuple | None, dataset_id: str) -> int | str | None:
    """The row a `row` in the URL asks for, or None when there is nothing to follow: no link, or the one this page
    put there itself (`last`: the (dataset id, row text) it last wrote), also when left over from another dataset.
    Text that is not a number comes back as it is, for the detail to say there is no such row."""
    if link is None or last == (dataset_id, link):
        return None
    if last is not None and last[0] != dataset_id and last[1] == link:
        return None
    try:
        return int(link)
    except ValueError:
        return link


def page_holding(row_id, n_rows: int, query: tuple, page_size: int = PAGE_SIZE) -> int | None:
    """The page that shows this row, when the rows are in file order (row ids are file positions); else None."""
    if isinstance(row_id, int) and 0 <= row_id < n_rows and query == DEFAULT_QUERY:
        return row_id // page_size + 1
    return None


def grid_key(dataset_id: str, query: tuple, extremes, offset: int) -> str:
    """A key for the rows grid that changes with what it shows, so a clicked position is read against its rows."""
    shows = hashlib.sha256(repr((query, extremes, offset)).encode()).hexdigest()[:16]
    return f"rows_table:{dataset_id}:{shows}"


def detail_values(values: dict, max_chars: int = DETAIL_MAX_CHARS) -> list[str]:
    """A row's values as text, each cut to max_chars with its full length said."""
    shown = [str(v) for v in values.values()]
    return [v if len(v) <= max_chars else f"{v[:max_chars]}… ({len(v):,} characters)" for v in shown]


def imbalance_ratio(counts: list[int]) -> float:
    """The largest class over the smallest (an empty class counts as one)."""
    return max(counts) / max(1, min(counts))


def by_kind(warnings: list) -> dict[str, list]:
    """The data-quality warnings grouped by their kind, in the order the kinds first appear."""
    grouped: dict[str, list] = {}
    for w in warnings:
        grouped.setdefault(w.kind, []).append(w)
    return grouped
