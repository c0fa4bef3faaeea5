"""Where a dataset's DuckDB queries run: in a worker process whose memory and time are bounded (the server), or in
this process (a training job, which is its own bounded process already).

DuckDB's memory_limit does not bound string functions: one WHERE of repeat() grew the server past 22 GB. In the
worker, an address-space limit turns that into an out-of-memory error of the worker alone, and a query that ignores
its interrupt is ended by killing the worker (a new one starts on the next query). Results cross the pipe as Arrow
IPC, never pickle; requests as JSON.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import queue
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb
import pyarrow as pa

from recipe_core.errors import QueryFailed

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
KILL_GRACE = 0.25  # a query still running this share of its timeout after its interrupt: the worker is killed
MIN_GRACE_S = 2.0
IDLE_S = 300.0  # a worker nobody queried for this long exits; the next query starts a new one (~0.4 s)
WORKER_THREADS = 4  # queries of several sessions at once; DuckDB shares its own threads among them


# -- running a query, in whichever process -------------------------------------------------------------------
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


def _failure(kind: str, text: str, timeout_s: float) -> QueryFailed:
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
            raise _failure(_failure_kind(e), _first_line(e), self.timeout_s) from None
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
            raise _failure(_failure_kind(e), _first_line(e), self.timeout_s) from None
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
                    raise _failure(_failure_kind(e), _first_line(e), self.timeout_s) from None
                finally:
                    _WATCHDOG.done(token)
                yield batch
        finally:
            cur.close()


# -- the pipe: frames of a JSON header and a binary payload ---------------------------------------------------
def _write_frame(out, header: dict, payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    out.write(struct.pack(">IQ", len(head), len(payload)) + head + payload)
    out.flush()


def _read_frame(stream) -> tuple[dict, bytes] | None:
    prefix = stream.read(12)
    if len(prefix) < 12:
        return None  # the other end is gone
    n_head, n_payload = struct.unpack(">IQ", prefix)
    head = stream.read(n_head)
    payload = stream.read(n_payload) if n_payload else b""
    if len(head) < n_head or len(payload) < n_payload:
        return None
    return json.loads(head), payload


def _ipc(data: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def _from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()


def _encode_params(params) -> list:
    """Bound parameters as JSON; the types the app binds besides JSON's own (dates, decimals...) carry a tag."""
    return [_encode(p) for p in params]


def _encode(p):
    if p is None or isinstance(p, (bool, int, float, str)):
        return p
    if isinstance(p, (list, tuple)):
        return [_encode(v) for v in p]
    if isinstance(p, dict):
        return {"t": "dict", "v": {str(k): _encode(v) for k, v in p.items()}}
    if isinstance(p, datetime):
        return {"t": "datetime", "v": p.isoformat()}
    if isinstance(p, date):
        return {"t": "date", "v": p.isoformat()}
    if isinstance(p, dtime):
        return {"t": "time", "v": p.isoformat()}
    if isinstance(p, timedelta):
        return {"t": "timedelta", "v": p.total_seconds()}
    if isinstance(p, Decimal):
        return {"t": "decimal", "v": str(p)}
    if isinstance(p, (bytes, bytearray)):
        return {"t": "bytes", "v": bytes(p).hex()}
    if hasattr(p, "item"):  # numpy scalars
        return p.item()
    raise QueryFailed(f"a query parameter of type {type(p).__name__} cannot be sent to the query worker")


_DECODE = {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "time": dtime.fromisoformat,
           "timedelta": lambda v: timedelta(seconds=v), "decimal": Decimal, "bytes": bytes.fromhex,
           "dict": lambda v: {k: _decode(x) for k, x in v.items()}}


def _decode_params(params: list) -> list:
    return [_decode(p) for p in params]


def _decode(p):
    if isinstance(p, list):
        return [_decode(v) for v in p]
    if isinstance(p, dict):
        return _DECODE[p["t"]](p["v"])
    return p


# -- the worker process --------------------------------------------------------------------------------------
def serve(stdin, stdout) -> None:
    """The worker's loop: the first frame opens the connection, then queries run on a pool of threads."""
    opened = _read_frame(stdin)
    if opened is None:
        return
    header, _ = opened
    write_lock = threading.Lock()

    def reply(head: dict, payload: bytes = b"") -> None:
        with write_lock:
            _write_frame(stdout, head, payload)

    try:
        con = InProcess(header["config"], header["setup"], header["timeout_s"])
    except (duckdb.Error, MemoryError) as e:
        reply({"id": 0, "ok": False, "kind": "error", "message": f"the dataset could not be opened: {_first_line(e)}"})
        return
    reply({"id": 0, "ok": True})
    streams: dict[int, Iterator] = {}  # an export's open result, by request id, between its batches

    def run(request: dict) -> None:
        rid, op = request["id"], request["op"]
        try:
            if op == "table":
                table, types = con.table(request["sql"], _decode_params(request["params"]))
                reply({"id": rid, "ok": True, "done": True, "types": types}, _ipc(table))
                return
            if op == "stream":
                streams[rid] = con.batches(request["sql"], _decode_params(request["params"]), request["batch_rows"])
            elif op == "close":
                _drop(streams, rid)
                return
            batch = next(streams[rid], None) if rid in streams else None
            if batch is None:
                _drop(streams, rid)
                reply({"id": rid, "ok": True, "done": True})
            else:
                reply({"id": rid, "ok": True, "done": False}, _ipc(batch))
        except QueryFailed as e:
            _drop(streams, rid)
            reply({"id": rid, "ok": False, "kind": e.kind, "message": e.detail})
        except MemoryError:
            _drop(streams, rid)
            reply({"id": rid, "ok": False, "kind": "memory", "message": ""})

    with ThreadPoolExecutor(max_workers=WORKER_THREADS) as pool:
        while (frame := _read_frame(stdin)) is not None:
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
        self.proc = subprocess.Popen([sys.executable, "-m", "recipe_core.data.query_process"], env=env, cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)
        self.waiting: dict[int, queue.Queue] = {}
        self.lock = threading.Lock()  # writing to the pipe, and the table of waiting requests
        self.dead = False
        self.killed_for: int | None = None  # the request whose runaway ended this worker
        _write_frame(self.proc.stdin, {"config": config, "setup": setup, "timeout_s": timeout_s})
        opened = _read_frame(self.proc.stdout)
        if opened is None or not opened[0].get("ok"):
            self.kill()
            message = opened[0].get("message") if opened else "the query worker did not start"
            raise QueryFailed(message or "the query worker did not start")
        threading.Thread(target=self._read, daemon=True, name="recipe-query-reader").start()

    def _read(self) -> None:
        while (frame := _read_frame(self.proc.stdout)) is not None:
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
                _write_frame(self.proc.stdin, request)
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
                raise _failure("timeout", "", self.timeout_s) from None
        finally:
            with self._start_lock:
                self._busy -= 1
                self.last_used = time.monotonic()
        if not head.get("ok"):
            raise _failure(head.get("kind", "error"), head.get("message", ""), self.timeout_s)
        return head, payload

    def table(self, sql: str, params: list) -> tuple[pa.Table, list[str]]:
        head, payload = self._ask({"id": next(self._ids), "op": "table", "sql": sql,
                                   "params": _encode_params(params)})
        return _from_ipc(payload), head.get("types", [])

    def df(self, sql: str, params: list) -> pd.DataFrame:
        return _converted(*self.table(sql, params), lambda rel: rel.df())

    def rows(self, sql: str, params: list) -> list[tuple]:
        return _converted(*self.table(sql, params), lambda rel: rel.fetchall())

    def batches(self, sql: str, params: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
        rid = next(self._ids)
        request = {"id": rid, "op": "stream", "sql": sql, "params": _encode_params(params), "batch_rows": batch_rows}
        done = False
        try:
            while True:
                head, payload = self._ask(request)
                if head.get("done"):
                    done = True
                    return
                yield from _from_ipc(payload).to_batches()
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
            _converter = duckdb.connect(config={"enable_external_access": False, "threads": 1})
        cur = _converter.cursor()
    try:
        relation = cur.from_arrow(table)
        if _CAST_BACK.intersection(types):
            names = table.column_names
            relation = cur.from_arrow(table.rename_columns([f"c{i}" for i in range(len(names))])).project(", ".join(
                (f"CAST(c{i} AS {t})" if t in _CAST_BACK else f"c{i}") + ' AS "' + n.replace('"', '""') + '"'
                for i, (n, t) in enumerate(zip(names, types))))
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
