"""People's roles (tracking/users.py) and the audit trail (tracking/audit.py), on SQLite and PostgreSQL."""
import pytest

from recipe_core.errors import BadInput, Forbidden, NotFound
from recipe_core.tracking import audit, users
from recipe_core.tracking.access import Identity, operator, single_user
from recipe_core.tracking.store import Store

ADMIN = Identity("root@lab.org", "admin", True)
ANN = Identity("ann@lab.org", "member", True)


@pytest.fixture
def store(store_url):
    return Store(store_url)


def test_an_unknown_person_is_a_viewer_until_given_a_role(store):
    assert users.identity(store, "new@lab.org") == Identity("new@lab.org", "viewer", True)
    users.set_role(store, ADMIN, "new@lab.org", "member")
    assert users.identity(store, "new@lab.org").role == "member"


def test_a_role_change_is_audited(store):
    users.set_role(store, ADMIN, "ann@lab.org", "member")
    users.set_role(store, ADMIN, "ann@lab.org", "admin")
    assert [(e.actor, e.action, e.kind, e.key, e.detail) for e in audit.entries(store, action="role_change")] == [
        ("root@lab.org", "role_change", "user", "ann@lab.org", "member -> admin"),
        ("root@lab.org", "role_change", "user", "ann@lab.org", "none -> member")]
    assert [(u.name, u.role, u.added_by) for u in users.list_users(store)] == [("ann@lab.org", "admin", ADMIN.name)]


def test_emails_are_one_person_whatever_their_case(store):
    users.set_role(store, operator(), "Ann@Lab.ORG", "member")
    assert users.role_of(store, "ANN@lab.org") == "member"
    assert users.identity(store, "ann@LAB.org") == Identity("ann@lab.org", "member", True)
    users.set_role(store, operator(), "ANN@LAB.ORG", "viewer")
    assert [(u.name, u.role) for u in users.list_users(store)] == [("ann@lab.org", "viewer")]
    assert users.checked_name("Subject-42") == "Subject-42"  # a subject is not an email: its case is kept


@pytest.mark.parametrize("role", ["owner", "", "Admin", None])
def test_a_bad_role_is_one_line_and_changes_nothing(store, role):
    with pytest.raises(BadInput, match="choose one of viewer, member, admin") as e:
        users.set_role(store, ADMIN, "ann@lab.org", role)
    assert "\n" not in str(e.value) and users.list_users(store) == [] and audit.entries(store) == []


@pytest.mark.parametrize("name", ["", "   ", "ann smith@lab.org", "a\x00b"])
def test_a_bad_name_is_one_line(store, name):
    with pytest.raises(BadInput) as e:
        users.set_role(store, ADMIN, name, "member")
    assert "\n" not in str(e.value) and users.list_users(store) == []


def test_only_an_admin_manages_people(store):
    users.set_role(store, ADMIN, "ann@lab.org", "member")
    with pytest.raises(Forbidden, match="only an admin may change roles"):
        users.set_role(store, ANN, "ann@lab.org", "admin")
    with pytest.raises(Forbidden, match="only an admin may remove people"):
        users.remove(store, ANN, "ann@lab.org")
    assert users.role_of(store, "ann@lab.org") == "member" and len(audit.entries(store)) == 1
    users.set_role(store, single_user("me"), "bob@lab.org", "member")  # single-user mode: all allowed


def test_removing_a_person_is_audited_and_an_unknown_one_is_one_line(store):
    users.set_role(store, ADMIN, "ann@lab.org", "member")
    users.remove(store, ADMIN, "ANN@lab.org")
    assert users.identity(store, "ann@lab.org").role == "viewer"
    assert audit.entries(store, limit=1)[0].action == "user_removed"
    with pytest.raises(NotFound, match="no user 'ann@lab.org'"):
        users.remove(store, ADMIN, "ann@lab.org")


def test_the_audit_is_read_newest_first_and_filtered(store):
    audit.record(store, ANN, "upload", "dataset", "d1", "iris")
    audit.record(store, ADMIN, "delete", "run", "r1")
    audit.record(store, "plain name", "cancel", "run", "r2")
    assert [e.key for e in audit.entries(store)] == ["r2", "r1", "d1"]
    assert [e.key for e in audit.entries(store, actor=ANN.name)] == ["d1"]
    assert [e.key for e in audit.entries(store, action="delete")] == ["r1"]
    assert [e.actor for e in audit.entries(store, key="r2")] == ["plain name"]
    assert len(audit.entries(store, limit=2)) == 2 and len(audit.entries(store, limit=0)) == 1
    audit.record(store, ANN, "edit", "run", "r1", "x\x00" * 2000)  # stored safely, cut to its limit
    assert len(audit.entries(store, limit=1)[0].detail) == audit.MAX_DETAIL_CHARS
