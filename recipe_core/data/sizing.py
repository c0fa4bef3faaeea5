"""How much work one query over a snapshot may do, and the split of many columns into few queries that respect it.

Read as sizing.NAME at call time (not imported by name), so a test can lower a threshold for every module at once.
"""
from __future__ import annotations

# Up to this many rows, distinct counts and quantiles are exact; above it DuckDB's sketches (HyperLogLog,
# t-digest) keep memory bounded under the connection's memory_limit (exact ones hold every value).
EXACT_MAX_ROWS = 1_000_000
# Query sizing. Each query must stay far under the watchdog (20 s) and the memory limit (256 MB):
QUERY_BUDGET = 80_000_000  # weighted column-rows per query: a few seconds on 2 cores
EXACT_CELLS = 5_000_000  # exact quantiles and distinct counts buffer every value: column-rows per query
DISTINCT_BUDGET = 2_000_000  # distinct (column, value) groups per GROUP BY query
MAX_COLUMNS = 200  # columns per wide aggregate query (DuckDB's cost per aggregate expression grows with width)
DISTINCT_MAX = 24  # count(DISTINCT) holds a few MB per aggregate whatever the data: at most this many per query
# Short tables are unpivoted (column name, value) and aggregated with one GROUP BY: thousands of columns cost
# one small query instead of thousands of aggregate expressions (5,000 columns: 4x faster).
LONG_MAX_ROWS = 100_000
LONG_CELLS = 2_000_000  # unpivoted rows per query
LONG_MAX_COLUMNS = 1000


def chunks(items: list, cost, max_items: int):
    """Split items into consecutive queries: each query's summed cost stays <= 1 and it has <= max_items."""
    chunk: list = []
    total = 0.0
    for it in items:
        w = cost(it)
        if chunk and (len(chunk) >= max_items or total + w > 1.0):
            yield chunk
            chunk, total = [], 0.0
        chunk.append(it)
        total += w
    if chunk:
        yield chunk
