"""Runs never claim a state they are not in: a killed script reads lost, a refused point is refused when it is
logged, a failed write never reports success, and text the store cannot hold is refused in one line, on SQLite and
PostgreSQL alike."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from snapshots import record

import recipe_core as rc
from recipe_core.errors import BadInput, RecipeError
from recipe_core.labelling import labels
from recipe_core.tracking.heartbeat import lost_after_s
from recipe_core.tracking.records import Comment, LabelEvent, RunRecord
from recipe_core.tracking.store import Store

ROOT = Path(__file__).resolve().parents[1]
BEAT = "0.3"  # seconds between heartbeats in these tests: a run reads lost after 6 silent beats (1.8 s)

SCRIPT = """
import sys, time
import recipe_core as rc
run = rc.start_run(name="long job", store_url=sys.argv[1])
for step in range(50):
    run.log(step, loss=1.0 / (step + 1))
run.flush()
print(run.run_id, flush=True)
time.sleep(120)  # a long step that logs nothing: the heartbeat alone says it is alive
"""


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def beat(monkeypatch):
    monkeypatch.setenv("RECIPE_HEARTBEAT_S", BEAT)
    return float(BEAT)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_a_killed_script_reads_lost_within_its_beats(store_url, beat, sig):
    script = subprocess.Popen([sys.executable, "-c", SCRIPT, store_url], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    run_id = script.stdout.readline().strip()
    store = Store(store_url)
    time.sleep(1.5 * lost_after_s())  # silent but alive: it beats, so it still reads running
    assert store.get_run(run_id).status == "running"
    os.kill(script.pid, sig)
    script.wait(10)
    killed = time.monotonic()
    assert wait_for(lambda: store.get_run(run_id).status == "lost", timeout=10)
    assert time.monotonic() - killed < lost_after_s() + 2 * beat  # "within two minutes": here, 6 beats
    lost = store.get_run(run_id)
    assert not lost.active and lost.reason.startswith("no sign of life from ")
    assert len(store.histories([run_id], "loss")[run_id]) == 50  # every point it wrote is kept
    if sig == signal.SIGKILL:  # every reader says so, with no page visit: the CLI too
        out = subprocess.run([sys.executable, "-m", "recipe_core", "runs", "--json"], capture_output=True,
                             text=True, cwd=ROOT, env={**os.environ, "RECIPE_STORE_URL": store_url})
        assert [r["status"] for r in json.loads(out.stdout) if r["run_id"] == run_id] == ["lost"]


def test_a_metric_name_the_store_cannot_hold_is_refused_when_logged(store_url):
    store = Store(store_url)
    with rc.start_run(name="keys", store_url=store_url) as run:
        for step in range(101):
            run.log(step, loss=1.0)
        with pytest.raises(BadInput, match="1 to 200 characters") as e:
            run.log(101, **{"x" * 201: 1.0})
        assert "\n" not in str(e.value)
        for bad in ("", "a\x00b"):
            with pytest.raises(BadInput):
                run.log(101, **{bad: 1.0})
        with pytest.raises(BadInput, match="step"):
            run.log(2**64, loss=1.0)
        with pytest.raises(BadInput, match="epoch"):
            run.log(101, epoch="x", loss=1.0)
    got = store.get_run(run.run_id)
    assert got.status == "finished"
    assert len(store.histories([run.run_id], "loss")[run.run_id]) == 101  # 101 of 101 acknowledged points


def test_a_failed_flush_keeps_its_points_and_never_ends_finished(store_url, monkeypatch):
    store = Store(store_url)
    run = rc.start_run(name="flaky store", store_url=store_url)
    for step in range(10):
        run.log(step, loss=0.5)
    real = run.store.log_metrics
    monkeypatch.setattr(run.store, "log_metrics", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(RecipeError, match=r"could not write 10 logged points .* kept for the next flush"):
        run.flush()
    assert len(run.points) == 10  # acknowledged points are still held
    monkeypatch.setattr(run.store, "log_metrics", real)
    run.flush()  # the store is back: nothing was lost
    assert len(store.histories([run.run_id], "loss")[run.run_id]) == 10
    run.log(10, loss=0.1)
    monkeypatch.setattr(run.store, "log_metrics", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(RecipeError, match="could not write 1 logged points"):
        run.finish()
    ended = store.get_run(run.run_id)
    assert ended.status == "failed" and "could not write 1 logged points" in ended.reason


NUL = "bad\x00name"


def test_text_with_a_nul_is_refused_in_one_line_and_nothing_is_written(store_url):
    store = Store(store_url)
    cases = [
        lambda: store.add_dataset(record(name=NUL)),
        lambda: store.add_run(RunRecord(id="r1", name=NUL, model="m", config={})),
        lambda: store.add_run(RunRecord(id="r2", name="ok", model="m", config={}, author=NUL)),
        lambda: store.add_run(RunRecord(id="r3", name="ok", model="m", config={}, tags=(NUL,))),
        lambda: store.add_label(LabelEvent("e1", "d", "t", 1, NUL, "a")),
        lambda: store.add_label(LabelEvent("e2", "d", "t", 1, "ann", "a", note=NUL)),
        lambda: store.add_comment(Comment("c1", "r", NUL, "text")),
        lambda: store.add_comment(Comment("c2", "r", "ann", NUL)),
        lambda: store.log_metrics("r", [(NUL, 1, 1.0, None, 1.0)]),
        lambda: rc.start_run(name=NUL, store_url=store_url),
        lambda: rc.start_run(name="deep", config=_nested(100_000), store_url=store_url),
    ]
    for case in cases:
        with pytest.raises(BadInput) as e:
            case()
        assert "\n" not in str(e.value)
    assert store.list_datasets() == [] and store.list_runs() == [] and store.label_events("d", "t") == []
    assert store.comments(["r"]) == []
    # a failure reason holds whatever the data held: stored, made safe, never refused
    run = store.add_run(RunRecord(id="r4", name="ok", model="m", config={"k": NUL}))
    store.update_run(run.id, status="failed", reason="ValueError: " + NUL)
    assert store.get_run(run.id).reason == "ValueError: bad?name" and store.get_run(run.id).config == {"k": NUL}
    # looking up a NUL (from a URL or a typed id) finds nothing, and says so
    with pytest.raises(RecipeError, match="no run"):
        store.get_run(NUL)
    assert store.histories([NUL], NUL) == {} and store.metric_summaries([NUL]) == {}


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_labels_refuse_a_nul_annotator_before_the_store(store_url):
    base = labels.Baseline("d", "t", "classification", ("a", "b"), (1, 2), {1: "a", 2: "b"})
    with pytest.raises(BadInput):
        labels.add(Store(store_url), base, NUL, 1, "a")
    with pytest.raises(BadInput):
        labels.add(Store(store_url), base, "ann", 1, "a", note=NUL)
    assert Store(store_url).label_events("d", "t") == []
