"""The Python API for training scripts: buffered logging, crash handling, parents, two writers at once."""
import multiprocessing as mp
import subprocess
import sys
import time

import numpy as np
import pytest

import recipe_core as rc
from recipe_core.errors import BadInput
from recipe_core.tracking.store import Store

pytestmark = pytest.mark.usefixtures("settings")


def test_a_run_logs_every_point_and_ends_finished(store):
    with rc.start_run(name="base", config={"lr": 1e-3, "seed": 2}, tags=["baseline"]) as run:
        for step in range(1000):
            run.log(step, epoch=step / 100, train_loss=1.0 / (step + 1), val_loss=np.float32(0.5))
    got = store.get_run(run.run_id)
    assert (got.status, got.source, got.seed, got.tags, got.config) == ("finished", "api", 2, ("baseline",),
                                                                       {"lr": 1e-3, "seed": 2})
    assert got.metrics == {"train_loss": pytest.approx(1e-3), "val_loss": 0.5}
    h = store.histories([run.run_id], "train_loss")[run.run_id]
    assert list(h.step) == list(range(1000)) and h.epoch[150] == 1.5


def test_100k_points_log_in_seconds(store):
    start = time.perf_counter()
    with rc.start_run(name="long") as run:
        for step in range(100_000):
            run.log(step, train_loss=float(step % 97))
    elapsed = time.perf_counter() - start
    print(f"100k points logged and stored in {elapsed:.2f} s")
    assert elapsed < 20
    assert len(store.histories([run.run_id], "train_loss")[run.run_id]) == 100_000


def test_a_crash_marks_the_run_failed_and_keeps_every_point(store):
    with pytest.raises(ZeroDivisionError):
        with rc.start_run(name="crashes") as run:
            for step in range(5000):
                run.log(step, loss=1.0)
            1 / 0
    got = store.get_run(run.run_id)
    assert got.status == "failed" and got.reason.startswith("ZeroDivisionError")
    assert len(store.histories([run.run_id], "loss")[run.run_id]) == 5000


SCRIPT = """
import recipe_core as rc
run = rc.start_run(name="no-with")
for step in range(300):
    run.log(step, loss=step * 0.5)
print(run.run_id, flush=True)
{ending}
"""


@pytest.mark.parametrize("ending, status", [("raise RuntimeError('boom')", "failed"), ("", "finished")])
def test_a_script_without_with_still_ends_its_run(store, ending, status):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(ending=ending)], capture_output=True, text=True,
                          timeout=120)
    got = store.get_run(proc.stdout.split()[0])
    assert got.status == status and (status == "finished" or "boom" in got.reason)
    assert len(store.histories([got.id], "loss")[got.id]) == 300


def test_parent_and_hypothesis_are_recorded_and_checked(store):
    with rc.start_run(name="a") as parent:
        parent.log(0, loss=1.0)
    with rc.start_run(name="b", parent=parent.run_id[:8], hypothesis="wd closes the gap") as child:
        child.log(0, loss=0.5)
        child.note("train/val gap halved")
    got = store.get_run(child.run_id)
    assert got.parent_id == parent.run_id and got.hypothesis == "wd closes the gap"
    assert [c.text for c in store.comments([child.run_id])] == ["train/val gap halved"]
    with pytest.raises(BadInput, match="parent run"):
        rc.start_run(name="c", parent="0000ffff")


def test_bad_values_are_refused_with_one_line(store):
    with rc.start_run(name="bad") as run:
        with pytest.raises(BadInput, match="must be a number"):
            run.log(0, loss="high")
        with pytest.raises(BadInput, match="step must be an integer"):
            run.log(1.5, loss=1.0)
        run.log(2, loss=float("nan"))  # a diverged loss is a fact worth keeping
    h = store.histories([run.run_id], "loss")[run.run_id]
    assert list(h.step) == [2] and np.isnan(h.value[0])


def _log_runs(url, tag, n_runs, n_points):
    for i in range(n_runs):
        with rc.start_run(name=f"{tag}-{i}", store_url=url, tags=[tag]) as run:
            for step in range(n_points):
                run.log(step, loss=float(step))
                if step % 1000 == 0:
                    run.flush()  # many small writes interleaved with the other process


def test_two_processes_writing_runs_at_once_lose_nothing(store_url):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_log_runs, args=(store_url, tag, 3, 5000)) for tag in ("one", "two")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    s = Store(store_url)
    runs = s.list_runs()
    assert sorted(r.name for r in runs) == sorted(f"{t}-{i}" for t in ("one", "two") for i in range(3))
    assert all(r.status == "finished" for r in runs)
    for run_id, h in s.histories([r.id for r in runs], "loss").items():
        assert list(h.step) == list(range(5000)) and list(h.value) == [float(i) for i in range(5000)]
