"""Renaming, editing, archiving, deleting, undoing and purging runs, datasets, studies and learning curves
(tracking/lifecycle.py), with the access rules applied; on SQLite and (RECIPE_TEST_PG_URL) PostgreSQL."""
import json
import threading
import time
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from snapshots import record

from recipe_core.config import load_settings
from recipe_core.data import ingest
from recipe_core.errors import BadInput, Forbidden, NotFound
from recipe_core.tracking import audit, lifecycle, schema
from recipe_core.tracking.access import Identity, single_user
from recipe_core.tracking.records import Comment, LabelEvent, RunRecord, SplitRecord, new_id
from recipe_core.tracking.row_mapping import dataset_row
from recipe_core.tracking.store import Store

ADMIN = Identity("root@lab.org", "admin", True)
ANN = Identity("ann@lab.org", "member", True)
BOB = Identity("bob@lab.org", "member", True)
VIC = Identity("vic@lab.org", "viewer", True)


@pytest.fixture
def env(store_url, tmp_path):
    settings = load_settings({"RECIPE_HOME": str(tmp_path / "home"), "RECIPE_STORE_URL": store_url})
    return settings, Store(store_url)


def dataset(settings, store, dataset_id="a1b2c3d4e5f60718", name="iris", owner=ANN.name, visibility="shared",
            snapshot=None):
    rec = store.add_dataset(record(dataset_id, name, owner=owner, visibility=visibility))
    if snapshot is not None:
        with store.engine.begin() as conn:
            conn.execute(schema.datasets_table.update().where(schema.datasets_table.c.id == rec.id)
                         .values(snapshot=snapshot))
        rec = replace(rec, snapshot=snapshot)
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    (settings.snapshots_dir / rec.snapshot).write_bytes(b"PAR1" + b"x" * 1000)
    return rec


def run(store, dataset_id="a1b2c3d4e5f60718", author=ANN.name, **kw):
    fields = dict(id=new_id(), name=kw.pop("name", "r"), model="mlp", config={}, dataset_id=dataset_id,
                  target="species", author=author, status="finished")
    return store.add_run(RunRecord(**{**fields, **kw}))


def with_data(store, run_id, n=50):
    store.log_metrics(run_id, [("loss", i, 1.0 / (i + 1), None, time.time()) for i in range(n)])
    store.put_artifact(run_id, "model", b"weights" * 100)
    store.add_comment(Comment(id=new_id(), run_id=run_id, author=ANN.name, text="looks good"))


def rows_of(store, run_id) -> dict:
    out = {}
    with store.engine.connect() as conn:
        for table in (schema.metric_chunks_table, schema.artifacts_table, schema.comments_table):
            out[table.name] = conn.execute(sa.select(sa.func.count()).where(table.c.run_id == run_id)).scalar()
        out["runs"] = conn.execute(sa.select(sa.func.count()).where(schema.runs_table.c.id == run_id)).scalar()
    return out


def actions(store, key) -> list[str]:
    return [e.action for e in reversed(audit.entries(store, key=key))]


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text and 0 < len(text) < 200
    return text


# -- rename and edit --------------------------------------------------------------------------------------------
def test_the_owner_renames_a_run_and_a_dataset_and_it_is_audited(env):
    settings, store = env
    rec = dataset(settings, store)
    r = run(store)
    assert lifecycle.rename(store, ANN, "run", r.id, "  baseline   mlp ") == "baseline mlp"
    assert store.get_run(r.id).name == "baseline mlp"
    assert lifecycle.rename(store, ANN, "dataset", rec.id, "iris v2") == "iris v2"
    assert store.get_dataset(rec.id).name == "iris v2"
    assert actions(store, r.id) == ["rename"] and audit.entries(store, key=rec.id)[0].detail == "iris -> iris v2"


def test_a_dataset_name_that_is_taken_is_one_line(env):
    settings, store = env
    dataset(settings, store)
    other = dataset(settings, store, "2222222222222222", "wine")
    with pytest.raises(BadInput, match="a dataset named 'iris' exists already") as e:
        lifecycle.rename(store, ANN, "dataset", other.id, "iris")
    one_line(e)
    lifecycle.delete(store, ANN, "dataset", "iris")
    with pytest.raises(BadInput, match=r"\(in the trash\)"):
        lifecycle.rename(store, ANN, "dataset", other.id, "iris")
    assert store.get_dataset(other.id).name == "wine"


def test_a_name_is_needed_and_groups_keep_theirs(env):
    settings, store = env
    dataset(settings, store)
    r = run(store, tags=("study:s1",))
    with pytest.raises(BadInput, match="cannot be empty"):
        lifecycle.rename(store, ANN, "run", r.id, "   ")
    with pytest.raises(BadInput, match="keeps its name"):
        lifecycle.rename(store, ANN, "study", "s1", "s2")
    with pytest.raises(BadInput, match="unknown kind"):
        lifecycle.rename(store, ANN, "model", r.id, "x")
    assert store.get_run(r.id).name == "r"


def test_editing_tags_and_hypothesis_keeps_the_apps_own_tags(env):
    settings, store = env
    dataset(settings, store)
    r = run(store, tags=("study:s1", "old"))
    edited = lifecycle.edit_run(store, ANN, r.id, tags=["wide", " wide ", "lr sweep"], hypothesis="wider helps")
    assert edited.tags == ("study:s1", "wide", "lr sweep") and edited.hypothesis == "wider helps"
    assert lifecycle.edit_run(store, ANN, r.id, tags="a, b,,a").tags == ("study:s1", "a", "b")
    assert actions(store, r.id) == ["edit", "edit"]
    with pytest.raises(BadInput, match="set by the app"):
        lifecycle.edit_run(store, ANN, r.id, tags=["curve:abc"])
    with pytest.raises(BadInput, match="at most 40 characters"):
        lifecycle.edit_run(store, ANN, r.id, tags=["x" * 41])
    with pytest.raises(BadInput, match="at most 20 tags"):
        lifecycle.edit_run(store, ANN, r.id, tags=[f"t{i}" for i in range(21)])
    assert store.get_run(r.id).tags == ("study:s1", "a", "b")


def test_only_the_author_or_an_admin_changes_a_run(env):
    settings, store = env
    dataset(settings, store)
    r = run(store)
    for who in (BOB, VIC):
        for change in (lambda w: lifecycle.rename(store, w, "run", r.id, "mine"),
                       lambda w: lifecycle.edit_run(store, w, r.id, tags=["x"]),
                       lambda w: lifecycle.archive(store, w, "run", r.id),
                       lambda w: lifecycle.delete(store, w, "run", r.id)):
            with pytest.raises(Forbidden, match="only ann@lab.org or an admin may") as e:
                change(who)
            one_line(e)
    after = store.get_run(r.id)
    assert (after.name, after.tags, after.archived, after.deleted_at) == ("r", (), False, None)
    assert actions(store, r.id) == [] and lifecycle.trash(store, ADMIN) == []
    assert lifecycle.rename(store, ADMIN, "run", r.id, "by admin") == "by admin"
    assert lifecycle.rename(store, single_user("anyone"), "run", r.id, "solo") == "solo"


def test_what_one_may_not_see_one_may_not_change(env):
    settings, store = env
    rec = dataset(settings, store, visibility="private")
    r = run(store)
    with pytest.raises(Forbidden, match="you may not see this dataset"):
        lifecycle.rename(store, BOB, "dataset", rec.id, "x")
    with pytest.raises(Forbidden, match="you may not see this run"):
        lifecycle.delete(store, BOB, "run", r.id)
    run(store, tags=("study:s9",))
    with pytest.raises(Forbidden, match="you may not see this study"):
        lifecycle.archive(store, BOB, "study", "s9")
    assert store.get_run(r.id).deleted_at is None and not any(x.archived for x in store.list_runs())
    assert lifecycle.archive(store, ANN, "study", "s9") == 1


# -- sharing and column types -----------------------------------------------------------------------------------
def test_the_owner_shares_and_unshares(env):
    settings, store = env
    rec = dataset(settings, store, visibility="private")
    assert lifecycle.set_visibility(store, ANN, rec.id, "shared").visibility == "shared"
    with pytest.raises(Forbidden, match="only ann@lab.org or an admin may share or unshare"):
        lifecycle.set_visibility(store, BOB, rec.id, "private")
    with pytest.raises(BadInput, match="visibility is one of private, shared"):
        lifecycle.set_visibility(store, ANN, rec.id, "team")
    assert store.get_dataset(rec.id).visibility == "shared"
    assert audit.entries(store, action="visibility")[0].detail == "private -> shared"
    sample = dataset(settings, store, "3333333333333333", "sample", owner="")
    with pytest.raises(BadInput, match="belongs to no one"):
        lifecycle.set_visibility(store, ADMIN, sample.id, "private")


def test_column_types_of_a_shared_dataset_are_an_admins(env):
    settings, store = env
    shared = dataset(settings, store)
    private = dataset(settings, store, "2222222222222222", "mine", visibility="private")
    with pytest.raises(Forbidden, match="only an admin may change column types of a shared dataset"):
        lifecycle.set_column_kind(store, ANN, shared.id, "species", "text")
    with pytest.raises(Forbidden, match="you may not see this dataset"):
        lifecycle.set_column_kind(store, BOB, private.id, "species", "text")
    assert store.get_dataset(shared.id).column("species").kind == "categorical"
    assert lifecycle.set_column_kind(store, ANN, private.id, "species", "text").column("species").kind == "text"
    assert lifecycle.set_column_kind(store, ADMIN, shared.id, "species", "text").column("species").kind == "text"
    assert [e.detail for e in audit.entries(store, action="type_change")] == ["species: categorical -> text"] * 2


# -- archive ----------------------------------------------------------------------------------------------------
def test_archive_flags_runs_and_list_runs_keeps_them_for_callers_to_filter(env):
    settings, store = env
    dataset(settings, store)
    a, b = run(store, tags=("study:s1",)), run(store, tags=("study:s1",))
    c = run(store)
    assert lifecycle.archive(store, ANN, "run", c.id) == 1
    assert {r.id: r.archived for r in store.list_runs()} == {a.id: False, b.id: False, c.id: True}
    assert lifecycle.archived_groups(store, "study") == set()
    assert lifecycle.archive(store, ANN, "study", "s1") == 2
    assert lifecycle.archived_groups(store, "study") == {"s1"}
    assert lifecycle.archive(store, ANN, "study", "s1", archived=False) == 2
    assert lifecycle.archived_groups(store, "study") == set() and actions(store, "s1") == ["archive", "unarchive"]
    assert lifecycle.archive(store, ANN, "dataset", "iris") == 1 and store.get_dataset("iris").archived


def test_a_group_of_several_authors_is_an_admins(env):
    settings, store = env
    dataset(settings, store)
    run(store, tags=("curve:c1",)), run(store, author=BOB.name, tags=("curve:c1",))
    with pytest.raises(Forbidden, match="only an admin may delete this learning curve"):
        lifecycle.delete(store, ANN, "curve", "c1")
    with pytest.raises(NotFound, match="no study 'nope' with runs"):
        lifecycle.delete(store, ANN, "study", "nope")
    assert len(lifecycle.delete(store, ADMIN, "curve", "c1").run_ids) == 2


# -- dependents -------------------------------------------------------------------------------------------------
def test_dependents_say_what_would_lose_its_parent(env):
    settings, store = env
    dataset(settings, store)
    parent = run(store, name="base", tags=("study:s1",))
    child = run(store, name="child", parent_id=parent.id)
    for _ in range(3):
        run(store, parent_id=parent.id, tags=("curve:c7",))
    ens = run(store, name="avg", model="ensemble", parent_id=parent.id, config={"members": [parent.id, child.id]})
    lines = lifecycle.dependents(store, "run", parent.id)
    assert lines == [f"run {child.id} (child) starts from it", f"member of ensemble {ens.id} (avg)",
                     "learning curve c7 (3 runs) starts from it", "trial of study s1"]
    assert lifecycle.dependents(store, "run", ens.id) == []
    assert lifecycle.dependents(store, "run", child.id) == [f"member of ensemble {ens.id} (avg)"]
    assert lifecycle.dependents(store, "study", "s1") == [
        "1 run is its trials", f"run {child.id} (child) starts from it", f"member of ensemble {ens.id} (avg)",
        "learning curve c7 (3 runs) starts from it"]
    assert lifecycle.dependents(store, "curve", "c7") == ["3 runs make up this curve"]
    store.add_label(LabelEvent(new_id(), "a1b2c3d4e5f60718", "species", 1, "ann", "setosa"))
    store.add_label(LabelEvent(new_id(), "a1b2c3d4e5f60718", "species", 2, "bob", "setosa"))
    assert lifecycle.dependents(store, "dataset", "iris") == [
        "6 runs use this dataset", "2 labels by 2 people", "1 study: s1", "1 learning curve: c7"]
    trashed = lifecycle.delete(store, ANN, "run", parent.id)
    assert "trial of study s1" in trashed.dependents


# -- delete, undo, purge ----------------------------------------------------------------------------------------
def test_delete_undo_delete_purge_frees_the_rows_and_files(env):
    settings, store = env
    dataset(settings, store)
    gone, kept = run(store), run(store)
    for r in (gone, kept):
        with_data(store, r.id)
    jobs = settings.home / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"run-{gone.id}.log").write_text("training\n")
    (jobs / f"run-{kept.id}.log").write_text("training\n")
    curve_of = {"id": "20250101-000000-aaaaaaaa", "label": "curve-of:" + gone.id, "argv": ["learning-curve", gone.id],
                "pid": 0, "log": "", "started_at": ""}
    (jobs / "20250101-000000-aaaaaaaa.json").write_text(json.dumps(curve_of))
    (jobs / "20250101-000000-aaaaaaaa.log").write_text("error: x\n")
    (jobs / "20250101-000000-aaaaaaaa.in0.json").write_text("[]")
    other = {**curve_of, "id": "20250101-000000-bbbbbbbb", "label": "curve-of:" + kept.id, "argv": [kept.id]}
    (jobs / "20250101-000000-bbbbbbbb.json").write_text(json.dumps(other))
    before = rows_of(store, gone.id)
    assert before == {"metric_chunks": 1, "artifacts": 1, "comments": 1, "runs": 1}

    first = lifecycle.delete(store, ANN, "run", gone.id)
    assert first.run_ids == (gone.id,) and [r.id for r in store.list_runs()] == [kept.id]
    assert store.get_run(gone.id).deleted_at == first.deleted_at
    assert [(i.kind, i.key, i.deleted_by, i.n_runs) for i in lifecycle.trash(store, ANN)] == [
        ("run", gone.id, ANN.name, 1)]
    assert lifecycle.undo(store, ANN, "run", gone.id).run_ids == (gone.id,)
    assert store.get_run(gone.id).deleted_at is None and lifecycle.trash(store, ANN) == []
    with pytest.raises(BadInput, match="is not deleted: there is nothing to undo"):
        lifecycle.undo(store, ANN, "run", gone.id)
    lifecycle.delete(store, ANN, "run", gone.id)
    with pytest.raises(BadInput, match="is deleted; undo the delete first"):
        lifecycle.delete(store, ANN, "run", gone.id)
    assert rows_of(store, gone.id) == before  # soft: nothing freed yet

    report = lifecycle.purge(settings, store, ANN, older_than_s=None)
    assert report.items == (("run", gone.id),) and report.runs == 1
    assert report.rows == {"metric_chunks": 1, "artifacts": 1, "comments": 1, "runs": 1}
    assert rows_of(store, gone.id) == {"metric_chunks": 0, "artifacts": 0, "comments": 0, "runs": 0}
    assert rows_of(store, kept.id) == before and len(store.histories([kept.id], "loss")[kept.id]) == 50
    assert sorted(p.rsplit("/", 1)[1] for p in report.files) == [
        "20250101-000000-aaaaaaaa.in0.json", "20250101-000000-aaaaaaaa.json", "20250101-000000-aaaaaaaa.log",
        f"run-{gone.id}.log"]
    assert sorted(p.name for p in jobs.iterdir()) == sorted(["20250101-000000-bbbbbbbb.json", f"run-{kept.id}.log"])
    assert report.bytes_freed > 50 * 8 + 700
    assert actions(store, gone.id) == ["delete", "undo", "delete", "purge"]
    with pytest.raises(BadInput, match="was purged on .*: it cannot be undone") as e:
        lifecycle.undo(store, ANN, "run", gone.id)
    one_line(e)


def test_a_member_may_not_delete_anothers_run_and_nothing_changes(env):
    settings, store = env
    dataset(settings, store)
    r = run(store)
    with_data(store, r.id)
    with pytest.raises(Forbidden):
        lifecycle.delete(store, BOB, "run", r.id)
    assert store.get_run(r.id).deleted_at is None and lifecycle.trash(store, ADMIN) == []
    lifecycle.delete(store, ANN, "run", r.id)
    assert lifecycle.trash(store, BOB) == [] and len(lifecycle.trash(store, ADMIN)) == 1
    with pytest.raises(Forbidden):
        lifecycle.undo(store, BOB, "run", r.id)
    assert lifecycle.purge(settings, store, BOB).items == () and rows_of(store, r.id)["metric_chunks"] == 1


def test_a_running_run_is_cancelled_before_it_is_deleted(env):
    settings, store = env
    dataset(settings, store)
    r = run(store, status="running", heartbeat=time.time())
    with pytest.raises(BadInput, match="queued or running .*cancel them first"):
        lifecycle.delete(store, ANN, "dataset", "iris")
    assert store.get_dataset("iris").deleted_at is None and store.get_run(r.id).deleted_at is None


def test_a_dataset_takes_its_runs_and_an_undo_brings_back_exactly_those(env):
    settings, store = env
    rec = dataset(settings, store)
    earlier, a, b = run(store), run(store, author=BOB.name), run(store)
    lifecycle.delete(store, ANN, "run", earlier.id)
    gone = lifecycle.delete(store, ANN, "dataset", rec.id)
    assert sorted(gone.run_ids) == sorted([a.id, b.id])
    assert store.list_datasets() == [] and store.list_runs() == []
    assert [(i.kind, i.n_runs) for i in lifecycle.trash(store, ANN)] == [("dataset", 2), ("run", 1)]
    with pytest.raises(BadInput, match="went with a larger delete"):
        lifecycle.undo(store, ANN, "run", b.id)
    lifecycle.undo(store, ANN, "dataset", rec.id)
    assert {r.id for r in store.list_runs()} == {a.id, b.id} and store.get_run(earlier.id).deleted_at is not None
    lifecycle.delete(store, ANN, "dataset", rec.id)
    with pytest.raises(BadInput, match="its dataset is deleted too"):
        lifecycle.undo(store, ANN, "run", earlier.id)


def test_purging_a_dataset_removes_its_rows_and_its_snapshot_once_unreferenced(env):
    settings, store = env
    first = dataset(settings, store)
    twin = dataset(settings, store, "2222222222222222", "twin", snapshot=first.snapshot)
    r = run(store)
    with_data(store, r.id)
    store.add_label(LabelEvent(new_id(), first.id, "species", 1, "ann", "setosa"))
    store.add_split(SplitRecord(new_id(), first.id, "species", 0, (0.6, 0.2, 0.2), True, {}, b"\x00"))
    file = settings.snapshots_dir / first.snapshot
    lifecycle.delete(store, ANN, "dataset", first.id)
    report = lifecycle.purge(settings, store, ANN, only=("dataset", first.id))
    assert report.rows == {"metric_chunks": 1, "artifacts": 1, "comments": 1, "runs": 1, "labels": 1, "splits": 1,
                           "datasets": 1}
    assert file.exists() and report.files == ()  # the twin still names it
    assert store.label_events(first.id, "species") == [] and store.get_split(first.id, "species") is None
    with pytest.raises(NotFound):
        store.get_dataset(first.id)
    lifecycle.delete(store, ANN, "dataset", twin.id)
    report = lifecycle.purge(settings, store, ANN, only=("dataset", twin.id))
    assert not file.exists() and report.files == (str(file),) and report.bytes_freed == 1004
    with pytest.raises(BadInput, match="is not deleted; delete it first"):
        lifecycle.purge(settings, store, ANN, only=("dataset", dataset(settings, store, "3" * 16, "x").id))


def test_purge_waits_for_the_undo_window(env):
    settings, store = env
    dataset(settings, store)
    r = run(store)
    lifecycle.delete(store, ANN, "run", r.id)
    assert lifecycle.purge(settings, store, ANN, older_than_s=3600).items == ()
    assert store.get_run(r.id).deleted_at is not None
    assert lifecycle.purge(settings, store, ANN, older_than_s=0).items == (("run", r.id),)


def test_a_study_goes_and_comes_back_as_one(env):
    settings, store = env
    dataset(settings, store)
    trials = [run(store, tags=("study:s1",)) for _ in range(3)]
    lifecycle.delete(store, ANN, "run", trials[0].id)
    gone = lifecycle.delete(store, ANN, "study", "s1")
    assert sorted(gone.run_ids) == sorted(t.id for t in trials[1:]) and lifecycle.deleted_groups(store, "study") == {
        "s1"}
    lifecycle.undo(store, ANN, "study", "s1")
    assert len(store.list_runs()) == 2 and lifecycle.deleted_groups(store, "study") == set()
    lifecycle.delete(store, ANN, "study", "s1")
    report = lifecycle.purge(settings, store, ANN)
    assert report.studies == ("s1",) and report.runs == 3 and store.list_runs(include_deleted=True) == []


# -- uploads ----------------------------------------------------------------------------------------------------
CSV = b"a,b\n1,x\n2,y\n3,x\n"


def upload(settings, store, who, visibility="shared", data=CSV):
    rec = ingest.ingest_bytes(settings, store, data, source_name="t.csv", owner=who.name, visibility=visibility)
    return lifecycle.claim_upload(store, who, rec)


def test_an_upload_is_the_uploaders_and_a_reupload_restores_it(env):
    settings, store = env
    mine = upload(settings, store, ANN, "private")
    assert (mine.owner, mine.visibility) == (ANN.name, "private")
    with pytest.raises(Forbidden, match="already here as a dataset you may not see; ask its owner") as e:
        upload(settings, store, BOB)
    one_line(e)
    lifecycle.set_visibility(store, ANN, mine.id, "shared")
    lifecycle.delete(store, ANN, "dataset", mine.id)
    with pytest.raises(Forbidden, match="already here as a deleted dataset"):
        upload(settings, store, BOB)
    assert upload(settings, store, ANN).deleted_at is None and store.list_datasets() == [store.get_dataset(mine.id)]
    assert actions(store, mine.id) == ["upload", "visibility", "delete", "undo", "upload"]
    with pytest.raises(Forbidden, match="only members and admins may upload"):
        lifecycle.claim_upload(store, VIC, mine)


# -- an old store -----------------------------------------------------------------------------------------------
NEW_COLUMNS = {"datasets": {"owner", "visibility", "archived", "deleted_at"}, "runs": {"archived", "deleted_at"}}
NEW_TABLES = {"users", "audit", "trash"}


def test_an_old_store_gets_the_new_columns_and_tables(store_url, tmp_path):
    old = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        if table.name not in NEW_TABLES:
            sa.Table(table.name, old, *[
                sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                          server_default=None if c.server_default is None else c.server_default.arg)
                for c in table.columns if c.name not in NEW_COLUMNS.get(table.name, ())])
    made = sa.create_engine(store_url)
    old.create_all(made)
    row = {k: v for k, v in dataset_row(record()).items() if k not in NEW_COLUMNS["datasets"]}
    with made.begin() as conn:
        conn.execute(old.tables["datasets"].insert().values({**row, "created_at": "2024-01-01T00:00:00"}))
        conn.execute(old.tables["runs"].insert().values(
            id="0123456789abcdef", name="old", dataset_id=row["id"], model="mlp", config_json="{}", code_version="",
            author="ann@lab.org", status="finished", reason="", progress=1.0, cancel_requested=False, host="",
            created_at="2024-01-01", metrics_json="{}", checks_json="{}", hypothesis=""))
    made.dispose()
    store = Store(store_url)
    rec = store.get_dataset(row["id"])
    assert (rec.owner, rec.visibility, rec.archived, rec.deleted_at) == ("", "shared", False, None)
    old_run = store.get_run("0123456789abcdef")
    assert (old_run.archived, old_run.deleted_at) == (False, None) and store.list_runs() == [old_run]
    settings = load_settings({"RECIPE_HOME": str(tmp_path / "home"), "RECIPE_STORE_URL": store_url})
    lifecycle.delete(store, ADMIN, "dataset", rec.id)
    assert store.list_datasets() == [] and lifecycle.purge(settings, store, ADMIN).runs == 1


# -- concurrency ------------------------------------------------------------------------------------------------
def test_concurrent_writers_to_other_runs_lose_nothing_during_a_delete_and_purge(env):
    settings, store = env
    keep = dataset(settings, store)
    doomed = dataset(settings, store, "2222222222222222", "doomed")
    survivor = run(store)
    victims = [run(store, doomed.id) for _ in range(4)] + [run(store)]
    for v in victims:
        store.log_arrays(v.id, "loss", list(range(20_000)), [0.5] * 20_000)
    stop, points, labels, failures = threading.Event(), [], [], []

    def log_points():
        step = 0
        while not stop.is_set() or step < 30:
            try:
                store.log_metrics(survivor.id, [("loss", step, float(step), None, time.time())])
            except Exception as e:  # noqa: BLE001 - any failure is the test's to report
                failures.append(e)
                return
            points.append(step)
            step += 1

    def add_labels():
        item = 0
        while not stop.is_set() or item < 30:
            event = LabelEvent(uuid.uuid4().hex, keep.id, "species", item, "ann", "setosa")
            try:
                store.add_label(event)
            except Exception as e:  # noqa: BLE001
                failures.append(e)
                return
            labels.append(event.event_id)
            item += 1

    threads = [threading.Thread(target=log_points), threading.Thread(target=add_labels)]
    for t in threads:
        t.start()
    while len(points) < 5 or len(labels) < 5:
        time.sleep(0.01)
    lifecycle.delete(store, ANN, "dataset", doomed.id)
    lifecycle.delete(store, ANN, "run", victims[-1].id)
    report = lifecycle.purge(settings, store, ANN)
    stop.set()
    for t in threads:
        t.join(60)
    assert not failures and report.runs == 5
    stored = store.histories([survivor.id], "loss")[survivor.id]
    assert sorted(stored.step.tolist()) == sorted(points) and len(points) >= 30
    assert {e.event_id for e in store.label_events(keep.id, "species")} == set(labels)
    assert all(rows_of(store, v.id)["metric_chunks"] == 0 for v in victims)


def test_a_studys_optuna_study_is_hidden_in_the_trash_and_dropped_by_the_purge(env):
    import optuna

    from recipe_core.search import trash, tuning

    settings, store = env
    dataset(settings, store)
    for name in ("s1", "s2"):
        optuna.create_study(study_name=name, storage=tuning.optuna_storage(store.url)).set_user_attr(
            "dataset_id", "a1b2c3d4e5f60718")
        run(store, tags=("study:" + name,))
    assert sorted(tuning.studies(store.url, "a1b2c3d4e5f60718")) == ["s1", "s2"]
    lifecycle.archive(store, ANN, "study", "s1")
    assert tuning.studies(store.url) == ["s2"]
    assert sorted(tuning.studies(store.url, include_archived=True)) == ["s1", "s2"]
    lifecycle.delete(store, ANN, "study", "s1")
    assert tuning.studies(store.url, include_archived=True) == ["s2"]
    assert tuning.known_studies(settings, store, "a1b2c3d4e5f60718", "species") == []  # no target attr: none
    report = trash.purge(settings, store, ANN)
    assert report.studies == ("s1",)
    left = optuna.get_all_study_summaries(storage=tuning.optuna_storage(store.url), include_best_trial=False)
    assert [s.study_name for s in left] == ["s2"] and tuning.purge_studies(store.url, ["s1"]) == 0
