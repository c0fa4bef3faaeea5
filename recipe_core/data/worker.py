"""The query worker: a process whose memory and time are bounded, where a dataset's DuckDB queries run for the
server (`python -m recipe_core.data.worker`, one per dataset view, shared by its holders), and the server's side."""
from __future__ import annotations

import itertools
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb
import pyarrow as pa

from recipe_core.data import wire
from recipe_core.data.in_process import InProcess, query_failure
from recipe_core.data.sql import private_connection, quote_ident
from recipe_core.errors import QueryFailed, first_line

if TYPE_CHECKING:
    import pandas as pd

# Why a process: DuckDB's memory_limit does not bound string functions (one WHERE of repeat() grew the server past
# 22 GB). In the worker, an address-space limit turns that into an out-of-memory error of the worker alone, and a
# query that ignores its interrupt is ended by killing the worker (a new one starts on the next query).
ROOT = Path(__file__).resolve().parents[2]
KILL_GRACE = 0.25  # a query still running this share of its timeout after its interrupt: the worker is killed
MIN_GRACE_S = 2.0
IDLE_S = 300.0  # a worker nobody queried for this long exits; the next query starts a new one (~0.4 s)
WORKER_THREADS = 4  # queries of several sessions at once; DuckDB shares its own threads among them


# -- the worker process --------------------------------------------------------------------------------------
def serve(stdin, stdout) -> None:
    """The worker's loop: the first frame opens the connection, then queries run on a pool of threads."""
    opened = wire.read_frame(stdin)
    if opened is None:
        return
    header, _ = opened
    write_lock = threading.Lock()

    def reply(head: dict, payload: bytes = b"") -> None:
        with write_lock:
            wire.write_frame(stdout, head, payload)

    try:
        con = InProcess(header["config"], header["setup"], header["timeout_s"])
    except (duckdb.Error, MemoryError) as e:
        reply({"id": 0, "ok": False, "kind": "error", "message": f"the dataset could not be opened: {first_line(e)}"})
        return
    reply({"id": 0, "ok": True})
    streams: dict[int, Iterator] = {}  # an export's open result, by request id, between its batches

    def run(request: dict) -> None:
        rid, op = request["id"], request["op"]
        try:
            if op == "table":
                table, types = con.table(request["sql"], wire.decode_params(request["params"]))
                reply({"id": rid, "ok": True, "done": True, "types": types}, wire.to_ipc(table))
                return
            if op == "stream":
                streams[rid] = con.batches(request["sql"], wire.decode_params(request["params"]), request["batch_rows"])
            elif op == "close":
                _drop(streams, rid)
                return
            batch = next(streams[rid], None) if rid in streams else None
            if batch is None:
                _drop(streams, rid)
                reply({"id": rid, "ok": True, "done": True})
            else:
                reply({"id": rid, "ok": True, "done": False}, wire.to_ipc(batch))
        except QueryFailed as e:
            _drop(streams, rid)
            reply({"id": rid, "ok": False, "kind": e.kind, "message": e.detail})
        except MemoryError:
            _drop(streams, rid)
            reply({"id": rid, "ok": False, "kind": "memory", "message": ""})

    with ThreadPoolExecutor(max_workers=WORKER_THREADS) as pool:
        while (frame := wire.read_frame(stdin)) is not None:
            pool.submit(run, frame[0])
        # stdin closed: the server is gone or done with us; running queries are not waited for
        os._exit(0)


def _drop(streams: dict, rid: int) -> None:
    stream = streams.pop(rid, None)
    if stream is not None:
        stream.close()  # its cursor is closed now, not whenever the generator is collected


def main() -> None:
    # The limit first, before DuckDB and Arrow map their memory: every allocation after this counts.
    limit = int(os.environ.get("RECIPE_WORKER_MEMORY_BYTES", "0"))
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal is the server's to handle
    serve(sys.stdin.buffer, sys.stdout.buffer)


# -- the server's side of the pipe ---------------------------------------------------------------------------
class _Process:
    """One running worker: the pipe, a reader thread that hands each reply to its request, and the requests
    waiting for one."""

    def __init__(self, config: dict, setup: list[str], timeout_s: float, memory_bytes: int):
        env = dict(os.environ, RECIPE_WORKER_MEMORY_BYTES=str(memory_bytes),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "recipe_core.data.worker"], env=env, cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)
        self.waiting: dict[int, queue.Queue] = {}
        self.lock = threading.Lock()  # writing to the pipe, and the table of waiting requests
        self.dead = False
        self.killed_for: int | None = None  # the request whose runaway ended this worker
        wire.write_frame(self.proc.stdin, {"config": config, "setup": setup, "timeout_s": timeout_s})
        opened = wire.read_frame(self.proc.stdout)
        if opened is None or not opened[0].get("ok"):
            self.kill()
            message = opened[0].get("message") if opened else "the query worker did not start"
            raise QueryFailed(message or "the query worker did not start")
        threading.Thread(target=self._read, daemon=True, name="recipe-query-reader").start()

    def _read(self) -> None:
        while (frame := wire.read_frame(self.proc.stdout)) is not None:
            head, payload = frame
            with self.lock:
                box = self.waiting.get(head["id"])
            if box is not None:
                box.put((head, payload))
        with self.lock:  # the worker died (out of memory) or was killed: every waiting request learns it now
            self.dead = True
            for rid, box in self.waiting.items():
                kind = "died" if self.killed_for is None else "restarted"
                box.put(({"id": rid, "ok": False, "kind": kind, "message": ""}, b""))
            self.waiting.clear()
        self.proc.wait()

    def send(self, request: dict) -> queue.Queue:
        box: queue.Queue = queue.Queue()
        with self.lock:
            if self.dead:
                raise BrokenPipeError
            self.waiting[request["id"]] = box
            try:
                wire.write_frame(self.proc.stdin, request)
            except (BrokenPipeError, OSError):
                self.waiting.pop(request["id"], None)
                raise BrokenPipeError from None
        return box

    def forget(self, rid: int) -> None:
        with self.lock:
            self.waiting.pop(rid, None)

    def kill(self, for_request: int | None = None) -> None:
        with self.lock:  # from now on new queries go to a new worker; the waiting ones learn it from the reader
            self.killed_for = for_request
            self.dead = True
        try:
            self.proc.kill()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the worker exits when its input ends
        except OSError:
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerProcess:
    """A DuckDB connection in a worker process (see the module docstring). Safe to use from many threads; the
    worker starts at once (a setup that fails, fails here), exits after IDLE_S without queries, and starts again
    on the next query after it died, was killed or idled out."""

    def __init__(self, config: dict, setup: list[str], timeout_s: float, memory_bytes: int):
        self.config, self.setup, self.timeout_s, self.memory_bytes = config, setup, timeout_s, memory_bytes
        self._process: _Process | None = None
        self._start_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._busy = 0
        self.last_used = time.monotonic()
        self.starts = 0  # workers started so far (a test and the benchmark read it)
        self._holder: list = [None]  # always the current process: the finalizer holds this, never self
        weakref.finalize(self, WorkerProcess._stop, self._holder)
        _IDLE_REAPER.add(self)
        self._process = self._start()  # fail here, not on the first query, when the setup itself fails

    @staticmethod
    def _stop(holder: list) -> None:
        if holder[0] is not None:
            holder[0].close()

    def _start(self) -> _Process:
        self.starts += 1
        process = _Process(self.config, self.setup, self.timeout_s, self.memory_bytes)
        self._holder[0] = process
        return process

    def _current(self) -> _Process:
        with self._start_lock:
            if self._process is None or self._process.dead:
                self._process = self._start()
            return self._process

    @property
    def pid(self) -> int | None:
        return None if self._process is None or self._process.dead else self._process.proc.pid

    def close(self) -> None:
        with self._start_lock:
            if self._process is not None:
                self._process.close()
                self._process = None
                self._holder[0] = None
        _IDLE_REAPER.discard(self)

    def close_if_idle(self, idle_s: float) -> None:
        with self._start_lock:
            if self._process is not None and not self._busy and time.monotonic() - self.last_used > idle_s:
                self._process.close()
                self._process = None
                self._holder[0] = None

    def _ask(self, request: dict) -> tuple[dict, bytes]:
        """Send one request and wait for its reply; past the timeout and its grace, kill the worker."""
        with self._start_lock:
            self._busy += 1
        try:
            process = self._current()
            try:
                box = process.send(request)
            except BrokenPipeError:  # the worker died between two queries: once more, on a new one
                process = self._current()
                box = process.send(request)
            limit = self.timeout_s + max(MIN_GRACE_S, KILL_GRACE * self.timeout_s)
            try:
                head, payload = box.get(timeout=limit)
            except queue.Empty:
                process.forget(request["id"])
                process.kill(for_request=request["id"])  # it ignored its interrupt: it cannot take us along
                raise query_failure("timeout", "", self.timeout_s) from None
        finally:
            with self._start_lock:
                self._busy -= 1
                self.last_used = time.monotonic()
        if not head.get("ok"):
            raise query_failure(head.get("kind", "error"), head.get("message", ""), self.timeout_s)
        return head, payload

    def table(self, sql: str, params: list) -> tuple[pa.Table, list[str]]:
        head, payload = self._ask({"id": next(self._ids), "op": "table", "sql": sql,
                                   "params": wire.encode_params(params)})
        return wire.from_ipc(payload), head.get("types", [])

    def df(self, sql: str, params: list) -> pd.DataFrame:
        return _converted(*self.table(sql, params), lambda rel: rel.df())

    def rows(self, sql: str, params: list) -> list[tuple]:
        return _converted(*self.table(sql, params), lambda rel: rel.fetchall())

    def batches(self, sql: str, params: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        rid = next(self._ids)
        request = {"id": rid, "op": "stream", "sql": sql, "params": wire.encode_params(params),
                   "batch_rows": batch_rows}
        done = False
        try:
            while True:
                head, payload = self._ask(request)
                if head.get("done"):
                    done = True
                    return
                yield from wire.from_ipc(payload).to_batches()
                request = {"id": rid, "op": "next"}
        finally:
            if not done and self._process is not None and not self._process.dead:
                try:  # the reader stopped early (a closed download): free the worker's cursor
                    self._process.send({"id": rid, "op": "close"})
                    self._process.forget(rid)
                except BrokenPipeError:
                    pass


# Arrow to pandas and Python values exactly as DuckDB itself converts them (nullable ints, dates, decimals...),
# so a page looks the same whichever process ran its query. A private in-memory connection; no user SQL runs here.
_converter: duckdb.DuckDBPyConnection | None = None
_converter_lock = threading.Lock()
# Types Arrow cannot carry as themselves: HUGEINT (what count_if and sum return) arrives as DECIMAL(38,0), UUID as
# text; each is cast back, so rows hold ints and UUIDs as they did in-process.
_CAST_BACK = {"HUGEINT", "UHUGEINT", "UUID"}


def _converted(table: pa.Table, types: list[str], fetch):
    global _converter
    with _converter_lock:
        if _converter is None:
            _converter = private_connection(threads=1)
        cur = _converter.cursor()
    try:
        relation = cur.from_arrow(table)
        if _CAST_BACK.intersection(types):
            names = table.column_names
            relation = cur.from_arrow(table.rename_columns([f"c{i}" for i in range(len(names))])).project(", ".join(
                (f"CAST(c{i} AS {t})" if t in _CAST_BACK else f"c{i}") + " AS " + quote_ident(n)
                for i, (n, t) in enumerate(zip(names, types, strict=True))))
        return fetch(relation)
    finally:
        cur.close()


_shared: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_worker(config: dict, setup: list[str], timeout_s: float, memory_bytes: int) -> WorkerProcess:
    """The worker of exactly this connection, shared by every holder in this process (a page's cached dataset
    and the uncached ones of preflight, splits and labels): one process, not one per call. It ends with its
    last holder."""
    key = json.dumps([config, setup, timeout_s, memory_bytes], sort_keys=True)
    with _shared_lock:
        worker = _shared.get(key)
        if worker is None:
            worker = _shared[key] = WorkerProcess(config, setup, timeout_s, memory_bytes)
        return worker


class _IdleReaper:
    """One thread that closes the workers nobody has queried for IDLE_S (each idle one holds ~100 MB)."""

    def __init__(self):
        self._workers: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, worker: WorkerProcess) -> None:
        with self._lock:
            self._workers.add(worker)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="recipe-query-reaper")
                self._thread.start()

    def discard(self, worker: WorkerProcess) -> None:
        with self._lock:
            self._workers.discard(worker)

    def _run(self) -> None:
        while True:
            time.sleep(min(30.0, IDLE_S / 4))
            with self._lock:
                workers = list(self._workers)
            for worker in workers:
                worker.close_if_idle(IDLE_S)


_IDLE_REAPER = _IdleReaper()


if __name__ == "__main__":
    main()
