"""worker.py, in_process.py: a dataset's queries run in a worker process whose memory and time are bounded.

The expert WHERE grammar already refuses the unbounded functions by name (test_queries.py); these tests send the
attacks straight to the connection, past every check, and measure that the process that asked lives on.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from snapshots import make_db

from recipe_core.data import rows, worker
from recipe_core.data.db import DatasetDB
from recipe_core.data.filters import RowQuery
from recipe_core.data.in_process import InProcess
from recipe_core.errors import QueryFailed

ROOT = Path(__file__).resolve().parents[1]
WINE = "SELECT range AS __row_id, 12.0 + (range % 30) / 10.0 AS alcohol, 'c' || (range % 3)::VARCHAR AS cultivar " \
       "FROM range(178)"
# The attacks of the issue, as SQL that would reach DuckDB if the grammar let it through.
RUNAWAYS = [
    "SELECT count(*) FROM data WHERE length(repeat(CAST(alcohol AS VARCHAR), 50000000)) > 0",
    "SELECT length(repeat('a', 2000000000)) > 0",
    "SELECT printf('%0999999999d', 1) <> ''",
    "SELECT length(lpad('a', 1500000000, 'b')) > 0",
    "SELECT levenshtein(repeat('a', 120000), repeat('b', 120000)) > 0",
]


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_query_that_ignores_its_interrupt_is_ended_by_killing_the_worker(tmp_path):
    db = make_db(tmp_path, WINE, query_timeout_s=0.5)
    first = db._con.pid
    start = time.monotonic()
    with pytest.raises(QueryFailed, match=r"took longer than 0.5 s and was stopped"):
        # one regexp_replace over 60 MB: DuckDB checks its interrupt between vectors, not inside one call (~6 s)
        db.rows("SELECT length(regexp_replace(repeat('ab', 30000000), 'a', 'c', 'g'))")
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 + worker.MIN_GRACE_S + 1.5
    assert rows.page(db, RowQuery(limit=3)).n_total == 178  # a new worker answers at once
    assert db._con.pid != first
    db.close()


def test_runaways_cost_the_asking_process_nothing(tmp_path):
    # A "server" process (the subprocess) sends each runaway to its dataset's worker; the test measures both.
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from pathlib import Path
        from recipe_core.errors import QueryFailed
        from snapshots import make_db
        from test_query_process import RUNAWAYS, WINE, peak_rss
        db = make_db(Path({str(tmp_path)!r}), WINE, query_timeout_s=4.0)
        out = []
        for sql in RUNAWAYS:
            start = time.monotonic()
            try:
                db.rows(sql)
                error = None
            except QueryFailed as e:
                error = str(e)
            worker = db._con.pid
            out.append({{"sql": sql, "error": error, "seconds": time.monotonic() - start,
                         "worker_peak": peak_rss(worker) if worker else 0}})
        out.append({{"server_peak": peak_rss(__import__("os").getpid()), "rows": db.rows("SELECT count(*) FROM data")}})
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    *results, last = json.loads(done.stdout.strip().splitlines()[-1])
    for r in results:
        assert r["error"] is not None and "\n" not in r["error"], r  # each one refused, in one line
        assert r["seconds"] < 2 * 4.0, r  # never past twice the timeout
        assert r["worker_peak"] < 2.2 * 2**30, r  # the worker's address space is capped at 2 GB
    assert last["server_peak"] < 1.5 * 2**30  # the asking process never grew
    assert last["rows"] == [[178]]  # and its dataset still answers


def test_the_worker_ends_when_the_server_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from pathlib import Path
        from snapshots import make_db
        from test_query_process import WINE
        db = make_db(Path({str(tmp_path)!r}), WINE)
        print(db._con.pid, flush=True)
        time.sleep(60)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    worker = int(server.stdout.readline())
    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists() and \
            "zombie" not in Path(f"/proc/{worker}/status").read_text():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or "zombie" in Path(f"/proc/{worker}/status").read_text()


def test_datasets_of_one_snapshot_share_one_worker(tmp_path):
    a = make_db(tmp_path, WINE, "w")
    b = DatasetDB(a.settings, a.record)
    assert a._con is b._con and a._con.starts == 1
    b.close()
    assert a.rows("SELECT count(*) FROM data") == [(178,)]  # closing one holder leaves the other working
    with pytest.raises(QueryFailed, match="closed"):
        b.rows("SELECT 1")
    a.close()


def test_an_idle_worker_exits_and_comes_back_on_the_next_query(tmp_path):
    db = make_db(tmp_path, WINE, "idle")
    pid = db._con.pid
    db._con.close_if_idle(0.0)
    assert db._con.pid is None and not Path(f"/proc/{pid}/cmdline").exists() or \
        "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert db.rows("SELECT count(*) FROM data") == [(178,)] and db._con.starts == 2
    db.close()


def test_values_cross_the_pipe_with_their_types(tmp_path):
    db = make_db(tmp_path, WINE, "types")
    sent = [date(2024, 1, 31), datetime(2024, 1, 31, 13, 45, 1, 5), Decimal("1.25"), 2**62, -0.5, "café'; --", None,
            True, float("nan")]
    got = db.rows("SELECT " + ", ".join("?" for _ in sent), sent)[0]
    assert list(got[:8]) == sent[:8] and got[8] != got[8]
    sql = "SELECT DATE '2024-01-02' AS d, NULL::BIGINT AS n UNION ALL SELECT NULL, 3"
    frame, same = db.df(sql), InProcess({}, [], 5.0).df(sql, [])
    assert list(frame.dtypes) == list(same.dtypes)  # pandas types exactly as DuckDB's own .df()
    db.close()
