"""Where queued runs execute: local worker processes (the default) or the workers of a Dask cluster.

Both run the same function, `run_queued`, which trains one stored run to its end through runs.execute and
reports which worker ran it; a tuning trial's pruner comes as its argument, so this module knows no Optuna. A Dask
worker needs the same RECIPE_HOME (the dataset snapshots) and store URL as the app: on one machine that is
automatic; across machines, a shared filesystem and a PostgreSQL store.
"""
from __future__ import annotations

import os
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as local_wait
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Callable

from recipe_core import limits
from recipe_core.errors import BadInput, first_line

LOCAL = "local"
CONNECT_TIMEOUT = "10s"  # to reach a Dask scheduler


@contextmanager
def executor(address: str = LOCAL, workers: int = 2):
    """An object with submit(fn, *args) -> future and wait_one(futures) -> the done ones, over local processes
    or the workers of a Dask cluster.

    address: "local", or "dask://host:port" (a running scheduler; `dask scheduler` and `dask worker` start one).
    """
    if address in ("", LOCAL):
        # spawn: a fresh interpreter per worker; forking a process that holds torch threads and DB pools is unsafe
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn")) as pool:
            yield _Local(pool)
        return
    if not address.startswith("dask://") or ":" not in address[len("dask://"):]:
        raise BadInput(f"executor must be 'local' or dask://HOST:PORT, not {address!r}")
    from distributed import Client  # only when a cluster is asked for

    try:
        client = Client("tcp://" + address[len("dask://"):], timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {first_line(e)}") from None
    try:
        yield _Dask(client)
    finally:
        client.close()


def check(address: str) -> str:
    """The address, once it is valid and (for a cluster) reachable: a one-line error before anything starts.
    Opening a local pool starts no process (they start on the first submit), so this is cheap for "local".
    For the CLI only: a Dask client runs what the scheduler sends it, so the web process never opens one."""
    address = (address or LOCAL).strip()
    with executor(address, workers=1):
        pass
    return address


def reachable(address: str, timeout_s: float = 3.0) -> str:
    """An operator-listed address (Settings.executor_address), checked the way the web process may: a TCP
    connect, closed at once, no Dask protocol spoken (nothing is received, so nothing can be unpickled)."""
    if address in ("", LOCAL):
        return LOCAL
    host, _, port = address[len("dask://"):].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {first_line(e)}") from None
    return address


class _Local:
    def __init__(self, pool: ProcessPoolExecutor):
        self.pool = pool

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def wait_one(self, futures) -> set:
        """Block until at least one future is done; return the done ones."""
        return local_wait(futures, return_when=FIRST_COMPLETED).done


class _Dask:
    def __init__(self, client):
        self.client = client

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)  # every trial is new work, never a cached result

    def wait_one(self, futures) -> set:
        from distributed import wait

        return set(wait(list(futures), return_when="FIRST_COMPLETED").done)


def worker_name() -> str:
    """The Dask worker's address when running on one, else host:pid of this process."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _on_dask() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def run_queued(home: str, store_url: str, run_id: str, report: Callable[[int, float], None] | None = None) -> dict:
    """Train a queued run in this (worker) process. report(percent, val_loss), when given, is a tuning trial's
    pruner (tuning.TrialReporter): called at each 5% of the training, it raises Pruned to stop the run; it crosses
    to the worker pickled, so it must be an instance of a top-level class. Returns what the caller tells the
    study: {"run_id", "status", "val_loss", "worker", "reason"}."""
    from recipe_core.config import load_settings
    from recipe_core.tracking.store import Store
    from recipe_core.training import jobs

    settings = load_settings({**os.environ, "RECIPE_HOME": home, "RECIPE_STORE_URL": store_url})
    store = Store(store_url)
    worker = worker_name()
    here = not _on_dask()  # a local worker process shares this machine: its slots and a job's memory limit
    if here:
        limits.limit_memory(settings.job_memory_bytes)
    run = jobs.execute(settings, store, run_id, slot=here, report=report, host=worker)
    return {"run_id": run.id, "status": run.status, "val_loss": run.metrics.get("val_loss"), "worker": worker,
            "reason": run.reason}
