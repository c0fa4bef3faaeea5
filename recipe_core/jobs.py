"""Training jobs as separate processes: start, wait for a free slot, cancel, and notice the ones that died.

The web server never trains: it starts `python -m recipe_core.jobs RUN_ID` and polls the store. A crash, an
out-of-memory kill or a cancel ends that process only, and the run is marked failed or cancelled with why; a
process that vanished without a word (kill -9, a reboot) stops beating, and its run reads lost.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from recipe_core import capacity
from recipe_core.config import Settings, load_settings
from recipe_core.errors import CANCELLED, Cancelled, RecipeError
from recipe_core.heartbeat import Heartbeat
from recipe_core.store import RunRecord, Store, now_iso

CANCEL_GRACE_S = 5.0  # after a cancel request, the job has this long to stop by itself before it is terminated
ROOT = Path(__file__).resolve().parents[1]


def start(settings: Settings, store: Store, run_id: str) -> subprocess.Popen:
    """Start the run's process; a watcher thread marks the run failed if the process dies without a verdict."""
    proc = _spawn(settings, ["recipe_core.jobs", run_id])
    store.update_run(run_id, only_if_active=True, pid=proc.pid, host=socket.gethostname())
    threading.Thread(target=_watch, args=(store, run_id, proc), daemon=True, name=f"job-{run_id}").start()
    return proc


def start_command(settings: Settings, argv: list[str]) -> subprocess.Popen:
    """Start `python -m recipe_core ARGV...` in the background (a study or a learning curve driving its trials),
    detached from the web server: it goes on if the page is closed. Its output goes to jobs.log."""
    proc = _spawn(settings, ["recipe_core", *argv])
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it, so it never lingers as a zombie
    return proc


def _spawn(settings: Settings, module_and_args: list[str]) -> subprocess.Popen:
    """`python -m MODULE ARGS...` in its own session, with this store and home; output to jobs.log (for a
    developer; never shown raw)."""
    env = dict(os.environ, RECIPE_HOME=str(settings.home), RECIPE_STORE_URL=settings.store_url,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    settings.home.mkdir(parents=True, exist_ok=True)
    log = open(settings.home / "jobs.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", *module_and_args], env=env, cwd=str(ROOT),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


def _watch(store: Store, run_id: str, proc: subprocess.Popen) -> None:
    code = proc.wait()
    if code == 0:
        return
    if store.get_run(run_id).cancel_requested:  # terminated by cancel() before it could record that itself
        store.update_run(run_id, only_if_active=True, status="cancelled", reason=CANCELLED, finished_at=now_iso())
        return
    what = f"signal {-code}" if code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL:
        what += " (killed; out of memory?)"
    store.update_run(run_id, only_if_active=True, status="failed", reason=f"the training process died ({what})",
                     finished_at=now_iso())


def cancel(store: Store, run_id: str) -> bool:
    """Ask the run to stop (it checks about once a second); terminate its process if it has not stopped soon."""
    run = store.get_run(run_id)
    if not run.active:
        return False
    if run.status == "queued" and run.pid is None:
        return store.update_run(run_id, only_if_active=True, status="cancelled", reason="cancelled before it started",
                                finished_at=now_iso())
    store.request_cancel(run_id)
    if run.pid and run.host == socket.gethostname():
        threading.Thread(target=_terminate_later, args=(store, run_id, run.pid), daemon=True).start()
    return True


def _terminate_later(store: Store, run_id: str, pid: int) -> None:
    deadline = time.monotonic() + CANCEL_GRACE_S
    while time.monotonic() < deadline:
        if not store.get_run(run_id).active:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGTERM)  # the job turns it into Cancelled (see main) and records it
    except ProcessLookupError:
        pass


def execute(settings: Settings, store: Store, run_id: str, slot: bool = True, **kwargs) -> RunRecord:
    """Train a queued run in this process once one of the machine's training slots is free (capacity.py), alive
    (heartbeat) all the while; kwargs go to runs.execute. slot=False: the slots are someone else's (a Dask
    cluster's workers)."""
    with Heartbeat(store, [run_id]), (capacity.training_slot(settings, store, run_id) if slot
                                      else nullcontext(True)) as free:
        if not free:  # cancelled while it waited
            return store.get_run(run_id)
        from recipe_core import runs  # torch and scikit-learn: only once there is a slot to train in

        return runs.execute(settings, store, run_id, **kwargs)


def _on_sigterm(signum, frame):
    raise Cancelled(CANCELLED)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m recipe_core.jobs RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        settings = load_settings()
        capacity.limit_memory(settings.job_memory_bytes)  # before torch maps its libraries: everything counts
        store = Store(settings.store_url)
        run = execute(settings, store, argv[0])
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if run.status in ("finished", "cancelled", "failed") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
