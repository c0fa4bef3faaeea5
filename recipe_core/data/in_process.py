"""A DuckDB connection in this process whose every query has a deadline, and the one-line errors a failed query
becomes (a timeout, out of memory, DuckDB's own message): what the query worker runs, and a training job directly."""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Iterator

import duckdb
import pyarrow as pa

from recipe_core.errors import QueryFailed, first_line

if TYPE_CHECKING:
    import pandas as pd


class _Watchdog:
    """One thread that interrupts every query outliving its deadline.

    A threading.Timer per query costs a thread start (1-4 ms on a busy 2-core machine), paid two or three
    times per page; registering a deadline here costs microseconds.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list = []  # (deadline, token, cursor); finished tokens are dropped lazily
        self._live: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, cursor, seconds: float) -> int:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="recipe-query-watchdog", daemon=True)
                self._thread.start()
            token = next(self._tokens)
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, cursor))
            self._live.add(token)
            self._cond.notify()
            return token

    def done(self, token: int) -> None:
        with self._cond:  # once this returns, the query can no longer be interrupted
            self._live.discard(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, cursor = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                try:
                    cursor.interrupt()
                except Exception:  # the cursor closed meanwhile: nothing left to stop
                    pass


_WATCHDOG = _Watchdog()


def _failure_kind(e: BaseException) -> str:
    # Arrow readers report a DuckDB interrupt as an OSError with DuckDB's text, hence the text checks.
    text = str(e)
    if isinstance(e, duckdb.InterruptException) or text.startswith("INTERRUPT"):
        return "timeout"
    if isinstance(e, (duckdb.OutOfMemoryException, MemoryError)) or text.startswith("Out of Memory"):
        return "memory"
    return "error"


def query_failure(kind: str, text: str, timeout_s: float) -> QueryFailed:
    """The one-line error of a failed query; kind and detail ride along so the worker can send it back."""
    if kind == "timeout":
        error = QueryFailed(f"the query took longer than {timeout_s:g} s and was stopped")
    elif kind in ("memory", "died"):
        error = QueryFailed("the query needed more memory than allowed; narrow it down")
    elif kind == "restarted":
        error = QueryFailed("the query was stopped together with another one that ran away; run it again")
    else:
        error = QueryFailed(f"the query failed: {text[:200]}")
    error.kind, error.detail = kind, text  # what the worker sends back, to be raised again on the server
    return error


class InProcess:
    """A DuckDB connection in this process, each query on its own cursor under the watchdog."""

    def __init__(self, config: dict, setup: list[str], timeout_s: float):
        self.timeout_s = timeout_s
        con = duckdb.connect(config=config)
        for statement in setup:
            con.execute(statement)
        self._con = con
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def _run(self, sql: str, params: list, fetch):
        with self._lock:
            cur = self._con.cursor()
        token = _WATCHDOG.watch(cur, self.timeout_s)
        try:
            return fetch(cur.execute(sql, params))
        except (duckdb.Error, OSError, pa.ArrowException, MemoryError) as e:
            raise query_failure(_failure_kind(e), first_line(e), self.timeout_s) from None
        finally:
            _WATCHDOG.done(token)
            cur.close()

    def df(self, sql: str, params: list) -> pd.DataFrame:
        return self._run(sql, params, lambda cur: cur.df())

    def rows(self, sql: str, params: list) -> list[tuple]:
        return self._run(sql, params, lambda cur: cur.fetchall())

    def table(self, sql: str, params: list) -> tuple[pa.Table, list[str]]:
        """The result as Arrow, and the DuckDB type of each column (Arrow has no HUGEINT: see _converted)."""
        with self._lock:
            cur = self._con.cursor()
        token = _WATCHDOG.watch(cur, self.timeout_s)
        try:
            # A relation straight to Arrow: fetching an executed cursor's result as Arrow copies every row once more.
            relation = cur.sql(sql, params=params or None)
            if relation is None:  # a statement without a result
                return pa.table({}), []
            return relation.to_arrow_table(), [str(t) for t in relation.types]
        except (duckdb.Error, OSError, pa.ArrowException, MemoryError) as e:
            raise query_failure(_failure_kind(e), first_line(e), self.timeout_s) from None
        finally:
            _WATCHDOG.done(token)
            cur.close()

    def batches(self, sql: str, params: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream a large result as Arrow batches; the watchdog limits the work per batch, not the whole."""
        with self._lock:
            cur = self._con.cursor()
        try:
            reader = None
            while True:
                token = _WATCHDOG.watch(cur, self.timeout_s)
                try:
                    if reader is None:
                        reader = cur.sql(sql, params=list(params) or None).to_arrow_reader(batch_rows)
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (duckdb.Error, OSError, pa.ArrowException, MemoryError) as e:
                    raise query_failure(_failure_kind(e), first_line(e), self.timeout_s) from None
                finally:
                    _WATCHDOG.done(token)
                yield batch
        finally:
            cur.close()

