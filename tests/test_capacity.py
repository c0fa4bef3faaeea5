"""Cost caps: a few training runs at once per machine (the rest wait, queued), a memory limit per job, and an MLP
that cannot fit refused before it starts."""
import threading
import time
from dataclasses import replace

import pytest
from trained import wait_for

from recipe_core.config import TrainConfig, load_settings
from recipe_core.errors import BadInput
from recipe_core.training import capacity, jobs, runs


def test_jobs_beyond_the_slots_wait_queued_and_then_run(settings, store, wine, monkeypatch):
    monkeypatch.setenv("RECIPE_MAX_JOBS", "1")
    one = load_settings()
    assert one.max_jobs == 1
    started = []
    for seed in range(2):
        run = runs.create(store, wine, "cultivar", TrainConfig(model="mlp", epochs=300, seed=seed, checks=False))
        jobs.start(one, store, run.id)
        started.append(run.id)
    most, saw_queued_while_running = 0, False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = [store.get_run(i).status for i in started]
        most = max(most, states.count("running"))
        saw_queued_while_running |= "running" in states and "queued" in states
        if not any(s in ("queued", "running") for s in states):
            break
        time.sleep(0.1)
    assert most == 1 and saw_queued_while_running  # never two at once; the others waited, queued (and alive)
    assert [store.get_run(i).status for i in started] == ["finished"] * 2


def test_a_queued_run_can_be_cancelled_while_it_waits(settings, store, wine):
    one = replace(settings, max_jobs=1)
    run = runs.create(store, wine, "cultivar", TrainConfig(model="linear"))
    with capacity.training_slot(one, store, "someone-else") as held:  # the only slot is taken
        assert held
        waiter = threading.Thread(target=jobs.execute, args=(one, store, run.id))
        waiter.start()
        time.sleep(1.0)
        assert store.get_run(run.id).status == "queued"
        store.request_cancel(run.id)
        waiter.join(10)
    ended = store.get_run(run.id)
    assert ended.status == "cancelled" and "waited for a free training slot" in ended.reason


def test_a_job_past_its_memory_limit_fails_alone(settings, store, wine, monkeypatch):
    monkeypatch.setenv("RECIPE_JOB_MEMORY_MB", "2500")
    tight = load_settings()
    huge = TrainConfig(model="mlp", width=12_000, depth=3, epochs=1, checks=False)  # ~1.2 GB of weights and Adam
    with pytest.raises(BadInput, match="RECIPE_JOB_MEMORY_MB") as e:
        runs.preflight(tight, wine, "cultivar", huge)  # refused up front, in one line
    assert "\n" not in str(e.value) and "width 12000 x depth 3" in str(e.value)
    run = runs.create(store, wine, "cultivar", huge)  # and if it starts anyway, the limit holds
    jobs.start(tight, store, run.id)
    ended = wait_for(lambda: (r := store.get_run(run.id)) and not r.active and r, timeout=120)
    assert ended.status == "failed" and "out of memory" in ended.reason, ended.reason


def test_the_estimate_refuses_what_the_issue_found_and_passes_the_defaults(settings, wine):
    runs.preflight(settings, wine, "cultivar", TrainConfig(model="mlp"))
    with pytest.raises(BadInput, match="more than a training job may use"):
        runs.preflight(settings, wine, "cultivar", TrainConfig(model="mlp", width=4096, depth=20))
    small = capacity.mlp_bytes(TrainConfig(), n_rows=178, n_features=13, n_classes=3)
    assert capacity.PROCESS_BYTES < small < capacity.PROCESS_BYTES + 10 * 2**20
    wide = capacity.mlp_bytes(TrainConfig(width=4096, depth=20), n_rows=178, n_features=13, n_classes=3)
    assert wide > 25 * 2**30  # 19 x 4096^2 weights, twice, and the ladder's 8192-wide net: 4 copies each
