"""The SQL store's catalog, against SQLite and (when RECIPE_TEST_PG_URL is set, as in CI) PostgreSQL."""
import multiprocessing as mp

import numpy as np
import pytest
import sqlalchemy as sa
from snapshots import record

from recipe_core.errors import BadInput, NotFound
from recipe_core.tracking.records import RunRecord
from recipe_core.tracking.store import Store


def test_add_get_list_roundtrip(store_url):
    s = Store(store_url)
    added = s.add_dataset(record(notes=("renamed a duplicate column",)))
    assert added.created_at
    assert s.get_dataset("a1b2c3d4e5f60718") == added
    assert s.get_dataset("iris") == added
    assert s.get_dataset("a1b2c3") == added  # an unambiguous id prefix
    assert s.list_datasets() == [added]
    assert added.column("species").kind == "categorical"


def test_identical_content_is_one_dataset(store_url):
    s = Store(store_url)
    first = s.add_dataset(record())
    again = s.add_dataset(record(name="another name"))
    assert again == first
    assert len(s.list_datasets()) == 1


def test_names_are_made_unique(store_url):
    s = Store(store_url)
    s.add_dataset(record("1111111111111111", "data"))
    second = s.add_dataset(record("2222222222222222", "data"))
    third = s.add_dataset(record("3333333333333333", "data"))
    assert (second.name, third.name) == ("data (2)", "data (3)")


def test_unknown_dataset_and_column(store_url):
    s = Store(store_url)
    with pytest.raises(NotFound, match="no dataset"):
        s.get_dataset("nope")
    added = s.add_dataset(record())
    with pytest.raises(NotFound, match="no column"):
        added.column("sepal")


def test_kind_override_is_stored_and_validated(store_url):
    s = Store(store_url)
    s.add_dataset(record())
    changed = s.set_column_kind("iris", "petal length", "categorical")
    assert changed.column("petal length").kind == "categorical"
    assert s.get_dataset("iris").column("petal length").kind == "categorical"
    with pytest.raises(BadInput, match="unknown column type"):
        s.set_column_kind("iris", "species", "float64")
    with pytest.raises(NotFound):
        s.set_column_kind("iris", "nope", "text")


def _register(url, dataset_id, name, n):
    s = Store(url)
    for i in range(n):
        s.add_dataset(record(f"{dataset_id}{i:04d}", name))
        s.add_dataset(record("ffffffffffffffff", "shared"))


def test_two_processes_registering_at_once_lose_nothing(store_url):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_register, args=(store_url, prefix, "same name", 15)) for prefix in ("aaaaaaaaaaaa", "bbbbbbbbbbbb")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    records = Store(store_url).list_datasets()
    assert len(records) == 31  # 2 x 15 distinct ids, plus the one both registered
    assert len({r.name for r in records}) == 31


def _open(url, ready):
    ready.wait(30)
    Store(url).list_datasets()


def test_processes_opening_a_fresh_store_at_once(store_url):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    procs = [ctx.Process(target=_open, args=(store_url, ready)) for _ in range(4)]
    for p in procs:
        p.start()
    ready.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


# -- splits, runs, metrics, artifacts ---------------------------------------------------------------------
def a_run(**kw):
    from recipe_core.tracking.records import RunRecord, new_id

    return RunRecord(id=kw.pop("id", new_id()), name="mlp-1", model="mlp", config={"lr": 3e-4, "exclude": None},
                     dataset_id="d1", target="y", **kw)


def test_run_round_trip_and_guarded_updates(store_url):
    s = Store(store_url)
    run = s.add_run(a_run(seed=3))
    assert s.get_run(run.id) == run and s.get_run(run.id[:6]) == run
    assert s.update_run(run.id, only_if_active=True, status="finished", metrics={"val_loss": 0.25},
                        checks={"capacity": {"ok": True}})
    # a run that ended stays ended: a late cancel or a late "failed" from a watcher changes nothing
    assert not s.update_run(run.id, only_if_active=True, status="failed", reason="late")
    assert not s.request_cancel(run.id)
    got = s.get_run(run.id)
    assert got.status == "finished" and got.metrics == {"val_loss": 0.25} and got.checks["capacity"]["ok"] is True
    assert [r.id for r in s.list_runs("d1", "y")] == [run.id] and s.list_runs("d2") == []
    with pytest.raises(NotFound):
        s.get_run("nope-nope")


def test_metrics_keep_every_point_and_nan_becomes_null(store_url):
    s = Store(store_url)
    run = s.add_run(a_run())
    s.log_metrics(run.id, [("train_loss", i, 1.0 / (i + 1), i / 10, 1000.0 + i) for i in range(5000)])
    s.log_metrics(run.id, [("val_loss", 0, float("nan"), None, 1.0)])
    points = s.metric_history([run.id], ["train_loss"])
    assert len(points) == 5000 and [p[2] for p in points] == list(range(5000))
    assert s.metric_history([run.id], ["val_loss"])[0][3] is None
    assert s.get_run(run.id).heartbeat is not None


def test_artifacts_are_replaced_not_duplicated(store_url):
    s = Store(store_url)
    run = s.add_run(a_run())
    s.put_json(run.id, "batch", {"rows": [1, 2]})
    s.put_json(run.id, "batch", {"rows": [3], "x": float("inf")})
    assert s.get_json(run.id, "batch") == {"rows": [3], "x": None}
    assert s.get_artifact(run.id, "missing") is None


def test_the_split_of_a_target_is_stored_once(store_url):
    from recipe_core.tracking.records import SplitRecord

    s = Store(store_url)
    first = s.add_split(SplitRecord("s1", "d1", "y", 0, (0.7, 0.15, 0.15), True, {"train": 7}, b"\x00\x01"))
    racing = s.add_split(SplitRecord("s2", "d1", "y", 1, (0.5, 0.25, 0.25), False, {"train": 5}, b"\x02"))
    assert racing == first == s.get_split("d1", "y")


def _log_points(url, run_id, key, n):
    s = Store(url)
    for start in range(0, n, 500):
        s.log_metrics(run_id, [(key, i, float(i), None, 0.0) for i in range(start, min(n, start + 500))])


def test_two_processes_logging_at_once_lose_nothing(store_url):
    s = Store(store_url)
    run = s.add_run(a_run())
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_log_points, args=(store_url, run.id, key, 5000)) for key in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for key in ("a", "b"):
        assert [p[2] for p in s.metric_history([run.id], [key])] == list(range(5000))


def test_label_events_are_idempotent_and_ordered(store_url):
    from recipe_core.tracking.records import LabelEvent

    s = Store(store_url)
    assert s.add_label(LabelEvent("e1", "d1", "y", 5, "ann", "cat", at=2.0))
    assert s.add_label(LabelEvent("e1", "d1", "y", 5, "ann", "cat", at=2.0))  # resent: still acknowledged, once
    s.add_label(LabelEvent("e0", "d1", "y", 5, "ann", "dog", note="first", features=("ears",), at=1.0))
    s.add_label(LabelEvent("e2", "d1", "y", 6, "bob", None, at=3.0))  # a skip
    events = s.label_events("d1", "y")
    assert [e.event_id for e in events] == ["e0", "e1", "e2"]
    assert events[0].features == ("ears",) and events[2].label is None
    assert s.label_events("d1", "other") == []


def test_histories_and_summaries_from_chunks(store_url):
    import numpy as np

    s = Store(store_url)
    run = s.add_run(a_run(tags=("baseline", "wd")))
    assert s.get_run(run.id).tags == ("baseline", "wd") and s.get_run(run.id).source == "app"
    s.log_metrics(run.id, [("val_loss", i, 5.0 - i, None, 1.0) for i in range(3)])  # 5, 4, 3
    s.log_arrays(run.id, "val_loss", np.arange(3, 6), np.array([0.5, float("inf"), 2.0]), wall_time=2.0)
    s.log_metrics(run.id, [("val_loss", 1, 9.0, None, 3.0)])  # a step logged again, later: kept, after the first
    h = s.histories([run.id, "other"], "val_loss")[run.id]
    assert list(h.step) == [0, 1, 1, 2, 3, 4, 5] and len(h) == 7
    assert list(h.value[:3]) == [5.0, 4.0, 9.0] and np.isnan(h.value[5]) and np.isnan(h.epoch).all()
    summary = s.metric_summaries([run.id])[run.id]["val_loss"]
    assert (summary.n, summary.last_step, summary.last) == (7, 5, 2.0)
    assert (summary.min, summary.min_step, summary.max, summary.max_step) == (0.5, 3, 9.0, 1)
    s.compact_metrics(run.id)
    again = s.histories([run.id], "val_loss")[run.id]
    assert list(again.step) == list(h.step) and np.array_equal(again.value, h.value, equal_nan=True)
    assert s.metric_summaries([run.id])[run.id]["val_loss"] == summary


def test_comments_are_kept_in_order_once(store_url):
    from recipe_core.tracking.records import Comment

    s = Store(store_url)
    s.add_comment(Comment("c2", "r1", "bob", "second", at=2.0))
    s.add_comment(Comment("c1", "r1", "ann", "dropout 0.2 <b>closed</b> the gap", at=1.0))
    s.add_comment(Comment("c1", "r1", "ann", "dropout 0.2 <b>closed</b> the gap", at=1.0))  # resent
    assert [(c.author, c.text) for c in s.comments(["r1"])] == [("ann", "dropout 0.2 <b>closed</b> the gap"),
                                                                 ("bob", "second")]


def test_an_older_store_gets_new_columns_and_its_points_moved(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the layout of the previous version: no tags or source, one row per point
        conn.execute(sa.text(
            "CREATE TABLE runs (id VARCHAR(32) PRIMARY KEY, name TEXT NOT NULL, dataset_id VARCHAR(64), target TEXT,"
            " split_id VARCHAR(32), model VARCHAR(64) NOT NULL, task VARCHAR(32), seed INTEGER, config_json TEXT NOT"
            " NULL, code_version VARCHAR(64) NOT NULL, author TEXT NOT NULL, status VARCHAR(16) NOT NULL, reason TEXT"
            " NOT NULL, progress FLOAT NOT NULL, cancel_requested BOOLEAN NOT NULL, host TEXT NOT NULL, pid INTEGER,"
            " created_at VARCHAR(40) NOT NULL, started_at VARCHAR(40), finished_at VARCHAR(40), heartbeat FLOAT,"
            " metrics_json TEXT NOT NULL, checks_json TEXT NOT NULL, parent_id VARCHAR(32), hypothesis TEXT NOT NULL)"))
        conn.execute(sa.text(
            "INSERT INTO runs VALUES ('r1', 'old', NULL, NULL, NULL, 'mlp', NULL, 0, '{}', '', 'ann', 'finished', '',"
            " 1.0, 0, '', NULL, '2026-01-01', NULL, NULL, NULL, '{}', '{}', NULL, '')"))
        conn.execute(sa.text("CREATE TABLE metrics (run_id VARCHAR(32), key VARCHAR(200), step BIGINT, value FLOAT,"
                             " epoch FLOAT, wall_time FLOAT)"))
        conn.execute(sa.text("INSERT INTO metrics VALUES ('r1', 'loss', 1, 0.5, NULL, 1.0),"
                             " ('r1', 'loss', 0, NULL, 0.0, 0.5)"))
    engine.dispose()
    s = Store(url)
    run = s.get_run("r1")
    assert run.tags == () and run.source == "app"
    assert s.metric_history(["r1"]) == [("r1", "loss", 0, None, 0.0, 0.5), ("r1", "loss", 1, 0.5, None, 1.0)]
    assert not sa.inspect(s.engine).has_table("metrics")


def test_compaction_merges_small_chunks_in_order_and_leaves_full_ones_alone(store_url, monkeypatch):
    from recipe_core.tracking import chunks, schema

    monkeypatch.setattr(chunks, "CHUNK_POINTS", 1000)
    s = Store(store_url)
    run = s.add_run(RunRecord(id="compact1", name="c", model="m", config={}))
    s.log_arrays(run.id, "big", np.arange(2500), np.arange(2500.0))  # an import: chunks of 1000, 1000, 500
    for step in range(300):  # a live run: one small chunk per flush, ties at each step in logging order
        s.log_metrics(run.id, [("small", step, float(step), None, 1.0), ("small", step, -float(step), None, 2.0)])
    t = schema.metric_chunks_table
    with s.engine.connect() as conn:
        big_ids = [r.id for r in conn.execute(sa.select(t.c.id).where(t.c.key == "big").order_by(t.c.id))]
    before = s.histories([run.id], "small")[run.id]
    summary = s.metric_summaries([run.id])
    s.compact_metrics(run.id)
    with s.engine.connect() as conn:
        sizes = {k: [r.n for r in conn.execute(sa.select(t.c.n).where(t.c.key == k).order_by(t.c.id))]
                 for k in ("big", "small")}
        assert [r.id for r in conn.execute(sa.select(t.c.id).where(t.c.key == "big").order_by(t.c.id))] == big_ids
    assert sizes == {"big": [1000, 1000, 500], "small": [600]}
    after = s.histories([run.id], "small")[run.id]
    assert np.array_equal(after.step, before.step) and np.array_equal(after.value, before.value)
    assert s.metric_summaries([run.id]) == summary
