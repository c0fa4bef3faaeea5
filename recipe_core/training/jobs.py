"""Training jobs as separate processes: start, wait for a free slot, cancel, and notice the ones that died.

The web server never trains: it starts `python -m recipe_core.training.jobs RUN_ID` and polls the store. A crash, an
out-of-memory kill or a cancel ends that process only, and the run is marked failed or cancelled with why (its
last "error:" line included); a process that vanished without a word (kill -9, a reboot) stops beating, and its
run reads lost. Searches and learning curves run as background commands with their own files under jobs/.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from recipe_core import limits
from recipe_core.config import Settings, TrainConfig, load_settings
from recipe_core.data.records import DatasetRecord
from recipe_core.errors import CANCELLED, Cancelled, NotFound, RecipeError
from recipe_core.tracking import audit
from recipe_core.tracking.access import Identity, require_change
from recipe_core.tracking.heartbeat import Heartbeat
from recipe_core.tracking.records import RunRecord, new_id, now_iso
from recipe_core.tracking.store import Store
from recipe_core.training import capacity

CANCEL_GRACE_S = 5.0  # after a cancel request, the job has this long to stop by itself before it is terminated
ROOT = Path(__file__).resolve().parents[2]


def submit(settings: Settings, store: Store, record: DatasetRecord, target: str, config: TrainConfig,
           author: str = "", parent_id: str | None = None, hypothesis: str = "") -> RunRecord:
    """Train one run in its own process: refuse a config that cannot train before any run exists
    (runs.preflight), register the run, start its process. What the Train and Tune pages do to train a run."""
    from recipe_core.training import runs  # torch: a job process limits its memory before it loads (see main)

    runs.preflight(settings, record, target, config)
    run = runs.create(store, record, target, config, author=author, parent_id=parent_id,
                      hypothesis=hypothesis.strip())
    start(settings, store, run.id)
    return run


def start(settings: Settings, store: Store, run_id: str) -> subprocess.Popen:
    """Start the run's process; a watcher thread marks the run failed if the process dies without a verdict."""
    log = jobs_dir(settings) / f"run-{run_id}.log"
    proc = _spawn(settings, ["recipe_core.training.jobs", run_id], log)
    store.update_run(run_id, only_if_active=True, pid=proc.pid, host=socket.gethostname())
    threading.Thread(target=_watch, args=(store, run_id, proc, log), daemon=True, name=f"job-{run_id}").start()
    return proc


# -- background commands: a search or a learning curve driving its runs ------------------------------------------
# Each has its own files under RECIPE_HOME/jobs/: ID.json (what and which process), ID.log (its output), ID.exit
# (its exit code: written by the command on its way out, and by the server that started it once it is reaped),
# ID.cancel (a cancel was asked) and ID.inN.json (specs handed to it). A page reads them to tell "starting" from
# "died with: <its error line>".
JOBS_DIR = "jobs"
ERROR_CHARS = 300  # an error line shown on a page is cut here
EXIT_FILE_ENV = "RECIPE_JOB_EXIT_FILE"  # where a background command writes its own exit code


@dataclass(frozen=True)
class Command:
    """A background `python -m recipe_core ARGV...`: its id, what it was started for (label), its process."""
    id: str
    label: str
    argv: tuple[str, ...]
    pid: int
    log: str
    started_at: str


@dataclass(frozen=True)
class CommandState:
    """What is known of a command now. status: "running"; "finished" (exit 0); "failed" (non-zero, or it vanished
    leaving an error line); "cancelled"; "ended" (it is gone and its exit was not recorded: the server that
    started it restarted). error: its last "error:" line ("" if none)."""
    status: str
    error: str = ""
    exit_code: int | None = None

    @property
    def active(self) -> bool:
        return self.status == "running"


def jobs_dir(settings: Settings) -> Path:
    folder = settings.home / JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_command(settings: Settings, argv: list[str], label: str = "", files: dict[str, str] | None = None
                  ) -> Command:
    """Start `python -m recipe_core ARGV...` in the background (a study or a learning curve driving its trials),
    detached from the web server: it goes on if the page is closed. files {option: text}: each text is written
    to a file of this job and passed as `option PATH` (a spec never travels as a long argument). Output goes to
    the job's own log; command_state() reads what became of it."""
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{new_id()[:8]}"
    folder = jobs_dir(settings)
    argv = [str(a) for a in argv]
    for i, (option, text) in enumerate((files or {}).items()):
        path = folder / f"{job_id}.in{i}.json"
        path.write_text(text, encoding="utf-8")
        argv += [option, str(path)]
    log = folder / f"{job_id}.log"
    proc = _spawn(settings, ["recipe_core", *argv], log, {EXIT_FILE_ENV: str(folder / f"{job_id}.exit")})
    command = Command(job_id, label, tuple(argv), proc.pid, str(log), now_iso())
    _write_atomic(folder / f"{job_id}.json", json.dumps(asdict(command)))
    # reap it (never a zombie) and record how it ended, for the page
    threading.Thread(target=_reap, args=(proc, folder / f"{job_id}.exit"), daemon=True,
                     name=f"command-{job_id}").start()
    return command


def record_exit(code: int) -> None:
    """In a background command (python -m recipe_core), its exit code, written by itself on the way out: the
    page still learns it if the server that started the command has restarted since."""
    path = os.environ.get(EXIT_FILE_ENV)
    if path:
        try:
            _write_atomic(Path(path), str(code))
        except OSError:
            pass


def _reap(proc: subprocess.Popen, exit_file: Path) -> None:
    code = proc.wait()
    _write_atomic(exit_file, str(code))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def get_command(settings: Settings, job_id: str) -> Command:
    if not _JOB_ID.fullmatch(str(job_id)):
        raise NotFound(f"no background job {str(job_id)[:40]!r}")
    try:
        data = json.loads((jobs_dir(settings) / f"{job_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(f"no background job {job_id!r}") from None
    return Command(**{**data, "argv": tuple(data["argv"])})


def list_commands(settings: Settings) -> list[Command]:
    """Every recorded background command, newest first."""
    out = []
    for path in sorted(jobs_dir(settings).glob("*.json"), reverse=True):  # ids start with their start time
        if _JOB_ID.fullmatch(path.stem):
            try:
                out.append(get_command(settings, path.stem))
            except NotFound:
                continue
    return out


def latest_command(settings: Settings, label: str) -> Command | None:
    """The newest command started with this label (e.g. "study:NAME"), or None."""
    return next((c for c in list_commands(settings) if c.label == label), None)


def command_state(settings: Settings, command: Command) -> CommandState:
    folder = jobs_dir(settings)
    error = last_error(Path(command.log))
    cancelled = (folder / f"{command.id}.cancel").exists()
    try:
        code = int((folder / f"{command.id}.exit").read_text())
    except (OSError, ValueError):
        code = None
    if code is None:
        if _alive(command.pid):
            return CommandState("running", error)
        return CommandState("cancelled" if cancelled else "failed" if error else "ended", error)
    if cancelled and code != 0:
        return CommandState("cancelled", error, code)
    return CommandState("finished" if code == 0 else "failed", error, code)


def cancel_command(settings: Settings, command: Command) -> bool:
    """Terminate a command's process and its workers (its own session); False if it had already ended."""
    if not command_state(settings, command).active:
        return False
    (jobs_dir(settings) / f"{command.id}.cancel").touch()
    try:
        os.killpg(command.pid, signal.SIGTERM)  # started with start_new_session: its group is its session
    except ProcessLookupError:
        return False
    return True


def last_error(log: Path) -> str:
    """The last line starting "error:" in a log (its tail), cut to ERROR_CHARS; "" if there is none."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.startswith("error:")]
    return lines[-1][:ERROR_CHARS] if lines else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the number: ours is gone
        return False
    try:  # the number reused by another program? (an exited one not yet reaped still counts: its exit is coming)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): the signal check is all there is
    return b"recipe_core" in cmdline or not cmdline


_JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}")


def _spawn(settings: Settings, module_and_args: list[str], log_path: Path, extra_env: dict | None = None
           ) -> subprocess.Popen:
    """`python -m MODULE ARGS...` in its own session, with this store and home; output to the job's log (for a
    developer, and for its last error line)."""
    env = dict(os.environ, RECIPE_HOME=str(settings.home), RECIPE_STORE_URL=settings.store_url,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop(EXIT_FILE_ENV, None)
    # Each of the max_jobs slots gets its share of the cores: torch's default (every core per process)
    # oversubscribes them as soon as two jobs train (on 2 busy cores, 500 steps: 8.4 s on 2 threads, 1.4 s on 1).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // settings.max_jobs)))
    env.update(extra_env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", *module_and_args], env=env, cwd=str(ROOT),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


def _watch(store: Store, run_id: str, proc: subprocess.Popen, log: Path | None = None) -> None:
    code = proc.wait()
    if code == 0:
        return
    if store.get_run(run_id).cancel_requested:  # terminated by cancel() before it could record that itself
        store.update_run(run_id, only_if_active=True, status="cancelled", reason=CANCELLED, finished_at=now_iso())
        return
    what = f"signal {-code}" if code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL:
        what += " (killed; out of memory?)"
    said = last_error(log) if log is not None else ""  # e.g. "error: no dataset ...": the reason in its words
    store.update_run(run_id, only_if_active=True, status="failed", finished_at=now_iso(),
                     reason=f"the training process died ({what})" + (f": {said}" if said else ""))


def cancel(store: Store, run_id: str, who: Identity | None = None) -> bool:
    """Ask the run to stop (it checks about once a second); terminate its process if it has not stopped soon.
    With who: only the run's author or an admin may, and the cancel is audited."""
    run = store.get_run(run_id)
    if who is not None:
        require_change(who, run.author, "cancel this run")
    if not run.active:
        return False
    if who is not None:
        audit.record(store, who, "cancel", "run", run.id, run.name)
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
        from recipe_core.training import runs  # torch and scikit-learn: only once there is a slot to train in

        return runs.execute(settings, store, run_id, **kwargs)


def _on_sigterm(signum, frame):
    raise Cancelled(CANCELLED)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m recipe_core.training.jobs RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        settings = load_settings()
        limits.limit_memory(settings.job_memory_bytes)  # before torch maps its libraries: everything counts
        store = Store(settings.store_url)
        run = execute(settings, store, argv[0])
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if run.status in ("finished", "cancelled", "failed") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
