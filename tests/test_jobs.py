"""Training as real processes: a job finishes, a cancel stops it, a kill -9 marks it failed, the caller lives."""
import os
import signal
import time

from trained import wait_for

from recipe_core.config import TrainConfig
from recipe_core.tracking.heartbeat import lost_after_s
from recipe_core.training import jobs, runs


def start(settings, store, wine, **config):
    run = runs.create(store, wine, "cultivar", TrainConfig(**config), author="tester")
    proc = jobs.start(settings, store, run.id)
    return run, proc


def test_a_job_runs_in_its_own_process_to_the_end(settings, store, wine):
    run, proc = start(settings, store, wine, model="linear")
    assert proc.pid != os.getpid()
    ended = wait_for(lambda: (r := store.get_run(run.id)) and not r.active and r)
    assert ended.status == "finished", ended.reason
    assert ended.pid == proc.pid and ended.metrics["val_accuracy"] > 0.9
    assert proc.wait(timeout=30) == 0


def test_cancel_stops_a_running_job(settings, store, wine):
    run, proc = start(settings, store, wine, model="mlp", epochs=100_000, checks=False)
    wait_for(lambda: store.metric_history([run.id], ["train_loss"]))  # it is training
    assert jobs.cancel(store, run.id)
    ended = wait_for(lambda: (r := store.get_run(run.id)) and not r.active and r, timeout=60)
    assert ended.status == "cancelled" and "cancel" in ended.reason
    assert proc.wait(timeout=30) == 0
    assert store.metric_history([run.id], ["train_loss"])  # the curve logged before the cancel is kept


def test_a_killed_job_is_marked_failed_and_the_caller_lives(settings, store, wine):
    run, proc = start(settings, store, wine, model="mlp", epochs=100_000, checks=False)
    wait_for(lambda: store.metric_history([run.id], ["train_loss"]))
    os.kill(proc.pid, signal.SIGKILL)  # what the out-of-memory killer does
    ended = wait_for(lambda: (r := store.get_run(run.id)) and not r.active and r, timeout=30)
    assert ended.status == "failed" and "signal 9" in ended.reason


def test_a_queued_run_cancels_without_a_process(settings, store, wine):
    run = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    assert jobs.cancel(store, run.id)
    assert store.get_run(run.id).status == "cancelled"
    assert runs.execute(settings, store, run.id).status == "cancelled"  # a late start does nothing


def test_a_run_whose_job_vanished_reads_lost_without_anyone_reaping_it(settings, store, wine):
    run = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    store.update_run(run.id, status="running", pid=2**22 + 12345, host="elsewhere",
                     heartbeat=time.time() - lost_after_s() - 1)
    lost = store.get_run(run.id)
    assert lost.status == "lost" and not lost.active and "elsewhere pid 4206649" in lost.reason
    assert [r.status for r in store.list_runs()] == ["lost"]
    store.update_run(run.id, heartbeat=time.time())  # its process came back: it reads running again
    assert store.get_run(run.id).status == "running"
