"""Who is working, and what they may see and do, on every page (AppTest through the entrypoint). Team mode is an
[auth] section in the secrets (AppTest.secrets) with the signed-in person in AppTest.user, as st.user carries
them; single-user mode is no secrets at all. The real sign-in, in Chromium, is tests/test_signin.py."""
from pathlib import Path

import pytest
from app_session import APP, choose_dataset, no_errors
from streamlit.testing.v1 import AppTest

import ui
from recipe_core.config import load_settings
from recipe_core.data import ingest
from recipe_core.safetext import markdown_literal
from recipe_core.tracking import access, audit, lifecycle, users
from recipe_core.tracking.records import RunRecord, new_id, now_iso
from recipe_core.tracking.store import Store

PAGES = ["pages/data.py", "pages/label.py", "pages/train.py", "pages/compare.py", "pages/tune.py", "pages/team.py"]
AUTH = {"auth": {"redirect_uri": "http://127.0.0.1:9/oauth2callback", "cookie_secret": "not-a-secret",
                 "client_id": "recipe", "client_secret": "recipe",
                 "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}
ADMIN, ANN, BOB, VIC = "admin@team.org", "ann@team.org", "bob@team.org", "vic@team.org"  # vic has no role
PRIVATE_NAME = "ann_private_salaries"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One store for the module: roles set by an operator, a private dataset of ann's, a deleted one."""
    home = tmp_path_factory.mktemp("recipe_home")
    settings = load_settings({"RECIPE_HOME": str(home)})
    store = Store(settings.store_url)
    op = access.operator()
    ingest.ensure_samples(settings, store, ui.SAMPLE_DIR)
    for name, role in ((ADMIN, "admin"), (ANN, "member"), (BOB, "member")):
        users.set_role(store, op, name, role)
    for stem, rows in ((PRIVATE_NAME, 40), ("gone_dataset", 30)):
        path = Path(home) / f"{stem}.csv"
        path.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(rows)))
        ingest.ingest_file(settings, store, path, name=stem, owner=ANN, visibility="private")
    gone = store.get_dataset("gone_dataset")
    lifecycle.delete(store, op, "dataset", gone.id)
    ui.catalog_changed()  # the app's catalog cache lives in this process
    return home


def store_of(home) -> Store:
    return Store(load_settings({"RECIPE_HOME": str(home)}).store_url)


def session(home, monkeypatch, email: str | None, team: bool = True, script=APP, **params) -> AppTest:
    """A fresh browser tab: signed in as email (None: not signed in), or single-user mode (team=False)."""
    monkeypatch.setenv("RECIPE_HOME", str(home))
    monkeypatch.delenv("RECIPE_STORE_URL", raising=False)
    monkeypatch.delenv("RECIPE_MAX_UPLOAD_MB", raising=False)
    at = AppTest.from_file(str(script), default_timeout=120)
    if team:
        at.secrets = {k: dict(v) for k, v in AUTH.items()}
        at.user = {"is_logged_in": True, "email": email, "sub": f"sub-{email}"} if email else {"is_logged_in": False}
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> list[str]:
    """Everything written on the page and in the sidebar, as the elements carry it."""
    out = [e.value for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader")
           for e in getattr(at, kind)]
    out += [str(e.value) for e in at.sidebar.selectbox] + [o for e in at.selectbox for o in e.options]
    return out


def goto(at, page: str, dataset: str | None = None, target: str | None = None) -> AppTest:
    at.switch_page(page).run()
    if dataset:
        choose_dataset(at, dataset)
    if target:
        at.sidebar.selectbox(key="w_target").select(target).run()
    no_errors(at)
    return at


# -- who is working ----------------------------------------------------------------------------------------------
def test_single_user_mode_says_so_and_keeps_the_typed_name(home, monkeypatch):
    at = session(home, monkeypatch, None, team=False, author="ann")
    no_errors(at)
    assert ui.SINGLE_USER_CAPTION in [c.value for c in at.sidebar.caption]
    assert at.sidebar.text_input(key="w_author").value == "ann"
    assert not [b for b in at.sidebar.button if b.label == "Sign out"]


@pytest.mark.parametrize("page", PAGES)
def test_not_signed_in_every_page_shows_only_the_sign_in_button(home, monkeypatch, page):
    at = session(home, monkeypatch, None)
    at.query_params.update({"dataset": store_of(home).get_dataset(PRIVATE_NAME).id})
    at.switch_page(page).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.sidebar.selectbox and not at.dataframe and not at.sidebar.text_input
    assert not any("breast_cancer" in t or PRIVATE_NAME in t for t in texts(at))


def test_a_deep_link_without_the_entrypoint_shows_only_the_sign_in_button(home, monkeypatch):
    """A fresh server's first visitor on /train?... runs the page without app.py (DESIGN.md's pitfall)."""
    page = Path(APP).parent / "pages" / "train.py"
    at = session(home, monkeypatch, None, script=page, dataset=store_of(home).get_dataset(PRIVATE_NAME).id)
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.selectbox


def test_signed_in_the_sidebar_says_who_and_the_author_link_is_ignored(home, monkeypatch):
    at = session(home, monkeypatch, ANN, author="mallory")
    no_errors(at)
    assert f"Signed in as {markdown_literal(ANN)} · member" in [c.value for c in at.sidebar.caption]
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    assert not at.sidebar.text_input  # no typed name in team mode
    assert "author" not in at.query_params  # the link's name is never an identity, and is not kept
    assert ui.SINGLE_USER_CAPTION not in [c.value for c in at.sidebar.caption]


def test_someone_without_a_role_is_a_viewer(home, monkeypatch):
    at = session(home, monkeypatch, VIC)
    assert f"Signed in as {markdown_literal(VIC)} · viewer" in [c.value for c in at.sidebar.caption]


def test_an_unverified_email_is_not_the_identity(home, monkeypatch):
    """A provider that lets anyone type an address marks it unverified: the subject is used, with its own role."""
    monkeypatch.setenv("RECIPE_HOME", str(home))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.secrets = {k: dict(v) for k, v in AUTH.items()}
    at.user = {"is_logged_in": True, "email": ADMIN, "email_verified": False, "sub": "stranger-7"}
    at.run()
    assert f"Signed in as {markdown_literal('stranger-7')} · viewer" in [c.value for c in at.sidebar.caption]


# -- what each may see --------------------------------------------------------------------------------------------
def test_a_private_dataset_is_in_its_owners_catalog_only(home, monkeypatch):
    owner = session(home, monkeypatch, ANN)
    assert PRIVATE_NAME in owner.sidebar.selectbox(key="w_dataset").options
    other = session(home, monkeypatch, BOB)
    assert PRIVATE_NAME not in other.sidebar.selectbox(key="w_dataset").options
    assert "gone_dataset" not in owner.sidebar.selectbox(key="w_dataset").options  # deleted: nobody's picker
    admin = session(home, monkeypatch, ADMIN)
    assert PRIVATE_NAME in admin.sidebar.selectbox(key="w_dataset").options


@pytest.mark.parametrize("which", [PRIVATE_NAME, "gone_dataset", "0123456789abcdef"])
def test_a_link_to_a_dataset_one_may_not_see_says_so_in_one_line_and_shows_nothing(home, monkeypatch, which):
    store = store_of(home)
    dataset_id = store.get_dataset(which).id if which != "0123456789abcdef" else which
    at = session(home, monkeypatch, BOB, dataset=dataset_id)
    assert [e.value for e in at.error] == ["You may not see this dataset, or it does not exist."]
    assert not at.sidebar.selectbox and not at.dataframe and not at.title  # not switched to another dataset
    assert not any(PRIVATE_NAME in t or "gone_dataset" in t for t in texts(at))


def test_the_owner_opens_the_same_link(home, monkeypatch):
    dataset_id = store_of(home).get_dataset(PRIVATE_NAME).id
    at = session(home, monkeypatch, ANN, dataset=dataset_id)
    no_errors(at)
    assert at.sidebar.selectbox(key="w_dataset").value == dataset_id
    assert any("owned by" in c.value and "private to its owner" in c.value for c in at.caption)


# -- what each may do ----------------------------------------------------------------------------------------------
def viewer_says(at, what: str) -> bool:
    return f"You are a viewer: ask an admin for the member role to {what}." in [c.value for c in at.caption]


def type_box(at) -> list:
    """The form that changes a column's type (Overview view)."""
    return [s for s in at.selectbox if s.key == "override_kind"]


def test_a_viewer_gets_no_write_controls(home, monkeypatch):
    at = session(home, monkeypatch, VIC)
    no_errors(at)
    assert not at.get("file_uploader") and viewer_says(at, "upload datasets")
    assert at.dataframe and not type_box(at)  # the profile is shown; a shared sample's types are an admin's
    assert not type_box(at)  # a shared sample's types
    goto(at, "pages/train.py", "wine", "cultivar")
    assert not [b for b in at.button if b.label == "Train"] and viewer_says(at, "start runs")
    goto(at, "pages/label.py", "wine", "cultivar")
    assert not [b for b in at.button if b.key and b.key.startswith("class:")]
    assert not [b for b in at.button if b.key == "label_skip"] and viewer_says(at, "label (others' labels stay "
                                                                                  "hidden until you have labelled "
                                                                                  "the sample yourself)")
    goto(at, "pages/tune.py", "wine", "cultivar")
    assert not [b for b in at.button if b.key in ("search_start", "ens_top", "ens_picked", "curve_start")]
    assert viewer_says(at, "start searches") and viewer_says(at, "build ensembles")


def test_a_member_gets_the_write_controls(home, monkeypatch):
    at = session(home, monkeypatch, BOB)
    no_errors(at)
    assert at.get("file_uploader") and not viewer_says(at, "upload datasets")
    assert [r for r in at.radio if r.key == "upload_visibility"][0].value == "private"  # private by default
    goto(at, "pages/train.py", "wine", "cultivar")
    assert [b for b in at.button if b.label == "Train"]
    goto(at, "pages/label.py", "wine", "cultivar")
    next(b for b in at.button if b.key and b.key.startswith("class:")).click().run()
    no_errors(at)
    wine = store_of(home).get_dataset("wine")
    assert {e.annotator for e in store_of(home).label_events(wine.id, "cultivar")} == {BOB}  # the sign-in's name
    goto(at, "pages/tune.py", "wine", "cultivar")
    assert [b for b in at.button if b.key == "search_start"]


def test_a_members_upload_is_private_and_theirs(home, monkeypatch):
    at = session(home, monkeypatch, BOB)
    at.file_uploader(key="upload_file").set_value(("bobs.csv", b"x,y\n1,2\n3,4\n5,7\n", "text/csv"))
    next(b for b in at.button if b.label == "Add dataset").click().run()
    no_errors(at)
    record = store_of(home).get_dataset("bobs")
    assert (record.owner, record.visibility) == (BOB, "private")
    assert audit.entries(store_of(home), actor=BOB, action="upload")
    other = session(home, monkeypatch, ANN)
    assert "bobs" not in other.sidebar.selectbox(key="w_dataset").options


def test_single_user_mode_offers_no_visibility_and_shares(home, monkeypatch):
    at = session(home, monkeypatch, None, team=False)
    assert not [r for r in at.radio if r.key == "upload_visibility"]
    assert at.get("file_uploader")


def test_only_the_owner_or_an_admin_manages_a_dataset(home, monkeypatch):
    dataset_id = store_of(home).get_dataset(PRIVATE_NAME).id
    owner = session(home, monkeypatch, ANN, dataset=dataset_id)
    assert [b for b in owner.button if b.key == "data_visibility"]
    assert [b for b in owner.button if b.key == f"lc_delete:dataset:{dataset_id}"]
    assert type_box(owner)  # her private dataset's types
    member = session(home, monkeypatch, BOB)
    choose_dataset(member, "wine")  # a sample: no one's, so an admin's to change
    assert not [b for b in member.button if b.key == "data_visibility" or (b.key or "").startswith("lc_")]
    assert not type_box(member)


def anns_dataset(home, name: str, visibility: str):
    """A small dataset of ANN's, registered as the Data page would (each test's own name and contents)."""
    path = Path(home) / f"{name}.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * len(name)}\n" for i in range(12)))
    settings = load_settings({"RECIPE_HOME": str(home)})
    return ingest.ingest_file(settings, store_of(home), path, name=name, owner=ANN, visibility=visibility)


def test_sharing_a_dataset_shows_it_to_the_team_and_is_audited(home, monkeypatch):
    record = anns_dataset(home, "to_share", "private")
    ui.catalog_changed()
    owner = session(home, monkeypatch, ANN, dataset=record.id)
    next(b for b in owner.button if b.key == "data_visibility").click().run()
    no_errors(owner)
    assert store_of(home).get_dataset(record.id).visibility == "shared"
    assert audit.entries(store_of(home), actor=ANN, action="visibility", key=record.id)
    assert "to_share" in session(home, monkeypatch, BOB).sidebar.selectbox(key="w_dataset").options


def test_delete_then_undo_from_the_data_page(home, monkeypatch):
    record = anns_dataset(home, "to_delete", "private")
    ui.catalog_changed()
    at = session(home, monkeypatch, ANN, dataset=record.id)
    next(b for b in at.button if b.key == f"lc_delete:dataset:{record.id}").click().run()
    no_errors(at)
    assert store_of(home).get_dataset(record.id).deleted_at is not None
    assert "to_delete" not in at.sidebar.selectbox(key="w_dataset").options
    said = [w.value for w in at.warning]
    assert any(markdown_literal("to_delete") in w and "deleted" in w and "undo" in w for w in said)
    next(b for b in at.button if b.key == f"lc_undo:dataset:{record.id}").click().run()
    no_errors(at)
    assert store_of(home).get_dataset(record.id).deleted_at is None
    assert "to_delete" in at.sidebar.selectbox(key="w_dataset").options


# -- the Team page --------------------------------------------------------------------------------------------------
def test_the_team_page_is_for_admins(home, monkeypatch):
    member = goto(session(home, monkeypatch, ANN), "pages/team.py")
    assert [i.value for i in member.info] == ["This page is for admins; you are signed in as a member."]
    assert not member.subheader and not member.dataframe and not member.main.button


def test_an_admin_manages_roles_reads_the_audit_and_purges(home, monkeypatch):
    at = goto(session(home, monkeypatch, ADMIN), "pages/team.py")
    assert [s.value for s in at.subheader] == ["People and roles", "Audit trail", "Trash", "Purge"]
    at.text_input(key="team_user_name").input("  Cem@Team.org ")
    at.selectbox(key="team_user_role").select("viewer")
    next(b for b in at.button if b.key == "team_user_set").click().run()
    no_errors(at)
    assert users.role_of(store_of(home), "cem@team.org") == "viewer"
    assert "cem@team.org" in list(at.dataframe[0].value["name"])
    at.selectbox(key="team_audit_action").select("role_change").run()
    trail = at.dataframe[1].value
    assert set(trail["action"]) == {"role_change"} and "cem@team.org" in list(trail["key"])
    # an admin does not take away their own role here
    at.text_input(key="team_user_name").input(ADMIN)
    at.selectbox(key="team_user_role").select("member")
    next(b for b in at.button if b.key == "team_user_set").click().run()
    assert users.role_of(store_of(home), ADMIN) == "admin" and "your own role" in at.error[0].value
    # the trash holds gone_dataset, deleted a moment ago: within the window, "Purge now" leaves it
    assert any(markdown_literal("gone_dataset") in m.value for m in at.markdown)
    next(b for b in at.button if b.key == "team_purge").click().run()
    no_errors(at)
    assert "Nothing to purge." in [s.value for s in at.success]
    assert store_of(home).get_dataset("gone_dataset").deleted_at is not None
    at.checkbox(key="team_purge_everything").check().run()
    next(b for b in at.button if b.key == "team_purge_all").click().run()
    no_errors(at)
    said = [s.value for s in at.success if s.value.startswith("Purged")]
    assert said and "1 dataset," in said[0] and "freed" in said[0]
    with pytest.raises(Exception):
        store_of(home).get_dataset("gone_dataset")


def test_the_team_page_works_in_single_user_mode(home, monkeypatch):
    at = goto(session(home, monkeypatch, None, team=False), "pages/team.py")
    assert any("Users and roles matter once sign-in is configured" in i.value for i in at.info)
    assert [s.value for s in at.subheader][:1] == ["People and roles"]


def test_only_its_author_or_an_admin_cancels_a_run(home, monkeypatch):
    store = store_of(home)
    wine = store.get_dataset("wine")
    run = store.add_run(RunRecord(id=new_id(), name="ann-queued", model="prior", config={}, dataset_id=wine.id,
                                  target="cultivar", author=ANN, status="queued", created_at=now_iso()))
    link = {"dataset": wine.id, "target": "cultivar", "run": run.id}
    other = goto(session(home, monkeypatch, BOB, **link), "pages/train.py")
    assert any(markdown_literal("ann-queued") in s.value for s in other.subheader)  # shown, but not hers to stop
    assert not [b for b in other.button if b.key == "train_cancel"]
    owner = goto(session(home, monkeypatch, ANN, **link), "pages/train.py")
    next(b for b in owner.button if b.key == "train_cancel").click().run()
    assert store.get_run(run.id).status == "cancelled"
    assert audit.entries(store, actor=ANN, action="cancel", key=run.id)


def test_an_archived_dataset_leaves_the_picker_until_asked_for(home, monkeypatch):
    record = anns_dataset(home, "to_archive", "shared")
    lifecycle.archive(store_of(home), access.member_of_team(ANN, "member"), "dataset", record.id)
    ui.catalog_changed()
    at = session(home, monkeypatch, BOB)
    assert not [o for o in at.sidebar.selectbox(key="w_dataset").options if o.startswith("to_archive")]
    at.toggle(key="w_show_archived").set_value(True).run()
    no_errors(at)
    assert "to_archive (archived)" in at.sidebar.selectbox(key="w_dataset").options
    linked = session(home, monkeypatch, BOB, dataset=record.id)  # a link to it still opens it
    assert linked.sidebar.selectbox(key="w_dataset").value == record.id and not linked.error
