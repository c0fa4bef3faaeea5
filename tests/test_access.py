"""Who may see and change what (tracking/access.py), and the rules where they are applied outside the lifecycle:
labels under one's own name only, and cancelling only one's own runs."""
import pytest
from snapshots import record

from recipe_core.errors import BadInput, Forbidden
from recipe_core.labelling import labels
from recipe_core.tracking import access, audit
from recipe_core.tracking.access import Identity, member_of_team, operator, single_user
from recipe_core.tracking.records import RunRecord, new_id
from recipe_core.tracking.store import Store
from recipe_core.training import jobs

ADMIN = Identity("root@lab.org", "admin", True)
ANN = Identity("ann@lab.org", "member", True)
BOB = Identity("bob@lab.org", "member", True)
VIC = Identity("vic@lab.org", "viewer", True)
SOLO = single_user("whoever")

ANNS_PRIVATE = record("1111111111111111", "mine", owner=ANN.name, visibility="private")
ANNS_SHARED = record("2222222222222222", "ours", owner=ANN.name, visibility="shared")
SAMPLE = record("3333333333333333", "sample")  # owner "": the samples belong to no one


def a_run(dataset_id=None, author=ANN.name):
    return RunRecord(id=new_id(), name="r", model="mlp", config={}, dataset_id=dataset_id, author=author)


@pytest.mark.parametrize("who, private, shared", [
    (SOLO, True, True), (ADMIN, True, True), (ANN, True, True), (BOB, False, True), (VIC, False, True)])
def test_seeing_a_dataset(who, private, shared):
    assert access.can_see_dataset(who, ANNS_PRIVATE) is private
    assert access.can_see_dataset(who, ANNS_SHARED) is shared and access.can_see_dataset(who, SAMPLE)
    assert access.visible_datasets(who, [ANNS_PRIVATE, ANNS_SHARED]) == [ANNS_PRIVATE, ANNS_SHARED][not private:]


def test_a_run_follows_its_dataset_and_one_without_is_everyones():
    private_run, loose = a_run(ANNS_PRIVATE.id), a_run(None)
    assert access.can_see_run(BOB, loose, None) and access.can_see_run(VIC, loose, None)
    assert not access.can_see_run(BOB, private_run, ANNS_PRIVATE) and access.can_see_run(ANN, private_run, ANNS_PRIVATE)
    assert not access.can_see_run(BOB, a_run("4444444444444444"), None)  # its dataset is gone: not shown
    runs = [private_run, loose]
    assert access.visible_runs(BOB, runs, [ANNS_PRIVATE]) == [loose]
    assert access.visible_runs(ADMIN, runs, [ANNS_PRIVATE]) == runs


@pytest.mark.parametrize("who, write, own, others, ownerless, users", [
    (SOLO, True, True, True, True, True), (ADMIN, True, True, True, True, True),
    (ANN, True, True, False, False, False), (VIC, False, False, False, False, False)])
def test_writing_and_changing(who, write, own, others, ownerless, users):
    assert access.may_write(who) is write
    assert access.may_change(who, who.name) is own
    assert access.may_change(who, "someone@else.org") is others
    assert access.may_change(who, "") is ownerless
    assert access.may_manage_users(who) is users


def test_column_types_an_owner_changes_only_on_a_private_dataset():
    assert access.may_change_types(ANN, ANNS_PRIVATE) and not access.may_change_types(ANN, ANNS_SHARED)
    assert not access.may_change_types(BOB, ANNS_PRIVATE) and not access.may_change_types(VIC, SAMPLE)
    assert access.may_change_types(ADMIN, ANNS_SHARED) and access.may_change_types(SOLO, SAMPLE)


def test_refusals_are_one_line():
    for refuse, says in [(lambda: access.require_write(VIC, "train"), "vic@lab.org is a viewer: only members"),
                         (lambda: access.require_change(BOB, ANN.name, "cancel this run"),
                          "only ann@lab.org or an admin may cancel this run"),
                         (lambda: access.require_visible_dataset(BOB, ANNS_PRIVATE), access.HIDDEN_DATASET),
                         (lambda: access.require_visible_dataset(ADMIN, None), access.HIDDEN_DATASET)]:
        with pytest.raises(Forbidden) as e:
            refuse()
        assert str(e.value).startswith(says) and "\n" not in str(e.value)
    access.require_write(ANN, "train")
    assert access.require_visible_dataset(ANN, ANNS_PRIVATE) is ANNS_PRIVATE


def test_a_deleted_dataset_is_hidden_even_from_its_owner():
    from dataclasses import replace
    with pytest.raises(Forbidden):
        access.require_visible_dataset(ANN, replace(ANNS_PRIVATE, deleted_at=1.0))


def test_identities(monkeypatch):
    monkeypatch.setenv("RECIPE_AUTHOR", "ci-bot")
    assert operator() == Identity("ci-bot", "admin", False)
    assert member_of_team("x@y.z", None).role == "viewer" and member_of_team("x@y.z", "owner").role == "viewer"
    assert member_of_team("x@y.z", "member").role == "member" and member_of_team("x@y.z", "admin").team
    assert SOLO.is_admin and not ANN.is_admin and ADMIN.is_admin


# -- labels: one's own name only ----------------------------------------------------------------------------------
BASE = labels.Baseline("1111111111111111", "species", "classification", ("setosa", "virginica"), (1, 2),
                       {1: "setosa", 2: "virginica"})


def test_nobody_labels_under_another_name(store):
    with pytest.raises(Forbidden, match="signed in as bob@lab.org: you may not label as ann@lab.org") as e:
        labels.add(store, BASE, ANN.name, 1, "setosa", who=BOB)
    assert "\n" not in str(e.value) and store.label_events(BASE.dataset_id, "species") == []
    with pytest.raises(Forbidden, match="only members and admins may label"):
        labels.add(store, BASE, VIC.name, 1, "setosa", who=VIC)
    with pytest.raises(Forbidden):
        labels.import_csv(store, BASE, ANN.name, b"item,label\n1,setosa\n", who=BOB)
    assert store.label_events(BASE.dataset_id, "species") == []
    labels.add(store, BASE, BOB.name, 1, "setosa", who=BOB)
    labels.add(store, BASE, "typed name", 2, "setosa", who=SOLO)  # single-user: the typed name is the identity
    assert [e.annotator for e in store.label_events(BASE.dataset_id, "species")] == [BOB.name, "typed name"]


def test_a_label_import_is_audited(store):
    assert labels.import_csv(store, BASE, ANN.name, b"item,label\n1,setosa\n2,setosa\n", who=ANN) == 2
    entry = audit.entries(store, action="label_import")[0]
    assert (entry.actor, entry.key, entry.detail) == (ANN.name, BASE.dataset_id, "2 labels of species as ann@lab.org")
    with pytest.raises(BadInput):
        labels.import_csv(store, BASE, ANN.name, b"item,label\n9,setosa\n", who=ANN)
    assert len(audit.entries(store, action="label_import")) == 1


# -- cancelling: one's own runs -----------------------------------------------------------------------------------
def test_only_the_author_or_an_admin_cancels_a_run(store_url):
    store = Store(store_url)
    run = store.add_run(a_run())
    with pytest.raises(Forbidden, match="only ann@lab.org or an admin may cancel this run"):
        jobs.cancel(store, run.id, who=BOB)
    assert store.get_run(run.id).status == "queued" and audit.entries(store, action="cancel") == []
    assert jobs.cancel(store, run.id, who=ANN) is True and store.get_run(run.id).status == "cancelled"
    assert [(e.actor, e.key) for e in audit.entries(store, action="cancel")] == [(ANN.name, run.id)]
    other = store.add_run(a_run())
    assert jobs.cancel(store, other.id) is True  # no identity (the operator's own tools): as before
