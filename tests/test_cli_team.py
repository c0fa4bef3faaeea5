"""The CLI's team commands: users, audit, the lifecycle of runs and datasets (rename, archive, delete with what
depends on it, undo, trash, purge), listings as another identity (--as), and the operator's name on what it writes.
Every refusal is one `error:` line and a non-zero exit, and changes nothing."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_run import run, run_json

ROOT = Path(__file__).resolve().parents[1]
WINE = ROOT / "sample_data" / "wine.csv"
OPERATOR = "alice@example.org"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECIPE_AUTHOR", OPERATOR)
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    return tmp_path / "home"


def refused(capsys, *argv, fragment=""):
    """The command fails in one `error:` line (and prints nothing else on stderr); its stdout."""
    code, out, err = run(capsys, *argv)
    assert code != 0, out
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment.lower() in err.lower(), err
    return out


def api_run(name, points=200, **kw):
    import recipe_core as rc

    with rc.start_run(name=name, **kw) as r:
        for step in range(points):
            r.log(step, val_loss=1.0 / (step + 1))
    return r.run_id


# -- users and audit --------------------------------------------------------------------------------------------
def test_users_add_change_list_remove_and_the_audit_of_it(home, capsys):
    assert run_json(capsys, "users", "list") == []
    added = run_json(capsys, "users", "add", "Bob@Example.org", "--role", "member")
    assert added["name"] == "bob@example.org" and added["role"] == "member" and added["added_by"] == OPERATOR
    run_json(capsys, "users", "add", "bob@example.org", "--role", "admin")  # a change, not a second user
    assert [(u["name"], u["role"]) for u in run_json(capsys, "users", "list")] == [("bob@example.org", "admin")]

    refused(capsys, "users", "add", "carol@example.org", "--role", "boss", fragment="unknown role")
    refused(capsys, "users", "add", "two words", "--role", "member", fragment="without spaces")
    assert [u["name"] for u in run_json(capsys, "users", "list")] == ["bob@example.org"]

    changes = run_json(capsys, "audit", "--action", "role_change")
    assert [(e["actor"], e["key"], e["detail"]) for e in changes] == [
        (OPERATOR, "bob@example.org", "member -> admin"), (OPERATOR, "bob@example.org", "none -> member")]
    code, out, _ = run(capsys, "audit", "--limit", "1")
    assert code == 0 and out.count("\n") == 1 and "role_change" in out and "member -> admin" in out
    assert run_json(capsys, "audit", "--actor", "nobody@example.org") == []

    assert run_json(capsys, "users", "remove", "BOB@example.org") == {"removed": "bob@example.org"}
    assert run_json(capsys, "users", "list") == []
    assert run_json(capsys, "audit", "--action", "user_removed")[0]["key"] == "bob@example.org"
    refused(capsys, "users", "remove", "bob@example.org", fragment="no user")
    refused(capsys, "audit", "--limit", "0", fragment="--limit")
    refused(capsys, "audit", "--action", "explode", fragment="invalid choice")


# -- the lifecycle of runs --------------------------------------------------------------------------------------
def test_run_rename_archive_edit(home, capsys):
    run_id = api_run("first")
    assert run_json(capsys, "runs", "rename", run_id[:8], "better name")["name"] == "better name"
    listed = run_json(capsys, "runs")
    assert [(r["name"], r["archived"]) for r in listed] == [("better name", False)]

    run_json(capsys, "runs", "archive", run_id)
    assert run_json(capsys, "runs")[0]["archived"] is True  # still listed, marked
    code, out, _ = run(capsys, "runs")
    assert code == 0 and "[archived]" in out
    run_json(capsys, "runs", "unarchive", run_id)
    assert run_json(capsys, "runs")[0]["archived"] is False

    edited = run_json(capsys, "runs", "edit", run_id, "--tag", "baseline", "--tag", "wine", "--hypothesis", "h1")
    assert edited["tags"] == ["baseline", "wine"] and edited["hypothesis"] == "h1"
    assert run_json(capsys, "runs", "edit", run_id, "--clear-tags")["tags"] == []
    refused(capsys, "runs", "edit", run_id, "--tag", "study:mine", fragment="set by the app")
    refused(capsys, "runs", "edit", run_id, fragment="nothing to change")
    refused(capsys, "runs", "rename", run_id, "  ", fragment="empty")
    assert {e["action"] for e in run_json(capsys, "audit", "--actor", OPERATOR)} >= {"rename", "archive",
                                                                                     "unarchive", "edit"}


def test_run_delete_asks_for_force_when_a_run_starts_from_it_then_undo_and_purge(home, capsys):
    parent = api_run("parent", points=3000)
    child = api_run("child", parent=parent)

    out = refused(capsys, "runs", "delete", parent, fragment="--force")
    assert out == f"run {child} (child) starts from it\n"  # what depends on it, one line each
    assert {r["run_id"] for r in run_json(capsys, "runs")} == {parent, child}  # nothing deleted
    out = refused(capsys, "runs", "delete", child, parent)  # one refusal among several: none of them goes
    assert {r["run_id"] for r in run_json(capsys, "runs")} == {parent, child}

    gone = run_json(capsys, "runs", "delete", parent, "--force")
    assert gone["deleted"][0]["run_ids"] == [parent] and "starts from it" in gone["deleted"][0]["dependents"][0]
    assert [r["run_id"] for r in run_json(capsys, "runs")] == [child]
    assert [(t["kind"], t["key"], t["deleted_by"]) for t in run_json(capsys, "trash")] == [("run", parent, OPERATOR)]
    refused(capsys, "runs", "delete", parent, "--force", fragment="deleted already")

    assert run_json(capsys, "runs", "undo", parent)["restored"][0]["run_ids"] == [parent]
    assert {r["run_id"] for r in run_json(capsys, "runs")} == {parent, child}
    assert run_json(capsys, "trash") == []
    refused(capsys, "runs", "undo", parent, fragment="not deleted")

    run_json(capsys, "runs", "delete", parent, "--force")
    kept = run_json(capsys, "purge")  # inside the undo window: nothing goes
    assert kept["items"] == [] and kept["bytes"] == 0
    assert len(run_json(capsys, "trash")) == 1
    freed = run_json(capsys, "purge", "--all")
    assert freed["items"] == [{"kind": "run", "key": parent}]
    assert freed["rows"]["runs"] == 1 and sum(freed["rows"].values()) > 1 and freed["bytes"] > 0
    assert run_json(capsys, "trash") == []
    refused(capsys, "runs", "undo", parent)
    refused(capsys, "history", parent, "--metric", "val_loss", fragment="no run")
    # the run that stays keeps every point
    assert len(run_json(capsys, "history", child, "--metric", "val_loss")["points"]) == 200
    assert [e["key"] for e in run_json(capsys, "audit", "--action", "purge")] == [parent]


def test_purge_prints_what_it_freed(home, capsys, monkeypatch):
    run_id = api_run("doomed")
    run_json(capsys, "runs", "delete", run_id)
    monkeypatch.setenv("RECIPE_UNDO_HOURS", "0.00001")  # 36 ms: the window is over, the default purge takes it
    time.sleep(0.1)
    code, out, err = run(capsys, "purge")
    assert code == 0, err
    assert out.startswith("purged 1 items: ") and " rows, " in out and "freed" in out and f"run {run_id}" in out
    code, out, _ = run(capsys, "purge")
    assert code == 0 and out == "nothing to purge\n"


def test_studies_and_curves_delete_and_undo(home, capsys):
    trials = [api_run(f"t{i}", tags=["study:s1"]) for i in range(2)]
    out = refused(capsys, "studies", "delete", "s1", fragment="--force")
    assert out.count("\n") == 1 and "2 runs" in out  # its trials go with it
    assert len(run_json(capsys, "studies", "delete", "s1", "--force")["deleted"][0]["run_ids"]) == 2
    assert run_json(capsys, "runs") == []
    assert [(t["kind"], t["key"], t["runs"]) for t in run_json(capsys, "trash")] == [("study", "s1", 2)]
    assert sorted(run_json(capsys, "studies", "undo", "s1")["restored"][0]["run_ids"]) == sorted(trials)
    assert len(run_json(capsys, "runs")) == 2
    refused(capsys, "studies", "delete", "nope", fragment="no study")
    refused(capsys, "curves", "undo", "nope")


# -- datasets: sharing and seeing as someone ----------------------------------------------------------------------
def test_datasets_private_shared_and_listings_as_another_identity(home, capsys):
    made = run_json(capsys, "ingest", WINE, "--name", "wine", "--private")
    assert made["owner"] == OPERATOR and made["visibility"] == "private"  # the operator's name on the upload
    assert run_json(capsys, "audit", "--action", "upload")[0]["actor"] == OPERATOR
    on_wine = api_run("on wine", dataset=made["id"], target="cultivar")
    loose = api_run("no dataset")
    run_json(capsys, "users", "add", "bob@example.org", "--role", "member")
    run_json(capsys, "users", "add", "carol@example.org", "--role", "admin")

    assert run_json(capsys, "datasets", "--as", "bob@example.org") == []  # a member: not another's private one
    assert [d["id"] for d in run_json(capsys, "datasets", "--as", "carol@example.org")] == [made["id"]]
    assert [d["id"] for d in run_json(capsys, "datasets", "--as", OPERATOR)] == [made["id"]]  # its owner
    assert [r["run_id"] for r in run_json(capsys, "runs", "--as", "bob@example.org")] == [loose]
    assert {r["run_id"] for r in run_json(capsys, "runs", "--as", "carol@example.org")} == {on_wine, loose}
    refused(capsys, "runs", "--as", "bob@example.org", "--dataset", "wine", fragment="may not see")
    assert {r["run_id"] for r in run_json(capsys, "runs")} == {on_wine, loose}  # the operator sees everything

    assert run_json(capsys, "datasets", "share", "wine")["visibility"] == "shared"
    assert [d["name"] for d in run_json(capsys, "datasets", "--as", "bob@example.org")] == ["wine"]
    assert [d["name"] for d in run_json(capsys, "datasets", "--as", "stranger@example.org")] == ["wine"]
    assert {r["run_id"] for r in run_json(capsys, "runs", "--as", "bob@example.org")} == {on_wine, loose}
    assert run_json(capsys, "datasets", "unshare", made["id"][:8])["visibility"] == "private"
    assert run_json(capsys, "datasets", "--as", "bob@example.org") == []
    assert [e["detail"] for e in run_json(capsys, "audit", "--action", "visibility")] == [
        "shared -> private", "private -> shared"]


def test_dataset_rename_archive_delete_undo(home, capsys):
    made = run_json(capsys, "ingest", WINE, "--name", "wine")
    run_json(capsys, "ingest", ROOT / "sample_data" / "wine.csv", "--name", "wine")  # the same bytes: the same
    assert run_json(capsys, "datasets", "rename", "wine", "vin")["name"] == "vin"
    refused(capsys, "datasets", "rename", "wine", "x", fragment="no dataset")
    run_json(capsys, "datasets", "archive", "vin")
    assert [(d["name"], d["archived"]) for d in run_json(capsys, "datasets")] == [("vin", True)]
    run_json(capsys, "datasets", "unarchive", "vin")

    api_run("uses it", dataset=made["id"], target="cultivar")
    out = refused(capsys, "datasets", "delete", "vin", fragment="--force")
    assert out.count("\n") == 1 and "1 run" in out and "this dataset" in out  # what depends on it
    assert len(run_json(capsys, "datasets")) == 1
    run_json(capsys, "datasets", "delete", "vin", "--force")
    assert run_json(capsys, "datasets") == [] and run_json(capsys, "runs") == []  # its runs went with it
    assert run_json(capsys, "datasets", "undo", made["id"])["restored"][0]["key"] == made["id"]
    assert [d["name"] for d in run_json(capsys, "datasets")] == ["vin"] and len(run_json(capsys, "runs")) == 1


def test_set_type_is_audited(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    assert next(c for c in run_json(capsys, "set-type", "wine", "cultivar", "categorical")["columns"]
                if c["name"] == "cultivar")["type"] == "categorical"
    assert run_json(capsys, "audit", "--action", "type_change")[0]["detail"].startswith("cultivar: ")


def test_labels_import_is_the_operators_and_audited(home, capsys, tmp_path):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    items = run_json(capsys, "labels", "sample", "wine", "--target", "cultivar")["items"][:3]
    labels = tmp_path / "labels.csv"
    labels.write_text("item,label\n" + "".join(f"{i},class_1\n" for i in items))
    assert run_json(capsys, "labels", "import", "wine", "--target", "cultivar", labels) == {"imported": 3}
    summary = run_json(capsys, "labels", "summary", "wine", "--target", "cultivar")
    assert [a["name"] for a in summary["annotators"]] == [OPERATOR]
    entry = run_json(capsys, "audit", "--action", "label_import")[0]
    assert entry["actor"] == OPERATOR and "3 labels" in entry["detail"]


@pytest.mark.parametrize("argv, fragment", [
    (["runs", "delete", "feedbeef"], "no run"),
    (["runs", "undo", "feedbeef"], "feedbeef"),
    (["runs", "archive", "feedbeef"], "no run"),
    (["runs", "rename", "feedbeef", "x"], "no run"),
    (["runs", "edit", "feedbeef", "--hypothesis", "h"], "no run"),
    (["datasets", "delete", "nope"], "no dataset"),
    (["datasets", "undo", "nope"], "nope"),
    (["datasets", "share", "nope"], "no dataset"),
    (["datasets", "rename", "nope", "x"], "no dataset"),
    (["studies", "undo", "nope"], "nope"),
    (["curves", "delete", "nope"], "no learning curve"),
    (["runs", "--as", "bob@example.org", "--dataset", "nope"], "no dataset"),
    (["users", "add", "bob@example.org"], "--role"),
    (["runs", "delete"], "required"),
])
def test_unknown_ids_and_usage_errors_are_one_line(home, capsys, argv, fragment):
    api_run("one")
    assert refused(capsys, *argv, fragment=fragment) == ""
    assert len(run_json(capsys, "runs")) == 1


def test_a_real_process_refuses_in_one_line_and_team_commands_stay_light(home):
    parent = api_run("parent")
    api_run("child", parent=parent)
    env = {**os.environ, "RECIPE_HOME": str(home), "RECIPE_AUTHOR": OPERATOR}

    def cli(*argv):
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "recipe_core", *argv], cwd=ROOT,
                              capture_output=True, text=True, env=env)

    proc = cli("runs", "delete", parent)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode != 0 and len(errors) == 1 and errors[0].startswith("error: ") and "--force" in errors[0]
    assert "starts from it" in proc.stdout and "Traceback" not in proc.stderr
    proc = cli("users", "add", "x@example.org", "--role", "boss")
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode != 0 and errors == ["error: unknown role 'boss'; choose one of viewer, member, admin"]
    for argv in (["users", "list"], ["audit"], ["trash"], ["runs", "--as", "x@example.org"], ["datasets", "--as", "x"],
                 ["runs", "archive", parent]):
        proc = cli(*argv, "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import")}
        assert not loaded & {"torch", "sklearn", "optuna"}, argv


def test_train_writes_the_operators_name_unless_given_another(home, capsys):
    run_json(capsys, "ingest", WINE, "--name", "wine")
    trained = run_json(capsys, "train", "wine", "--target", "cultivar", "--model", "linear", "--no-checks")
    assert trained["author"] == OPERATOR
    other = run_json(capsys, "train", "wine", "--target", "cultivar", "--model", "linear", "--no-checks",
                     "--author", "bot")
    assert other["author"] == "bot"
